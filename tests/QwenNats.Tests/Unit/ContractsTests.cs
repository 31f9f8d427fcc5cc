using System.Text.Json;
using QwenNats.Messaging;

namespace QwenNats.Tests.Unit;

public sealed class ContractsTests
{
    [Fact]
    public void Subjects_follow_the_design()
    {
        Assert.Equal("qwen.blue.infer", Subjects.Infer("blue"));
        Assert.Equal("qwen.green.shadow", Subjects.Shadow("green"));
        Assert.Equal("QWEN_WORK_GREEN", Subjects.WorkStream("green"));
        Assert.Equal("qwen.reply.i1.r1", Subjects.Reply("i1", "r1"));
    }

    [Theory]
    [InlineData("blue", true)]
    [InlineData("green-2", true)]
    [InlineData("Blue", false)]
    [InlineData("a.b", false)]
    [InlineData("", false)]
    [InlineData("*", false)]
    public void Only_subject_safe_colours_are_well_formed(string colour, bool ok) => Assert.Equal(ok, Colours.IsWellFormed(colour));

    [Fact]
    public void Messages_round_trip_with_snake_case_names()
    {
        var reply = InferReply.Of(new InferResult
        {
            Id = "r", Task = "chat", FinishReason = "stop", Text = "你好", WorkerId = "w", Colour = "blue", ModelId = "m", ProfileVersion = "v1", TimeToFirstTokenMs = 1.5,
        });
        var json = JsonSerializer.Serialize(reply, QwenJsonContext.Default.InferReply);
        Assert.Contains("\"time_to_first_token_ms\":1.5", json);
        Assert.Contains("\"profile_version\":\"v1\"", json);
        Assert.DoesNotContain("\"chunk\"", json);
        var back = JsonSerializer.Deserialize(json, QwenJsonContext.Default.InferReply)!;
        Assert.True(back.IsFinal);
        Assert.Equal("你好", back.Result!.Text);
    }

    [Fact]
    public void Penalties_biases_and_response_formats_travel_as_optional_fields()
    {
        var request = new InferRequest
        {
            Id = "i", Task = InferTasks.Chat, ReplyTo = "r",
            Sampling = new SamplingParams
            {
                PresencePenalty = 0.5, FrequencyPenalty = -1, LogitBias = new Dictionary<int, double> { [42] = -100 },
                ResponseFormat = new ResponseFormat { Type = ResponseFormat.JsonSchema, Name = "p", Schema = "{\"type\":\"integer\"}" },
            },
        };
        var json = JsonSerializer.Serialize(request, QwenJsonContext.Default.InferRequest);
        Assert.Contains("\"presence_penalty\":0.5", json);
        Assert.Contains("\"logit_bias\":{\"42\":-100}", json);
        Assert.Contains("\"response_format\":{\"type\":\"json_schema\"", json);
        var back = JsonSerializer.Deserialize(json, QwenJsonContext.Default.InferRequest)!;
        Assert.Equal(-100, back.Sampling.LogitBias![42]);
        Assert.Equal(request.Sampling.ResponseFormat, back.Sampling.ResponseFormat);

        // A request from before these fields (or without them) reads as free text with no penalties or biases, and
        // a plain request writes none of them, so older workers and ingresses read it as before.
        var old = JsonSerializer.Deserialize("""{"id":"i","task":"chat","reply_to":"r","sampling":{"temperature":0}}""", QwenJsonContext.Default.InferRequest)!;
        Assert.Null(old.Sampling.ResponseFormat);
        Assert.Null(old.Sampling.LogitBias);
        var plain = JsonSerializer.Serialize(old, QwenJsonContext.Default.InferRequest);
        Assert.DoesNotContain("penalty", plain);
        Assert.DoesNotContain("response_format", plain);
    }
}
