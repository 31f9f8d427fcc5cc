using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

[Collection(SystemCollection.Name)]
public sealed class WebSocketChatTests(SystemFixture fx)
{
    [Fact]
    public async Task Two_turns_of_a_conversation_carry_the_history()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var ws = await ConnectAsync("", cts.Token);
        var ready = await ReceiveAsync(ws, cts.Token);
        Assert.Equal("ready", ready.GetProperty("type").GetString());
        Assert.False(string.IsNullOrEmpty(ready.GetProperty("session_id").GetString()));

        var first = await TurnAsync(ws, "{\"type\":\"message\",\"content\":\"Once upon a time\",\"max_tokens\":12,\"temperature\":0}", cts.Token);
        var second = await TurnAsync(ws, "{\"content\":\"What happened next?\",\"max_tokens\":12,\"temperature\":0}", cts.Token);

        Assert.Equal(1, first.Done.GetProperty("turns").GetInt32());
        Assert.Equal(2, second.Done.GetProperty("turns").GetInt32());
        var firstPrompt = first.Done.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        var firstAnswer = first.Done.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
        var secondPrompt = second.Done.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        Assert.True(secondPrompt > firstPrompt + firstAnswer, $"second prompt ({secondPrompt}) holds the first turn ({firstPrompt}+{firstAnswer})");
        Assert.Equal(first.Done.GetProperty("text").GetString(), first.Streamed);
        Assert.Equal("blue", second.Done.GetProperty("colour").GetString());
        Assert.Equal("v1", second.Done.GetProperty("profile").GetString());
        Assert.All(second.Tokens, t => Assert.Equal("blue", t.GetProperty("colour").GetString()));

        await SendAsync(ws, "{\"type\":\"reset\"}", cts.Token);
        Assert.Equal("reset", (await ReceiveAsync(ws, cts.Token)).GetProperty("type").GetString());
        var third = await TurnAsync(ws, "{\"content\":\"Once upon a time\",\"max_tokens\":12,\"temperature\":0}", cts.Token);
        Assert.Equal(firstPrompt, third.Done.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(first.Done.GetProperty("text").GetString(), third.Done.GetProperty("text").GetString());
        await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", cts.Token);
    }

    /// <summary>The worker's context holds 512 tokens here; the conversation grows to well over twice that.</summary>
    [Fact]
    public async Task A_conversation_twice_the_context_keeps_working_with_the_oldest_turns_dropped()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var ws = await ConnectAsync("", cts.Token);
        await ReceiveAsync(ws, cts.Token);
        var sent = 0;
        var trimmed = 0;
        var turns = new List<int>();
        for (var i = 0; i < 14; i++)
        {
            var content = $"Turn {i}: " + string.Join(' ', Enumerable.Repeat("The little cat sat on the warm mat and purred softly.", 8));
            sent += content.Length;
            var turn = await TurnAsync(ws, JsonSerializer.Serialize(new { content, max_tokens = 8, temperature = 0 }), cts.Token);
            var done = turn.Done;
            Assert.True(done.GetProperty("usage").GetProperty("prompt_tokens").GetInt32() < 512, done.ToString());
            if (done.TryGetProperty("trimmed_messages", out var t)) trimmed += t.GetInt32();
            turns.Add(done.GetProperty("turns").GetInt32());
        }
        // Every turn was answered (counted 1..14); the oldest turns left the history, whose prompt stayed under the context.
        Assert.True(sent > 4 * 512, $"{sent} characters sent");
        Assert.True(trimmed >= 10, $"{trimmed} messages dropped");
        Assert.Equal(Enumerable.Range(1, 14), turns);
    }

    [Fact]
    public async Task A_conversation_can_be_held_with_the_green_pool()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var ws = await ConnectAsync("?colour=green", cts.Token);
        Assert.Equal("green", (await ReceiveAsync(ws, cts.Token)).GetProperty("colour").GetString());
        var turn = await TurnAsync(ws, "{\"content\":\"Hello\",\"max_tokens\":6}", cts.Token);
        Assert.Equal("v2", turn.Done.GetProperty("profile").GetString());
        Assert.Equal("green-1", turn.Done.GetProperty("worker").GetString());
    }

    [Theory]
    [InlineData("not json", "invalid_json")]
    [InlineData("[1]", "invalid_request")]
    [InlineData("{\"type\":\"dance\"}", "invalid_request")]
    [InlineData("{\"content\":\"\"}", "empty_conversation")]
    [InlineData("{\"content\":7}", "empty_conversation")]
    [InlineData("{\"content\":\"hi\",\"max_tokens\":-5}", "invalid_request")]
    [InlineData("{\"content\":\"hi\",\"temperature\":\"warm\"}", "invalid_request")]
    public async Task A_bad_frame_gets_an_error_frame_and_the_connection_stays_open(string frame, string code)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var ws = await ConnectAsync("", cts.Token);
        await ReceiveAsync(ws, cts.Token);
        await SendAsync(ws, frame, cts.Token);
        var error = await ReceiveAsync(ws, cts.Token);
        Assert.Equal("error", error.GetProperty("type").GetString());
        Assert.Equal(code, error.GetProperty("code").GetString());
        var turn = await TurnAsync(ws, "{\"content\":\"Hi\",\"max_tokens\":4}", cts.Token);
        Assert.Equal(1, turn.Done.GetProperty("turns").GetInt32());
    }

    [Fact]
    public async Task An_oversized_frame_is_refused_with_an_error_frame()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var ws = await ConnectAsync("", cts.Token);
        await ReceiveAsync(ws, cts.Token);
        await SendAsync(ws, "{\"content\":\"" + new string('x', 300_000) + "\"}", cts.Token);
        var error = await ReceiveAsync(ws, cts.Token);
        Assert.Equal("message_too_large", error.GetProperty("code").GetString());
        Assert.Equal(WebSocketState.Open, ws.State);
    }

    [Theory]
    [InlineData("{\"content\":\"hi\",\"n\":2}", "n", "unknown_parameter")]
    [InlineData("{\"content\":\"hi\",\"logprobs\":true}", "logprobs", "unknown_parameter")]
    [InlineData("{\"content\":\"hi\",\"temprature\":0.5}", "temprature", "unknown_parameter")]
    [InlineData("{\"content\":\"hi\",\"presence_penalty\":3}", "presence_penalty", "invalid_request")]
    [InlineData("{\"content\":\"hi\",\"logit_bias\":{\"x\":1}}", "logit_bias.x", "invalid_request")]
    [InlineData("{\"content\":\"hi\",\"response_format\":{\"type\":\"xml\"}}", "response_format.type", "invalid_request")]
    [InlineData("{\"content\":\"hi\",\"stop\":[1]}", "stop", "invalid_request")]
    public async Task A_frame_with_an_unknown_or_bad_field_gets_an_error_frame_naming_it(string frame, string param, string code)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var ws = await ConnectAsync("", cts.Token);
        await ReceiveAsync(ws, cts.Token);
        await SendAsync(ws, frame, cts.Token);
        var error = await ReceiveAsync(ws, cts.Token);
        Assert.Equal("error", error.GetProperty("type").GetString());
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Contains(param, error.GetProperty("message").GetString());
        Assert.Equal(WebSocketState.Open, ws.State);
    }

    [Fact]
    public async Task A_turn_honours_the_http_chats_sampling_fields()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var ws = await ConnectAsync("", cts.Token);
        await ReceiveAsync(ws, cts.Token);
        async Task<JsonElement> FreshTurnAsync(string frame)
        {
            await SendAsync(ws, "{\"type\":\"reset\"}", cts.Token);
            Assert.Equal("reset", (await ReceiveAsync(ws, cts.Token)).GetProperty("type").GetString());
            return (await TurnAsync(ws, frame, cts.Token)).Done;
        }

        var json = await FreshTurnAsync("{\"content\":\"A cat in JSON\",\"max_tokens\":300,\"temperature\":0.8,\"seed\":3,\"response_format\":{\"type\":\"json_object\"}}");
        Assert.Equal("stop", json.GetProperty("finish_reason").GetString());
        Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(json.GetProperty("text").GetString()!).RootElement.ValueKind);

        // A +100 bias on one text token: a greedy answer of four of that token.
        var biased = (await FreshTurnAsync("{\"content\":\"Once upon a time\",\"max_tokens\":4,\"temperature\":0,\"logit_bias\":{\"300\":100}}")).GetProperty("text").GetString()!;
        Assert.True(biased.Length > 0 && biased.Length % 4 == 0, biased);
        Assert.Equal(string.Concat(Enumerable.Repeat(biased[..(biased.Length / 4)], 4)), biased);

        const string Greedy = "{\"content\":\"Once upon a time\",\"max_tokens\":32,\"temperature\":0";
        var plain = (await FreshTurnAsync(Greedy + "}")).GetProperty("text").GetString()!;
        var penalised = (await FreshTurnAsync(Greedy + ",\"frequency_penalty\":2,\"presence_penalty\":2}")).GetProperty("text").GetString()!;
        Assert.NotEqual(plain, penalised);
        var word = System.Text.RegularExpressions.Regex.Matches(plain, "[A-Za-z]{3,}").First(m => m.Index > 0).Value;
        var stopped = await FreshTurnAsync(Greedy + ",\"stop\":[\"" + word + "\"]}");
        Assert.Equal("stop", stopped.GetProperty("finish_reason").GetString());
        Assert.Equal(plain[..plain.IndexOf(word, StringComparison.Ordinal)], stopped.GetProperty("text").GetString());

        const string Seeded = "{\"content\":\"Once upon a time\",\"max_completion_tokens\":16,\"temperature\":1,\"top_p\":0.95,\"seed\":77}";
        var first = await FreshTurnAsync(Seeded);
        Assert.InRange(first.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), 1, 16);
        Assert.Equal(first.GetProperty("text").GetString(), (await FreshTurnAsync(Seeded)).GetProperty("text").GetString());
    }

    private sealed record Turn(JsonElement Done, List<JsonElement> Tokens, string Streamed);

    private static async Task<Turn> TurnAsync(ClientWebSocket ws, string frame, CancellationToken ct)
    {
        await SendAsync(ws, frame, ct);
        var tokens = new List<JsonElement>();
        var accepted = false;
        while (true)
        {
            var f = await ReceiveAsync(ws, ct);
            switch (f.GetProperty("type").GetString())
            {
                case "accepted":
                    accepted = true;
                    break;
                case "token":
                    Assert.True(accepted, "accepted comes before tokens");
                    tokens.Add(f);
                    break;
                case "done":
                    return new Turn(f, tokens, string.Concat(tokens.Select(t => t.GetProperty("text").GetString())));
                default:
                    Assert.Fail($"unexpected frame {f}");
                    break;
            }
        }
    }

    private Task<ClientWebSocket> ConnectAsync(string query, CancellationToken ct) => WsClient.ConnectAsync(fx.Http, query, ct);

    private static Task SendAsync(ClientWebSocket ws, string text, CancellationToken ct) => WsClient.SendAsync(ws, text, ct);

    private static Task<JsonElement> ReceiveAsync(ClientWebSocket ws, CancellationToken ct) => WsClient.ReceiveAsync(ws, ct);
}
