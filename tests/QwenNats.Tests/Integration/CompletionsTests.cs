using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>
/// <c>POST /v1/completions</c> over plain HTTP on the real system: OpenAI's <c>text_completion</c> shape, plain and
/// streamed, the raw prompt (no chat template), echo, legacy logprobs, session pins and refusals naming the field.
/// </summary>
[Collection(SystemCollection.Name)]
public sealed class CompletionsTests(SystemFixture fx)
{
    private const string Prompt = "Once upon a time";

    private static string Body(Action<JsonObject>? extra = null)
    {
        var body = new JsonObject { ["prompt"] = Prompt, ["max_tokens"] = 16, ["temperature"] = 0 };
        extra?.Invoke(body);
        return body.ToJsonString();
    }

    private async Task<JsonElement> CompleteAsync(string body, string? session = null)
    {
        using var response = await fx.Http.SendAsync(Api.Post("/v1/completions", body, session: session));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        return JsonDocument.Parse(text).RootElement;
    }

    private async Task<List<JsonElement>> StreamAsync(string body)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var response = await fx.Http.SendAsync(Api.Post("/v1/completions", body), cts.Token);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", Api.ContentType(response)!.MediaType);
        var events = await Api.ReadEventsAsync(response, cts.Token);
        Assert.Equal("[DONE]", events[^1]);
        return events.SkipLast(1).Select(e => JsonDocument.Parse(e).RootElement).ToList();
    }

    [Fact]
    public async Task A_completion_is_a_text_completion_with_text_finish_reason_and_usage()
    {
        using var response = await fx.Http.SendAsync(Api.Post("/v1/completions", Body()));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("blue", Api.Header(response, "X-Qwen-Colour"));
        var body = await Api.JsonAsync(response);
        Assert.Equal("text_completion", body.GetProperty("object").GetString());
        Assert.StartsWith("cmpl-", body.GetProperty("id").GetString());
        Assert.Equal("stories260K", body.GetProperty("model").GetString());
        var choice = body.GetProperty("choices")[0];
        Assert.Equal(0, choice.GetProperty("index").GetInt32());
        Assert.False(string.IsNullOrEmpty(choice.GetProperty("text").GetString()));
        Assert.Equal(JsonValueKind.Null, choice.GetProperty("logprobs").ValueKind);
        Assert.Contains(choice.GetProperty("finish_reason").GetString(), new[] { "stop", "length" });
        var usage = body.GetProperty("usage");
        Assert.InRange(usage.GetProperty("completion_tokens").GetInt32(), 1, 16);
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt32() + usage.GetProperty("completion_tokens").GetInt32(), usage.GetProperty("total_tokens").GetInt32());
    }

    [Fact]
    public async Task The_prompt_is_continued_as_it_is_without_the_chat_template()
    {
        var completion = await CompleteAsync(Body());
        using var chatResponse = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody(Prompt, maxTokens: 16)));
        var chat = await Api.JsonAsync(chatResponse);
        var raw = completion.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        // "Once upon a time" is a handful of tokens; the chat prompt adds the template and the profile's system prompt.
        Assert.InRange(raw, 2, 8);
        Assert.True(chat.GetProperty("usage").GetProperty("prompt_tokens").GetInt32() > raw + 4);
    }

    [Fact]
    public async Task A_streamed_completion_has_text_completion_chunks_and_no_usage_unless_asked()
    {
        var plain = (await CompleteAsync(Body())).GetProperty("choices")[0].GetProperty("text").GetString();
        var chunks = await StreamAsync(Body(b => b["stream"] = true));
        Assert.All(chunks, c => Assert.Equal("text_completion", c.GetProperty("object").GetString()));
        Assert.All(chunks, c => Assert.False(c.TryGetProperty("usage", out _)));
        Assert.Equal(plain, string.Concat(chunks.Select(c => c.GetProperty("choices")[0].GetProperty("text").GetString())));
        Assert.All(chunks.SkipLast(1), c => Assert.Equal(JsonValueKind.Null, c.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind));
        Assert.Contains(chunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString(), new[] { "stop", "length" });

        var withUsage = await StreamAsync(Body(b => { b["stream"] = true; b["stream_options"] = new JsonObject { ["include_usage"] = true }; }));
        Assert.Equal(0, withUsage[^1].GetProperty("choices").GetArrayLength());
        Assert.True(withUsage[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32() > 0);
        Assert.All(withUsage.SkipLast(1), c => Assert.Equal(JsonValueKind.Null, c.GetProperty("usage").ValueKind));
    }

    [Fact]
    public async Task Echo_puts_the_prompt_before_the_answer_plain_and_streamed()
    {
        var plain = (await CompleteAsync(Body())).GetProperty("choices")[0].GetProperty("text").GetString();
        var echoed = (await CompleteAsync(Body(b => b["echo"] = true))).GetProperty("choices")[0].GetProperty("text").GetString();
        Assert.Equal(Prompt + plain, echoed);
        var chunks = await StreamAsync(Body(b => { b["echo"] = true; b["stream"] = true; }));
        Assert.Equal(Prompt, chunks[0].GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal(Prompt + plain, string.Concat(chunks.Select(c => c.GetProperty("choices")[0].GetProperty("text").GetString())));
    }

    [Fact]
    public async Task Legacy_logprobs_list_tokens_logprobs_alternatives_and_offsets_plain_and_streamed()
    {
        var body = await CompleteAsync(Body(b => b["logprobs"] = 3));
        var choice = body.GetProperty("choices")[0];
        var text = choice.GetProperty("text").GetString()!;
        var lp = choice.GetProperty("logprobs");
        var tokens = lp.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!).ToList();
        var logprobs = lp.GetProperty("token_logprobs").EnumerateArray().Select(t => t.GetDouble()).ToList();
        var tops = lp.GetProperty("top_logprobs").EnumerateArray().ToList();
        var offsets = lp.GetProperty("text_offset").EnumerateArray().Select(t => t.GetInt32()).ToList();
        Assert.Equal(body.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), tokens.Count);
        Assert.Equal(tokens.Count, logprobs.Count);
        Assert.Equal(tokens.Count, tops.Count);
        Assert.Equal(tokens.Count, offsets.Count);
        Assert.Equal(text, string.Concat(tokens));
        var offset = 0;
        for (var i = 0; i < tokens.Count; i++)
        {
            Assert.Equal(offset, offsets[i]);
            offset += tokens[i].Length;
            var alternatives = tops[i].EnumerateObject().ToList();
            Assert.InRange(alternatives.Count, 1, 3);
            Assert.Equal(logprobs[i], alternatives.Max(a => a.Value.GetDouble()), 6);
        }

        var streamed = await StreamAsync(Body(b => { b["logprobs"] = 3; b["stream"] = true; }));
        var streamedTokens = streamed.Select(c => c.GetProperty("choices")[0].GetProperty("logprobs"))
            .Where(l => l.ValueKind == JsonValueKind.Object)
            .SelectMany(l => l.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!)).ToList();
        var streamedOffsets = streamed.Select(c => c.GetProperty("choices")[0].GetProperty("logprobs"))
            .Where(l => l.ValueKind == JsonValueKind.Object)
            .SelectMany(l => l.GetProperty("text_offset").EnumerateArray().Select(t => t.GetInt32())).ToList();
        Assert.Equal(tokens, streamedTokens);
        Assert.Equal(offsets, streamedOffsets);
    }

    [Fact]
    public async Task Completions_are_routed_like_chat_a_testers_colour_choice_included()
    {
        var session = $"completions-{Guid.NewGuid():N}";
        // The session's first request may pin it (when a promoter has made the pins bucket): compare the completion
        // with a chat request made after that first one, so both see the same session state.
        using (var first = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody(Prompt, maxTokens: 4), session: session)))
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        using var chat = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody(Prompt, maxTokens: 4), session: session));
        using var plain = await fx.Http.SendAsync(Api.Post("/v1/completions", Body(), session: session));
        Assert.Equal(HttpStatusCode.OK, plain.StatusCode);
        Assert.Equal(Api.Header(chat, "X-Qwen-Route"), Api.Header(plain, "X-Qwen-Route"));
        Assert.Equal(Api.Header(chat, "X-Qwen-Colour"), Api.Header(plain, "X-Qwen-Colour"));

        using var green = await fx.Http.SendAsync(Api.Post("/v1/completions", Body(), colour: "green"));
        Assert.Equal(HttpStatusCode.OK, green.StatusCode);
        Assert.Equal("green", Api.Header(green, "X-Qwen-Colour"));
        Assert.Equal("v2", Api.Header(green, "X-Qwen-Profile"));
        Assert.Equal("green-1", (await Api.JsonAsync(green)).GetProperty("worker").GetString());

        var forbidden = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = Api.Json(Body()) };
        forbidden.Headers.Add("X-Qwen-Colour", "green");
        using var refused = await fx.Http.SendAsync(forbidden);
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        Assert.Equal("colour_choice_forbidden", (await Api.JsonAsync(refused)).GetProperty("error").GetProperty("code").GetString());
    }

    [Theory]
    [InlineData("{\"max_tokens\":4}", "prompt", "invalid_request")]
    [InlineData("{\"prompt\":[\"a\",\"b\"]}", "prompt", "unsupported_parameter")]
    [InlineData("{\"prompt\":[[1,2,3]]}", "prompt", "unsupported_parameter")]
    [InlineData("{\"prompt\":7}", "prompt", "invalid_request")]
    [InlineData("{\"prompt\":\"\"}", "prompt", "invalid_request")]
    [InlineData("{\"prompt\":\"a\\u0000b\"}", "prompt", "invalid_request")]
    [InlineData("{\"prompt\":\"hi\",\"n\":2}", "n", "unsupported_parameter")]
    [InlineData("{\"prompt\":\"hi\",\"best_of\":2}", "best_of", "unsupported_parameter")]
    [InlineData("{\"prompt\":\"hi\",\"suffix\":\"end\"}", "suffix", "unsupported_parameter")]
    [InlineData("{\"prompt\":\"hi\",\"logprobs\":6}", "logprobs", "invalid_request")]
    [InlineData("{\"prompt\":\"hi\",\"logprobs\":true}", "logprobs", "invalid_request")]
    [InlineData("{\"prompt\":\"hi\",\"echo\":true,\"logprobs\":2}", "echo", "unsupported_parameter")]
    [InlineData("{\"prompt\":\"hi\",\"stream_options\":{\"include_usage\":true}}", "stream_options", "invalid_request")]
    [InlineData("{\"prompt\":\"hi\",\"response_format\":{\"type\":\"json_object\"}}", "response_format", "unknown_parameter")]
    [InlineData("{\"prompt\":\"hi\",\"messages\":[]}", "messages", "unknown_parameter")]
    [InlineData("{\"prompt\":\"hi\",\"temperature\":2.5}", "temperature", "invalid_request")]
    [InlineData("{\"prompt\":\"hi\",\"logit_bias\":{\"999999\":5}}", null, "invalid_request")]
    public async Task Bad_completions_are_400s_in_openais_shape_naming_the_field(string body, string? param, string code)
    {
        using var response = await fx.Http.SendAsync(Api.Post("/v1/completions", body));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = (await Api.JsonAsync(response)).GetProperty("error");
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        if (param is null)
            Assert.Contains("999999", error.GetProperty("message").GetString());
        else
            Assert.Equal(param, error.GetProperty("param").GetString());
    }
}
