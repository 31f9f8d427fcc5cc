using System.Net;
using System.Text;
using System.Text.Json;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

[Collection(SystemCollection.Name)]
public sealed class ChatAndSentimentTests(SystemFixture fx)
{
    private static readonly string[] Labels = ["positive", "negative", "neutral"];

    [Theory]
    [InlineData("I love this phone, it is wonderful!")]
    [InlineData("今天心情真好")]
    [InlineData("这个实验太难了,我快崩溃了")]
    public async Task Sentiment_returns_one_of_the_profile_labels_with_a_confidence(string input)
    {
        using var response = await fx.Http.SendAsync(Api.Post("/v1/sentiment", JsonSerializer.Serialize(new { input })));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await Api.JsonAsync(response);
        Assert.Contains(body.GetProperty("label").GetString(), Labels);
        var confidence = body.GetProperty("confidence").GetDouble();
        Assert.InRange(confidence, 1.0 / 3, 1.0);
        var scores = body.GetProperty("scores").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
        Assert.Equal(Labels.OrderBy(l => l), scores.Keys.OrderBy(k => k));
        Assert.All(scores.Values, s => Assert.True(s < 0, "label log-probabilities are negative"));
        Assert.Equal(scores.MaxBy(s => s.Value).Key, body.GetProperty("label").GetString());
        Assert.Equal("blue", body.GetProperty("colour").GetString());
        Assert.Equal("v1", body.GetProperty("profile").GetString());
        Assert.Equal("stories260K", body.GetProperty("model").GetString());
        Assert.Equal("blue", Api.Header(response, "X-Qwen-Colour"));
        Assert.Equal("v1", Api.Header(response, "X-Qwen-Profile"));
    }

    [Fact]
    public async Task Sentiment_is_deterministic_for_the_same_input()
    {
        var body = JsonSerializer.Serialize(new { input = "The food was cold and the waiter was rude." });
        using var a = await fx.Http.SendAsync(Api.Post("/v1/sentiment", body));
        using var b = await fx.Http.SendAsync(Api.Post("/v1/sentiment", body));
        var ja = await Api.JsonAsync(a);
        var jb = await Api.JsonAsync(b);
        Assert.Equal(ja.GetProperty("label").GetString(), jb.GetProperty("label").GetString());
        Assert.Equal(ja.GetProperty("confidence").GetDouble(), jb.GetProperty("confidence").GetDouble(), 4);
    }

    [Fact]
    public async Task Chat_answers_in_the_OpenAI_shape_from_the_live_colour()
    {
        using var response = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("Once upon a time", maxTokens: 16)));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await Api.JsonAsync(response);
        Assert.Equal("chat.completion", body.GetProperty("object").GetString());
        Assert.StartsWith("chatcmpl-", body.GetProperty("id").GetString());
        Assert.True(body.GetProperty("created").GetInt64() > 1_700_000_000);
        Assert.Equal("stories260K", body.GetProperty("model").GetString());
        var choice = body.GetProperty("choices")[0];
        Assert.Equal("assistant", choice.GetProperty("message").GetProperty("role").GetString());
        Assert.False(string.IsNullOrWhiteSpace(choice.GetProperty("message").GetProperty("content").GetString()));
        Assert.Contains(choice.GetProperty("finish_reason").GetString(), new[] { "stop", "length" });
        var usage = body.GetProperty("usage");
        Assert.True(usage.GetProperty("prompt_tokens").GetInt32() > 0);
        Assert.InRange(usage.GetProperty("completion_tokens").GetInt32(), 1, 16);
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt32() + usage.GetProperty("completion_tokens").GetInt32(), usage.GetProperty("total_tokens").GetInt32());
        Assert.Equal("blue", body.GetProperty("colour").GetString());
        Assert.Equal("v1", body.GetProperty("profile").GetString());
        Assert.Equal("v1", Api.Header(response, "X-Qwen-Profile"));
    }

    [Fact]
    public async Task Max_tokens_limits_the_answer_and_reports_length()
    {
        using var response = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("Tell me a long story about a dragon", maxTokens: 3)));
        var body = await Api.JsonAsync(response);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(3, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal("length", body.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task Greedy_chat_streamed_and_not_streamed_agree_token_for_token()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        const string prompt = "Lily went to the park and";
        using var plain = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody(prompt, maxTokens: 40)), cts.Token);
        var whole = (await Api.JsonAsync(plain)).GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString();

        using var req = Api.Post("/v1/chat/completions", Api.ChatBody(prompt, maxTokens: 40, stream: true));
        using var streamed = await fx.Http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, cts.Token);
        Assert.Equal(HttpStatusCode.OK, streamed.StatusCode);
        Assert.Equal("text/event-stream", Api.ContentType(streamed)?.MediaType);
        Assert.Equal("v1", Api.Header(streamed, "X-Qwen-Profile"));
        var events = await Api.ReadEventsAsync(streamed, cts.Token);

        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
        Assert.All(chunks, c => Assert.Equal("blue", c.GetProperty("colour").GetString()));
        Assert.Single(chunks.Select(c => c.GetProperty("id").GetString()).Distinct());
        Assert.Equal("assistant", chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
        var last = chunks[^1];
        Assert.NotEqual(JsonValueKind.Null, last.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind);
        // Without stream_options.include_usage no chunk carries usage (OpenAI's default).
        Assert.All(chunks, c => Assert.False(c.TryGetProperty("usage", out _), "usage sent without include_usage"));
        var text = new StringBuilder();
        foreach (var c in chunks)
            if (c.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("content", out var content))
                text.Append(content.GetString());
        Assert.True(chunks.Count > 3, "tokens arrive as several chunks");
        Assert.False(string.IsNullOrEmpty(whole));
        Assert.Equal(whole, text.ToString());
    }

    [Fact]
    public async Task Include_usage_adds_a_last_chunk_with_no_choices_and_the_usage()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var streamed = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("Lily went to the park and", maxTokens: 12, stream: true, includeUsage: true)),
            HttpCompletionOption.ResponseHeadersRead, cts.Token);
        Assert.Equal(HttpStatusCode.OK, streamed.StatusCode);
        var events = await Api.ReadEventsAsync(streamed, cts.Token);

        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.True(chunks.Count > 3, "tokens arrive as several chunks");
        // Every chunk but the last has choices and "usage": null.
        Assert.All(chunks[..^1], c =>
        {
            Assert.Equal(JsonValueKind.Null, c.GetProperty("usage").ValueKind);
            Assert.Equal(1, c.GetProperty("choices").GetArrayLength());
        });
        var finish = chunks[^2].GetProperty("choices")[0];
        Assert.Contains(finish.GetProperty("finish_reason").GetString(), new[] { "stop", "length" });
        // The last one: the same id, no choices, and the usage.
        var last = chunks[^1];
        Assert.Equal("chat.completion.chunk", last.GetProperty("object").GetString());
        Assert.Equal(chunks[0].GetProperty("id").GetString(), last.GetProperty("id").GetString());
        Assert.Equal(0, last.GetProperty("choices").GetArrayLength());
        var usage = last.GetProperty("usage");
        var prompt = usage.GetProperty("prompt_tokens").GetInt32();
        var completion = usage.GetProperty("completion_tokens").GetInt32();
        Assert.True(prompt > 0);
        Assert.InRange(completion, 1, 12);
        Assert.Equal(prompt + completion, usage.GetProperty("total_tokens").GetInt32());

        // include_usage false is the default: no usage anywhere.
        using var without = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("Lily went to the park and", maxTokens: 4, stream: true, includeUsage: false)),
            HttpCompletionOption.ResponseHeadersRead, cts.Token);
        var plain = (await Api.ReadEventsAsync(without, cts.Token))[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.All(plain, c => Assert.False(c.TryGetProperty("usage", out _)));
        Assert.All(plain, c => Assert.Equal(1, c.GetProperty("choices").GetArrayLength()));
    }

    [Fact]
    public async Task Each_request_reaches_the_colour_it_was_routed_to()
    {
        for (var i = 0; i < 3; i++)
        {
            using var green = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("Hello", maxTokens: 4), colour: "green"));
            var g = await Api.JsonAsync(green);
            Assert.Equal(HttpStatusCode.OK, green.StatusCode);
            Assert.Equal("v2", g.GetProperty("profile").GetString());
            Assert.Equal("green", g.GetProperty("colour").GetString());
            Assert.Equal("green-1", g.GetProperty("worker").GetString());
            Assert.Equal("green", Api.Header(green, "X-Qwen-Colour"));

            using var blue = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("Hello", maxTokens: 4)));
            var b = await Api.JsonAsync(blue);
            Assert.Equal("v1", b.GetProperty("profile").GetString());
            Assert.StartsWith("blue-", b.GetProperty("worker").GetString());
        }
        using var sentiment = await fx.Http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"great\"}", colour: "GREEN"));
        Assert.Equal("v2", (await Api.JsonAsync(sentiment)).GetProperty("profile").GetString());
    }

    [Fact]
    public async Task Greedy_answers_differ_between_profiles_but_not_within_one()
    {
        var body = Api.ChatBody("Tom had a red ball", maxTokens: 24);
        async Task<string> AskAsync(string colour)
        {
            using var r = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", body, colour: colour));
            return (await Api.JsonAsync(r)).GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        }
        var blue1 = await AskAsync("blue");
        var blue2 = await AskAsync("blue");
        var green = await AskAsync("green");
        Assert.Equal(blue1, blue2);
        Assert.NotEqual(blue1, green);
    }

    [Fact]
    public async Task Two_workers_of_one_colour_share_concurrent_load_a_busy_one_leaves_the_next_request_to_the_other()
    {
        // A long streamed answer holds one worker's only slot: a +100 bias on one text token keeps it from ending
        // before its 400 tokens.
        const string longBody = "{\"messages\":[{\"role\":\"user\",\"content\":\"Story\"}],\"max_tokens\":400,\"temperature\":0,\"stream\":true,\"logit_bias\":{\"300\":100}}";
        using var busy = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", longBody), HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, busy.StatusCode);
        var busyWorker = Api.Header(busy, "X-Qwen-Worker");
        Assert.Contains(busyWorker, new[] { "blue-1", "blue-2" });
        using var reader = new StreamReader(await busy.Content.ReadAsStreamAsync());
        while (await reader.ReadLineAsync() is { } line && !line.StartsWith("data: ", StringComparison.Ordinal))
        {
        }

        // While it decodes, the colour's next request can only be the other worker's.
        using var r = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("Story number 2", maxTokens: 8)));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var other = (await Api.JsonAsync(r)).GetProperty("worker").GetString();
        Assert.Contains(other, new[] { "blue-1", "blue-2" });
        Assert.NotEqual(busyWorker, other);

        // The long answer was not cut short for it.
        var rest = await reader.ReadToEndAsync();
        Assert.Contains("\"finish_reason\":\"length\"", rest, StringComparison.Ordinal);
        Assert.EndsWith("data: [DONE]", rest.TrimEnd(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_prompt_longer_than_the_context_is_refused_and_the_worker_keeps_serving()
    {
        var longText = string.Join(' ', Enumerable.Repeat("The little cat sat on the warm mat and purred.", 120));
        using var tooLong = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody(longText)));
        Assert.True(tooLong.StatusCode == HttpStatusCode.BadRequest, $"{(int)tooLong.StatusCode}: {await tooLong.Content.ReadAsStringAsync()}");
        var error = (await Api.JsonAsync(tooLong)).GetProperty("error");
        Assert.Equal("context_length_exceeded", error.GetProperty("code").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Contains("512", error.GetProperty("message").GetString());

        using var sentiment = await fx.Http.SendAsync(Api.Post("/v1/sentiment", JsonSerializer.Serialize(new { input = longText })));
        Assert.Equal(HttpStatusCode.BadRequest, sentiment.StatusCode);

        // Streamed, the same refusal is a status too, not a 200 whose stream carries the error: the answer's headers go
        // out with its first token, and the worker refuses the prompt before that.
        using var streamed = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody(longText, stream: true)));
        Assert.True(streamed.StatusCode == HttpStatusCode.BadRequest, $"{(int)streamed.StatusCode}: {await streamed.Content.ReadAsStringAsync()}");
        Assert.Equal("context_length_exceeded", (await Api.JsonAsync(streamed)).GetProperty("error").GetProperty("code").GetString());

        using var after = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("Hi", maxTokens: 4)));
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    /// <summary>The workers' context holds 512 tokens here; the conversation is over twice that.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_conversation_twice_the_context_is_answered_with_its_oldest_turns_dropped_and_says_so(bool stream)
    {
        var messages = new List<object> { new { role = "system", content = "You tell short stories." } };
        for (var i = 0; i < 24; i++)
        {
            messages.Add(new { role = "user", content = $"Question {i}: what did the little cat do on the warm mat after lunch today?" });
            messages.Add(new { role = "assistant", content = $"Answer {i}: the little cat sat on the warm mat and purred softly for a long time." });
        }
        messages.Add(new { role = "user", content = "And then?" });
        var body = JsonSerializer.Serialize(new { messages, max_tokens = 16, temperature = 0, stream });
        using var r = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", body));
        var text = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.OK, $"{(int)r.StatusCode}: {text}");
        int trimmed;
        if (stream)
        {
            // The headers left before the worker read the conversation: the finish chunk says it.
            var finish = text.Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal)).Select(l => JsonDocument.Parse(l[6..]).RootElement)
                .Single(c => c.GetProperty("choices").EnumerateArray().Any(ch => ch.GetProperty("finish_reason").ValueKind == JsonValueKind.String));
            trimmed = finish.GetProperty("trimmed_messages").GetInt32();
        }
        else
        {
            var json = JsonDocument.Parse(text).RootElement;
            trimmed = json.GetProperty("trimmed_messages").GetInt32();
            Assert.Equal(trimmed.ToString(System.Globalization.CultureInfo.InvariantCulture), r.Headers.GetValues("X-Qwen-Trimmed-Messages").Single());
            Assert.True(json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32() <= 512 - 16, text);
        }
        // Whole turns go, oldest first: an even number, and most of the 48 history messages.
        Assert.True(trimmed >= 24 && trimmed <= 48 && trimmed % 2 == 0, $"{trimmed} messages dropped");

        // A conversation that fits is read whole and says nothing about trimming.
        using var small = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("Hi", maxTokens: 4)));
        Assert.False(small.Headers.Contains("X-Qwen-Trimmed-Messages"));
        Assert.False(JsonDocument.Parse(await small.Content.ReadAsStringAsync()).RootElement.TryGetProperty("trimmed_messages", out _));
    }

    [Fact]
    public async Task Stop_strings_end_the_answer_before_the_stop_text()
    {
        using var free = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("Once upon a time", maxTokens: 40)));
        var text = (await Api.JsonAsync(free)).GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        var stop = text.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(2).First();
        var cut = text.IndexOf(stop, StringComparison.Ordinal);

        var body = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["messages"] = new[] { new { role = "user", content = "Once upon a time" } },
            ["max_tokens"] = 40,
            ["temperature"] = 0,
            ["stop"] = stop,
        });
        using var stopped = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", body));
        var json = await Api.JsonAsync(stopped);
        Assert.Equal(text[..cut], json.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        Assert.Equal("stop", json.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task Health_readiness_and_models_describe_the_fleet()
    {
        using var health = await fx.Http.GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        using var ready = await fx.Http.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        var r = await Api.JsonAsync(ready);
        Assert.Equal("blue", r.GetProperty("live_colour").GetString());
        Assert.Equal(2, r.GetProperty("live_workers").GetInt32());
        var models = await Api.JsonAsync(await fx.Http.GetAsync("/v1/models"));
        var entries = models.GetProperty("data").EnumerateArray().Select(m => (m.GetProperty("colour").GetString()!, m.GetProperty("profile").GetString()!)).OrderBy(x => x.Item1).ToArray();
        Assert.Equal(new[] { ("blue", "v1"), ("green", "v2") }, entries);
    }

    [Fact]
    public async Task A_new_session_gets_a_cookie_and_a_given_session_does_not()
    {
        using var fresh = await fx.Http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"ok\"}"));
        Assert.Contains(fresh.Headers.GetValues("Set-Cookie"), c => c.StartsWith("qwen_sid=", StringComparison.Ordinal));
        using var given = await fx.Http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"ok\"}", session: "s-123"));
        Assert.False(given.Headers.Contains("Set-Cookie"));
    }
}
