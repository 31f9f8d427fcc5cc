using System.Net;
using System.Text.Json;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>The shared prompt prefix changes nothing in the answers, only the work done.</summary>
public sealed class PrefixCacheTests
{
    [Fact]
    public async Task Answers_with_the_shared_prefix_equal_answers_decoded_in_full()
    {
        await using var nats = await NatsServer.StartAsync();
        await using var system = new QwenSystem(nats);
        await system.StartWorkerAsync("blue", "v1", slots: 2, extra: new() { ["Worker:PrefixCache"] = "true" });
        await system.StartWorkerAsync("green", "v1", slots: 2, extra: new() { ["Worker:PrefixCache"] = "false" });
        var (app, http) = await system.StartIngressAsync();
        await QwenSystem.WaitForWorkersAsync(http, "blue", 1);
        await QwenSystem.WaitForWorkersAsync(http, "green", 1);

        foreach (var prompt in new[] { "Once upon a time", "The little dog ran to the park and", "你好" })
        {
            var shared = await ChatAsync(http, "blue", prompt);
            var full = await ChatAsync(http, "green", prompt);
            Assert.Equal(full.Text, shared.Text);
            Assert.Equal(full.PromptTokens, shared.PromptTokens);
        }
        foreach (var input in new[] { "I love it", "This is terrible", "今天心情真好" })
        {
            var shared = await SentimentAsync(http, "blue", input);
            var full = await SentimentAsync(http, "green", input);
            Assert.Equal(full.GetProperty("label").GetString(), shared.GetProperty("label").GetString());
            // Log-probabilities agree up to the float noise of decoding the prompt in two batches instead of one.
            foreach (var label in full.GetProperty("scores").EnumerateObject())
                Assert.InRange(Math.Abs(label.Value.GetDouble() - shared.GetProperty("scores").GetProperty(label.Name).GetDouble()), 0, 0.05);
        }
        // A client's own system prompt does not start with the profile's prefix: decoded in full, still answered.
        using var own = await http.SendAsync(Api.Post("/v1/chat/completions",
            "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":8,\"temperature\":0}", colour: "blue"));
        Assert.Equal(HttpStatusCode.OK, own.StatusCode);
    }

    private static async Task<(string Text, int PromptTokens)> ChatAsync(HttpClient http, string colour, string prompt)
    {
        using var r = await http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody(prompt, maxTokens: 32), colour: colour));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var body = await Api.JsonAsync(r);
        return (body.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!, body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    private static async Task<JsonElement> SentimentAsync(HttpClient http, string colour, string input)
    {
        using var r = await http.SendAsync(Api.Post("/v1/sentiment", JsonSerializer.Serialize(new { input }), colour: colour));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        return await Api.JsonAsync(r);
    }
}
