using System.Text.Json;
using QwenNats.Messaging;
using QwenNats.Ingress.OpenAi;

namespace QwenNats.Tests.Unit;

public sealed class RequestParserTests
{
    private static (bool Ok, ChatCompletionRequest Request, ApiError? Error) Parse(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var ok = RequestParser.TryParseChat(doc.RootElement, 4096, out var r, out var e);
        return (ok, r, e);
    }

    [Fact]
    public void A_full_OpenAI_request_is_read()
    {
        var (ok, r, _) = Parse("""
            {"model":"qwen","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]}],
             "temperature":0.2,"top_p":0.5,"max_tokens":12,"stop":["\n"],"stream":true,"user":"u1","seed":7,"stream_options":{"include_usage":false}}
            """);
        Assert.True(ok);
        Assert.Equal([new ChatMessage("system", "be brief"), new ChatMessage("user", "hi there")], r.Messages);
        Assert.Equal(0.2, r.Sampling.Temperature);
        Assert.Equal(0.5, r.Sampling.TopP);
        Assert.Equal(12, r.Sampling.MaxTokens);
        Assert.Equal(["\n"], r.Sampling.Stop!);
        Assert.Equal(7u, r.Sampling.Seed);
        Assert.True(r.Stream);
        Assert.False(r.IncludeUsage);
        Assert.Equal("u1", r.User);
        Assert.Equal("qwen", r.Model);
    }

    [Fact]
    public void Optional_fields_may_be_absent_or_null()
    {
        var (ok, r, _) = Parse("""{"messages":[{"role":"user","content":"hi"}],"temperature":null,"stop":null}""");
        Assert.True(ok);
        Assert.Null(r.Sampling.Temperature);
        Assert.Null(r.Sampling.Stop);
        Assert.False(r.Stream);
    }

    [Theory]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"temperature":3}""", "temperature")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"max_tokens":5000}""", "max_tokens")]
    [InlineData("""{"messages":[{"role":"bot","content":"hi"}]}""", "messages[0].role")]
    [InlineData("""{"messages":[{"role":"user","content":"a"},{"role":"user","content":{}}]}""", "messages[1].content")]
    public void The_error_names_the_offending_field(string json, string param)
    {
        var (ok, _, e) = Parse(json);
        Assert.False(ok);
        Assert.Equal(param, e!.Param);
        Assert.Equal(400, e.Status);
        Assert.Equal("invalid_request_error", e.Type);
    }

    [Theory]
    [InlineData(ErrorCodes.ContextLengthExceeded, 400)]
    [InlineData(ErrorCodes.DeadlineExceeded, 504)]
    [InlineData(ErrorCodes.Overloaded, 503)]
    [InlineData(ErrorCodes.WorkerLost, 503)]
    [InlineData(ErrorCodes.InternalError, 502)]
    public void Worker_errors_map_to_HTTP_statuses_other_than_500(string code, int status)
    {
        Assert.Equal(status, ApiError.FromInfer(new InferError { Id = "x", Code = code, Message = "m" }).Status);
    }
}
