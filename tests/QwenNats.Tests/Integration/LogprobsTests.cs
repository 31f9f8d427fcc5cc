using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary><c>logprobs</c> and <c>top_logprobs</c> from the worker's real logits, in OpenAI's shape, plain and streamed.</summary>
[Collection(SystemCollection.Name)]
public sealed class LogprobsTests(SystemFixture fx)
{
    private static string Body(bool stream) => new JsonObject
    {
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Once upon a time" }),
        ["max_tokens"] = 12,
        ["temperature"] = 0,
        ["stream"] = stream,
        ["logprobs"] = true,
        ["top_logprobs"] = 3,
    }.ToJsonString();

    [Fact]
    public async Task A_greedy_answer_lists_each_token_with_its_logprob_bytes_and_the_top_alternatives()
    {
        using var response = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Body(stream: false)));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await Api.JsonAsync(response);
        var choice = body.GetProperty("choices")[0];
        var content = choice.GetProperty("message").GetProperty("content").GetString()!;
        var entries = choice.GetProperty("logprobs").GetProperty("content").EnumerateArray().ToList();
        Assert.Equal(body.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), entries.Count);

        var bytes = new List<byte>();
        foreach (var e in entries)
        {
            var logprob = e.GetProperty("logprob").GetDouble();
            Assert.InRange(logprob, -9999, 0);
            var own = e.GetProperty("bytes").EnumerateArray().Select(b => (byte)b.GetInt32()).ToArray();
            Assert.NotEmpty(own);
            bytes.AddRange(own);
            var top = e.GetProperty("top_logprobs").EnumerateArray().ToList();
            Assert.Equal(3, top.Count);
            var tops = top.Select(t => t.GetProperty("logprob").GetDouble()).ToList();
            Assert.Equal(tops.OrderDescending(), tops);
            // Greedy: the chosen token is the most likely one.
            Assert.Equal(e.GetProperty("token").GetString(), top[0].GetProperty("token").GetString());
            Assert.Equal(logprob, tops[0], 6);
        }
        Assert.Equal(content, Encoding.UTF8.GetString(bytes.ToArray()));
    }

    [Fact]
    public async Task A_streamed_answer_carries_the_same_logprobs_across_its_chunks()
    {
        using var plain = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Body(stream: false)));
        var expected = (await Api.JsonAsync(plain)).GetProperty("choices")[0].GetProperty("logprobs").GetProperty("content")
            .EnumerateArray().Select(e => (e.GetProperty("token").GetString(), Math.Round(e.GetProperty("logprob").GetDouble(), 5))).ToList();

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var response = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Body(stream: true)), cts.Token);
        var events = await Api.ReadEventsAsync(response, cts.Token);
        var streamed = new List<(string?, double)>();
        foreach (var data in events.Where(e => e != "[DONE]"))
        {
            var choice = JsonDocument.Parse(data).RootElement.GetProperty("choices")[0];
            if (choice.TryGetProperty("logprobs", out var lp) && lp.ValueKind == JsonValueKind.Object)
                streamed.AddRange(lp.GetProperty("content").EnumerateArray().Select(e => (e.GetProperty("token").GetString(), Math.Round(e.GetProperty("logprob").GetDouble(), 5))));
        }
        Assert.Equal(expected, streamed);
    }

    [Fact]
    public async Task Without_logprobs_no_choice_carries_them()
    {
        using var response = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("Once upon a time", maxTokens: 4)));
        var choice = (await Api.JsonAsync(response)).GetProperty("choices")[0];
        Assert.False(choice.TryGetProperty("logprobs", out _));
    }
}
