using System.Text.Json;
using QwenNats.Messaging;
using QwenNats.Ingress.OpenAi;

namespace QwenNats.Tests.Unit;

/// <summary>The legacy completions parser and the per-message fields of chat: honoured, or refused by name.</summary>
public sealed class CompletionAndMessageFieldTests
{
    private static (bool Ok, CompletionRequest Request, ApiError? Error) Completion(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var ok = RequestParser.TryParseCompletion(doc.RootElement, 4096, out var r, out var e, maxPromptChars: 100);
        return (ok, r, e);
    }

    private static (bool Ok, ChatCompletionRequest Request, ApiError? Error) Chat(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var ok = RequestParser.TryParseChat(doc.RootElement, 4096, out var r, out var e);
        return (ok, r, e);
    }

    [Fact]
    public void A_full_completion_request_is_read_with_every_sampling_field()
    {
        var (ok, r, e) = Completion("""
            {"model":"m","prompt":"Once","max_tokens":9,"temperature":0.3,"top_p":0.8,"stop":"\n","seed":5,"stream":true,
             "stream_options":{"include_usage":true},"presence_penalty":1,"frequency_penalty":-1,"logit_bias":{"300":50},
             "logprobs":2,"echo":false,"user":"u","n":1,"best_of":1,"suffix":""}
            """);
        Assert.True(ok, e?.Message);
        Assert.Equal("Once", r.Prompt);
        Assert.Equal(9, r.Sampling.MaxTokens);
        Assert.Equal(0.3, r.Sampling.Temperature);
        Assert.Equal(0.8, r.Sampling.TopP);
        Assert.Equal(["\n"], r.Sampling.Stop!);
        Assert.Equal(5u, r.Sampling.Seed);
        Assert.Equal(1, r.Sampling.PresencePenalty);
        Assert.Equal(-1, r.Sampling.FrequencyPenalty);
        Assert.Equal(new Dictionary<int, double> { [300] = 50 }, r.Sampling.LogitBias);
        Assert.True(r.Sampling.Logprobs);
        Assert.Equal(2, r.Sampling.TopLogprobs);
        Assert.Equal(2, r.Logprobs);
        Assert.True(r.Stream);
        Assert.True(r.IncludeUsage);
        Assert.False(r.Echo);
        Assert.Equal("u", r.User);
    }

    [Fact]
    public void Without_logprobs_none_are_asked_of_the_worker()
    {
        var (ok, r, _) = Completion("""{"prompt":"Once","echo":true}""");
        Assert.True(ok);
        Assert.Null(r.Sampling.Logprobs);
        Assert.Null(r.Logprobs);
        Assert.True(r.Echo);
    }

    [Theory]
    [InlineData("""{"prompt":["a"]}""", "prompt", "unsupported_parameter")]
    [InlineData("""{"prompt":[1,2]}""", "prompt", "unsupported_parameter")]
    [InlineData("""{"prompt":null}""", "prompt", "invalid_request")]
    [InlineData("""{"prompt":"x","n":3}""", "n", "unsupported_parameter")]
    [InlineData("""{"prompt":"x","best_of":2}""", "best_of", "unsupported_parameter")]
    [InlineData("""{"prompt":"x","suffix":"y"}""", "suffix", "unsupported_parameter")]
    [InlineData("""{"prompt":"x","logprobs":-1}""", "logprobs", "invalid_request")]
    [InlineData("""{"prompt":"x","echo":"yes"}""", "echo", "invalid_request")]
    [InlineData("""{"prompt":"x","echo":true,"logprobs":0}""", "echo", "unsupported_parameter")]
    [InlineData("""{"prompt":"x","max_completion_tokens":3}""", "max_completion_tokens", "unknown_parameter")]
    [InlineData("""{"prompt":"x","top_p":0}""", "top_p", "invalid_request")]
    [InlineData("""{"prompt":"x","stop":["a","b","c","d","e"]}""", "stop", "invalid_request")]
    public void Bad_completion_fields_are_refused_by_name(string json, string param, string code)
    {
        var (ok, _, e) = Completion(json);
        Assert.False(ok);
        Assert.Equal(400, e!.Status);
        Assert.Equal(param, e.Param);
        Assert.Equal(code, e.Code);
    }

    [Fact]
    public void A_prompt_over_the_limit_is_refused()
    {
        var (ok, _, e) = Completion($"{{\"prompt\":\"{new string('a', 101)}\"}}");
        Assert.False(ok);
        Assert.Equal(RequestParser.PromptTooLong, e!.Code);
        Assert.Equal("prompt", e.Param);
    }

    [Fact]
    public void Every_OpenAI_completions_field_has_a_status_and_no_other_field_does()
    {
        string[] openAi =
        [
            "prompt", "model", "temperature", "top_p", "max_tokens", "stop", "seed", "stream", "stream_options", "user",
            "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "echo", "suffix", "best_of", "n",
        ];
        Assert.Equal(openAi.Order(), RequestParser.CompletionFields.Keys.Order());
    }

    [Theory]
    [InlineData("""{"role":"user","content":"hi","name":"ann"}""", "messages[0].name", "unsupported_parameter")]
    [InlineData("""{"role":"user","content":"hi","tool_call_id":"c1"}""", "messages[0].tool_call_id", "unsupported_parameter")]
    [InlineData("""{"role":"user","content":"hi","tool_calls":[{"id":"c1"}]}""", "messages[0].tool_calls", "unsupported_parameter")]
    [InlineData("""{"role":"user","content":"hi","function_call":{"name":"f"}}""", "messages[0].function_call", "unsupported_parameter")]
    [InlineData("""{"role":"user","content":"hi","refusal":"no"}""", "messages[0].refusal", "unsupported_parameter")]
    [InlineData("""{"role":"user","content":"hi","audio":{"id":"a"}}""", "messages[0].audio", "unsupported_parameter")]
    [InlineData("""{"role":"user","content":"hi","mood":"glad"}""", "messages[0].mood", "unknown_parameter")]
    [InlineData("""{"role":"tool","content":"42","tool_call_id":"c1"}""", "messages[0].role", "unsupported_parameter")]
    [InlineData("""{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}}]}""", "messages[0].content[1].type", "unsupported_parameter")]
    [InlineData("""{"role":"user","content":[{"type":"text","text":"a","cache_control":{}}]}""", "messages[0].content[0].cache_control", "unknown_parameter")]
    [InlineData("""{"role":"user","content":[{"type":"text"}]}""", "messages[0].content[0].text", "invalid_request")]
    [InlineData("""{"role":"user","content":["hi"]}""", "messages[0].content[0]", "invalid_request")]
    [InlineData("""{"role":"user","content":7}""", "messages[0].content", "invalid_request")]
    public void Message_fields_that_cannot_be_honoured_are_refused_by_their_path(string message, string param, string code)
    {
        var (ok, _, e) = Chat($$"""{"messages":[{{message}}]}""");
        Assert.False(ok);
        Assert.Equal(400, e!.Status);
        Assert.Equal(param, e.Param);
        Assert.Equal(code, e.Code);
    }

    [Fact]
    public void Null_message_fields_and_empty_tool_calls_are_not_set()
    {
        var (ok, r, e) = Chat("""
            {"messages":[{"role":"user","content":"hi","name":null},{"role":"assistant","content":"yes","tool_calls":[],"refusal":null,"audio":null,"function_call":null},
                         {"role":"user","content":[{"type":"text","text":"and "},{"type":"text","text":"then?"}],"tool_call_id":null}]}
            """);
        Assert.True(ok, e?.Message);
        Assert.Equal(new ChatMessage(ChatRoles.User, "and then?"), r.Messages[^1]);
    }

    [Fact]
    public void Every_OpenAI_message_field_has_a_status()
    {
        string[] openAi = ["role", "content", "name", "tool_calls", "tool_call_id", "function_call", "refusal", "audio"];
        Assert.Equal(openAi.Order(), RequestParser.MessageFields.Keys.Order());
    }

    [Fact]
    public void The_shared_sampling_fields_are_read_the_same_for_every_endpoint()
    {
        using var doc = JsonDocument.Parse("""{"temperature":0,"max_completion_tokens":7,"response_format":{"type":"json_object"},"logit_bias":{"3":-100}}""");
        Assert.True(RequestParser.TryParseSampling(doc.RootElement, 4096, out var s, out _));
        Assert.Equal(0, s.Temperature);
        Assert.Equal(7, s.MaxTokens);
        Assert.Equal(ResponseFormat.JsonObject, s.ResponseFormat!.Type);
        Assert.Equal(-100, s.LogitBias![3]);
        Assert.Contains("response_format", RequestParser.SamplingFields);
    }
}
