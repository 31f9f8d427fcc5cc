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

    private const string Hi = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";

    /// <summary>A request of one user message and <paramref name="fields"/> (JSON members, comma-separated).</summary>
    private static (bool Ok, ChatCompletionRequest Request, ApiError? Error) With(string fields) => Parse("{" + Hi + "," + fields + "}");

    private static (bool Ok, ChatCompletionRequest Request, ApiError? Error) ParseWith(string field, string value) =>
        Parse($"{{{Hi},\"{field}\":{value}}}");

    [Theory]
    [InlineData("tools", """[{"type":"function","function":{"name":"f"}}]""")]
    [InlineData("tool_choice", "\"auto\"")]
    [InlineData("functions", """[{"name":"f"}]""")]
    [InlineData("function_call", "\"auto\"")]
    [InlineData("n", "2")]
    [InlineData("audio", """{"voice":"alloy","format":"wav"}""")]
    [InlineData("modalities", """["text","audio"]""")]
    [InlineData("prediction", """{"type":"content","content":"x"}""")]
    [InlineData("parallel_tool_calls", "false")]
    [InlineData("web_search_options", "{}")]
    [InlineData("reasoning_effort", "\"low\"")]
    [InlineData("store", "true")]
    [InlineData("service_tier", "\"priority\"")]
    public void A_field_that_cannot_be_honoured_is_refused_by_name(string field, string value)
    {
        var (ok, _, e) = ParseWith(field, value);
        Assert.False(ok);
        Assert.Equal(400, e!.Status);
        Assert.Equal(RequestParser.UnsupportedParameter, e.Code);
        Assert.Equal(field, e.Param);
        Assert.Equal("invalid_request_error", e.Type);
        Assert.Contains($"'{field}'", e.Message);
        Assert.Contains("Remove it", e.Message);
    }

    [Theory]
    [InlineData("response_format", """{"type":"text"}""")]
    [InlineData("logprobs", "false")]
    [InlineData("top_logprobs", "null")]
    [InlineData("presence_penalty", "0")]
    [InlineData("frequency_penalty", "0.0")]
    [InlineData("logit_bias", "{}")]
    [InlineData("response_format", """{"type":"json_object"}""")]
    [InlineData("presence_penalty", "0.5")]
    [InlineData("frequency_penalty", "-1")]
    [InlineData("logit_bias", """{"50256":-100}""")]
    [InlineData("logprobs", "true")]
    [InlineData("tools", "[]")]
    [InlineData("tool_choice", "\"none\"")]
    [InlineData("functions", "null")]
    [InlineData("function_call", "\"none\"")]
    [InlineData("n", "1")]
    [InlineData("audio", "null")]
    [InlineData("modalities", """["text"]""")]
    [InlineData("prediction", "null")]
    [InlineData("parallel_tool_calls", "true")]
    [InlineData("web_search_options", "null")]
    [InlineData("reasoning_effort", "null")]
    [InlineData("metadata", """{"team":"search"}""")]
    [InlineData("store", "false")]
    [InlineData("service_tier", "\"auto\"")]
    [InlineData("service_tier", "\"default\"")]
    [InlineData("user", "\"u1\"")]
    [InlineData("model", "\"qwen\"")]
    [InlineData("temperature", "0.7")]
    [InlineData("top_p", "0.9")]
    [InlineData("max_tokens", "8")]
    [InlineData("max_completion_tokens", "8")]
    [InlineData("stop", "\"\\n\"")]
    [InlineData("seed", "3")]
    [InlineData("stream", "true")]
    public void A_field_with_its_default_or_a_supported_value_is_accepted(string field, string value)
    {
        var (ok, _, e) = ParseWith(field, value);
        Assert.True(ok, e?.Message);
    }

    [Theory]
    [InlineData("colour")]
    [InlineData("temprature")]
    [InlineData("verbosity")]
    public void An_unknown_field_is_refused_by_name(string field)
    {
        var (ok, _, e) = ParseWith(field, "\"x\"");
        Assert.False(ok);
        Assert.Equal(400, e!.Status);
        Assert.Equal(RequestParser.UnknownParameter, e.Code);
        Assert.Equal(field, e.Param);
        Assert.Contains($"'{field}'", e.Message);
    }

    [Fact]
    public void Usage_is_streamed_only_when_asked_for()
    {
        Assert.False(Parse($"{{{Hi},\"stream\":true}}").Request.IncludeUsage);
        Assert.True(Parse($"{{{Hi},\"stream\":true,\"stream_options\":{{\"include_usage\":true}}}}").Request.IncludeUsage);
        Assert.False(Parse($"{{{Hi},\"stream\":true,\"stream_options\":{{\"include_usage\":false,\"include_obfuscation\":false}}}}").Request.IncludeUsage);
        Assert.True(Parse($"{{{Hi},\"stream_options\":null}}").Ok);
    }

    [Theory]
    [InlineData("\"stream_options\":{\"include_usage\":true}", "stream_options", "invalid_request")]
    [InlineData("\"stream\":false,\"stream_options\":{\"include_usage\":true}", "stream_options", "invalid_request")]
    [InlineData("\"stream\":true,\"stream_options\":{\"include_usage\":\"yes\"}", "stream_options.include_usage", "invalid_request")]
    [InlineData("\"stream\":true,\"stream_options\":{\"usage\":true}", "stream_options.usage", "unknown_parameter")]
    [InlineData("\"stream\":true,\"stream_options\":true", "stream_options", "invalid_request")]
    public void Stream_options_need_a_stream_and_known_boolean_options(string fields, string param, string code)
    {
        var (ok, _, e) = Parse($"{{{Hi},{fields}}}");
        Assert.False(ok);
        Assert.Equal(param, e!.Param);
        Assert.Equal(code, e.Code);
    }

    [Fact]
    public void Every_OpenAI_chat_field_has_a_status_and_no_other_field_does()
    {
        string[] openAi =
        [
            "messages", "model", "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "stream", "stream_options", "user",
            "metadata", "store", "service_tier", "reasoning_effort", "response_format", "logprobs", "top_logprobs", "presence_penalty",
            "frequency_penalty", "logit_bias", "tools", "tool_choice", "functions", "function_call", "n", "audio", "modalities", "prediction",
            "parallel_tool_calls", "web_search_options",
        ];
        Assert.Equal(openAi.Order(), RequestParser.ChatFields.Keys.Order());
    }

    [Fact]
    public void Penalties_and_logit_bias_reach_the_sampling_settings()
    {
        var (ok, r, e) = With(""" "presence_penalty":-2,"frequency_penalty":1.5,"logit_bias":{"7":-100,"12":100,"0":0.5} """);
        Assert.True(ok, e?.Message);
        Assert.Equal(-2, r.Sampling.PresencePenalty);
        Assert.Equal(1.5, r.Sampling.FrequencyPenalty);
        Assert.Equal(new Dictionary<int, double> { [7] = -100, [12] = 100, [0] = 0.5 }, r.Sampling.LogitBias);
        var (_, zero, _) = With(""" "presence_penalty":0,"frequency_penalty":0,"logit_bias":{} """);
        Assert.Null(zero.Sampling.PresencePenalty);
        Assert.Null(zero.Sampling.FrequencyPenalty);
        Assert.Null(zero.Sampling.LogitBias);
    }

    [Theory]
    [InlineData("\"presence_penalty\":2.5", "presence_penalty")]
    [InlineData("\"presence_penalty\":\"1\"", "presence_penalty")]
    [InlineData("\"frequency_penalty\":-2.01", "frequency_penalty")]
    [InlineData("\"logit_bias\":[1]", "logit_bias")]
    [InlineData("\"logit_bias\":{\"abc\":1}", "logit_bias.abc")]
    [InlineData("\"logit_bias\":{\"-3\":1}", "logit_bias.-3")]
    [InlineData("\"logit_bias\":{\"5\":101}", "logit_bias.5")]
    [InlineData("\"logit_bias\":{\"5\":\"x\"}", "logit_bias.5")]
    [InlineData("\"response_format\":\"json\"", "response_format")]
    [InlineData("\"response_format\":{\"type\":\"xml\"}", "response_format.type")]
    [InlineData("\"response_format\":{\"type\":\"json_schema\"}", "response_format.json_schema")]
    [InlineData("\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"a b\",\"schema\":{}}}", "response_format.json_schema.name")]
    [InlineData("\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"p\"}}", "response_format.json_schema.schema")]
    [InlineData("\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"p\",\"strict\":\"yes\",\"schema\":{}}}", "response_format.json_schema.strict")]
    [InlineData("\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"p\",\"schema\":{\"type\":\"integer\",\"enum\":[]}}}", "response_format.json_schema.schema.enum")]
    public void Invalid_penalties_biases_and_formats_are_refused_by_name(string fields, string param)
    {
        var (ok, _, e) = Parse($"{{{Hi},{fields}}}");
        Assert.False(ok);
        Assert.Equal(400, e!.Status);
        Assert.Equal(ErrorCodes.InvalidRequest, e.Code);
        Assert.Equal(param, e.Param);
    }

    [Fact]
    public void Logit_bias_takes_at_most_300_tokens()
    {
        string Bias(int n) => string.Join(",", Enumerable.Range(0, n).Select(i => $"\"{i}\":1"));
        Assert.True(Parse($"{{{Hi},\"logit_bias\":{{{Bias(RequestParser.MaxLogitBiasEntries)}}}}}").Ok);
        var (ok, _, e) = Parse($"{{{Hi},\"logit_bias\":{{{Bias(RequestParser.MaxLogitBiasEntries + 1)}}}}}");
        Assert.False(ok);
        Assert.Equal("logit_bias", e!.Param);
    }

    [Fact]
    public void Json_mode_and_a_json_schema_travel_to_the_worker()
    {
        var (ok, r, e) = With(""" "response_format":{"type":"json_object"} """);
        Assert.True(ok, e?.Message);
        Assert.Equal(new ResponseFormat { Type = ResponseFormat.JsonObject }, r.Sampling.ResponseFormat);

        (ok, r, e) = With(""" "response_format":{"type":"json_schema","json_schema":{"name":"city","description":"a city","strict":true,"schema":{"type":"object","properties":{"n":{"type":"string"}},"required":["n"]}}} """);
        Assert.True(ok, e?.Message);
        Assert.Equal(ResponseFormat.JsonSchema, r.Sampling.ResponseFormat!.Type);
        Assert.Equal("city", r.Sampling.ResponseFormat.Name);
        Assert.Equal("""{"type":"object","properties":{"n":{"type":"string"}},"required":["n"]}""", r.Sampling.ResponseFormat.Schema);

        (ok, r, _) = With(""" "response_format":{"type":"text"} """);
        Assert.True(ok);
        Assert.Null(r.Sampling.ResponseFormat);
    }

    [Theory]
    [InlineData("""{"type":"object","properties":{"x":{"type":"string","pattern":"^a+$"}}}""", "response_format.json_schema.schema.properties.x.pattern")]
    [InlineData("""{"anyOf":[{"type":"string"},{"type":"null"}]}""", "response_format.json_schema.schema.anyOf")]
    [InlineData("""{"type":"object","properties":{"d":{"type":"string","format":"date-time"}}}""", "response_format.json_schema.schema.properties.d.format")]
    public void A_schema_keyword_that_cannot_be_honoured_is_refused_by_its_path(string schema, string param)
    {
        var (ok, _, e) = With(""" "response_format":{"type":"json_schema","json_schema":{"name":"s","schema":""" + schema + """}} """);
        Assert.False(ok);
        Assert.Equal(400, e!.Status);
        Assert.Equal(RequestParser.UnsupportedParameter, e.Code);
        Assert.Equal(param, e.Param);
        Assert.Equal("invalid_request_error", e.Type);
    }

    [Theory]
    [InlineData("""{"type":"json_object","schema":{}}""", "response_format.schema")]
    [InlineData("""{"type":"text","json_schema":{}}""", "response_format.json_schema")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"s","schema":{},"extra":1}}""", "response_format.json_schema.extra")]
    public void Unknown_response_format_fields_are_refused_by_name(string format, string param)
    {
        var (ok, _, e) = With(""" "response_format":""" + format);
        Assert.False(ok);
        Assert.Equal(RequestParser.UnknownParameter, e!.Code);
        Assert.Equal(param, e.Param);
    }

    [Fact]
    public void Logprobs_and_top_logprobs_reach_the_sampling_settings()
    {
        var (ok, r, e) = With(""" "logprobs":true,"top_logprobs":20 """);
        Assert.True(ok, e?.Message);
        Assert.True(r.Sampling.Logprobs);
        Assert.Equal(20, r.Sampling.TopLogprobs);
        (ok, r, _) = With(""" "logprobs":true """);
        Assert.True(ok);
        Assert.Equal(0, r.Sampling.TopLogprobs);
        (ok, r, _) = With(""" "logprobs":false """);
        Assert.True(ok);
        Assert.Null(r.Sampling.Logprobs);
        Assert.Null(r.Sampling.TopLogprobs);
    }

    [Theory]
    [InlineData(""" "top_logprobs":2 """)]
    [InlineData(""" "logprobs":false,"top_logprobs":2 """)]
    [InlineData(""" "logprobs":true,"top_logprobs":21 """)]
    [InlineData(""" "logprobs":true,"top_logprobs":-1 """)]
    public void Top_logprobs_needs_logprobs_and_is_at_most_20(string fields)
    {
        var (ok, _, e) = With(fields);
        Assert.False(ok);
        Assert.Equal("top_logprobs", e!.Param);
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
