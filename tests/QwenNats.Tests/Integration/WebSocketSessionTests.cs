using System.Net.WebSockets;
using NATS.Client.Core;
using Microsoft.Extensions.DependencyInjection;
using System.Text;
using System.Text.Json;
using QwenNats.Tests.Infrastructure;
using Xunit.Abstractions;

namespace QwenNats.Tests.Integration;

/// <summary>
/// WebSocket conversations that outlive an ingress (history and turn count in NATS KV), a cancel frame, and a
/// draining ingress: real nats-server, real workers, two ingresses.
/// </summary>
public sealed class WebSocketSessionTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_conversation_continues_on_another_ingress_when_its_ingress_stops_mid_conversation_under_load()
    {
        await using var server = await NatsServer.StartAsync();
        await using var system = new QwenSystem(server);
        await system.StartWorkerAsync("blue", "v1", slots: 2);
        var (ingressA, httpA) = await system.StartIngressAsync();
        var (_, httpB) = await system.StartIngressAsync();
        await QwenSystem.WaitForWorkersAsync(httpA, "blue", 1);
        await QwenSystem.WaitForWorkersAsync(httpB, "blue", 1);

        using var stopLoad = new CancellationTokenSource();
        var load = ClientLoad.RunAsync(httpB, stopLoad.Token, clients: 2);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));

        using var a = await ConnectAsync(httpA, "", cts.Token);
        var ready = await ReceiveAsync(a, cts.Token);
        var session = ready.GetProperty("session_id").GetString()!;
        Assert.Equal(0, ready.GetProperty("turns").GetInt32());
        var answers = new Dictionary<string, string>();
        int lastPrompt = 0;
        for (var i = 1; i <= 3; i++)
        {
            var done = await TurnAsync(a, Message($"t{i}", $"Tell me about the cat, part {i}."), cts.Token);
            Assert.Equal(i, done.GetProperty("turns").GetInt32());
            answers[$"t{i}"] = done.GetProperty("text").GetString()!;
            lastPrompt = done.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        }

        // Turn 4 is in flight when ingress A is told to stop: it drains — finishes the turn, then closes with 1001.
        await SendAsync(a, Message("t4", "And what did the dog say?", maxTokens: 24), cts.Token);
        Assert.Equal("accepted", (await ReceiveAsync(a, cts.Token)).GetProperty("type").GetString());
        var stopping = ingressA.StopAsync(cts.Token);
        JsonElement fourth;
        while (true)
        {
            var f = await ReceiveAsync(a, cts.Token);
            if (f.GetProperty("type").GetString() == "done") { fourth = f; break; }
            Assert.Equal("token", f.GetProperty("type").GetString());
        }
        Assert.Equal(4, fourth.GetProperty("turns").GetInt32());
        var close = await a.ReceiveAsync(new byte[1024], cts.Token);
        Assert.Equal(WebSocketMessageType.Close, close.MessageType);
        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, a.CloseStatus);
        Assert.Contains(session, a.CloseStatusDescription);
        output.WriteLine($"closed: {a.CloseStatus} {a.CloseStatusDescription}");
        await stopping;

        // The client reconnects to ingress B with its session: history, turn count and colour come back.
        using var b = await ConnectAsync(httpB, $"session={Uri.EscapeDataString(session)}", cts.Token);
        var resumed = await ReceiveAsync(b, cts.Token);
        Assert.Equal(session, resumed.GetProperty("session_id").GetString());
        Assert.True(resumed.GetProperty("resumed").GetBoolean());
        Assert.Equal(4, resumed.GetProperty("turns").GetInt32());
        Assert.Equal("blue", resumed.GetProperty("colour").GetString());

        // Resending turn 4 (as a client that never saw its answer would) is not answered twice.
        var replay = await TurnAsync(b, Message("t4", "And what did the dog say?", maxTokens: 24), cts.Token, expectAccepted: false);
        Assert.True(replay.GetProperty("replayed").GetBoolean());
        Assert.Equal(fourth.GetProperty("text").GetString(), replay.GetProperty("text").GetString());
        Assert.Equal(4, replay.GetProperty("turns").GetInt32());

        var fifth = await TurnAsync(b, Message("t5", "What happened at the end?"), cts.Token);
        Assert.Equal(5, fifth.GetProperty("turns").GetInt32());
        Assert.Equal("blue", fifth.GetProperty("colour").GetString());
        // The history of turns 1-4 is in the prompt: it is longer than turn 3's, which held turns 1-2.
        Assert.True(fifth.GetProperty("usage").GetProperty("prompt_tokens").GetInt32() > lastPrompt, fifth.ToString());

        await stopLoad.CancelAsync();
        var (ok, failed) = await load;
        output.WriteLine($"load on ingress B: {ok} ok, {failed.Count} failed");
        Assert.Empty(failed);
        Assert.True(ok > 0);
    }

    [Fact]
    public async Task A_cancel_frame_stops_the_turn_being_generated_and_the_conversation_goes_on()
    {
        await using var server = await NatsServer.StartAsync();
        await using var system = new QwenSystem(server);
        // Every token costs forty times its compute: a long answer takes seconds, so the cancel lands mid-answer.
        await system.StartWorkerAsync("blue", "v1", extra: new() { ["Faults:Fraction"] = "1", ["Faults:Slowdown"] = "40" });
        var (_, http) = await system.StartIngressAsync();
        await QwenSystem.WaitForWorkersAsync(http, "blue", 1);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var ws = await ConnectAsync(http, "", cts.Token);
        await ReceiveAsync(ws, cts.Token);

        await SendAsync(ws, Message("long", "Once upon a time", maxTokens: 400), cts.Token);
        Assert.Equal("accepted", (await ReceiveAsync(ws, cts.Token)).GetProperty("type").GetString());
        Assert.Equal("token", (await ReceiveAsync(ws, cts.Token)).GetProperty("type").GetString());
        // A message sent while the turn runs waits its turn; the cancel that follows it stops the running turn at once.
        await SendAsync(ws, Message("queued", "Hello?", maxTokens: 2), cts.Token);
        await SendAsync(ws, "{\"type\":\"cancel\"}", cts.Token);
        JsonElement cancelled;
        while (true)
        {
            var f = await ReceiveAsync(ws, cts.Token);
            var type = f.GetProperty("type").GetString();
            if (type == "cancelled") { cancelled = f; break; }
            Assert.Equal("token", type);
        }
        Assert.Equal("long", cancelled.GetProperty("turn_id").GetString());
        Assert.Equal(0, cancelled.GetProperty("turns").GetInt32());

        // A cancelled turn is not part of the conversation: the queued message is its first turn.
        JsonElement queued;
        while (true)
        {
            var f = await ReceiveAsync(ws, cts.Token);
            if (f.GetProperty("type").GetString() == "done") { queued = f; break; }
        }
        Assert.Equal("queued", queued.GetProperty("turn_id").GetString());
        Assert.Equal(1, queued.GetProperty("turns").GetInt32());
        var next = await TurnAsync(ws, Message("short", "Hi", maxTokens: 2), cts.Token);
        Assert.Equal(2, next.GetProperty("turns").GetInt32());
        await SendAsync(ws, "{\"type\":\"cancel\"}", cts.Token);
        Assert.Equal("no_turn_in_progress", (await ReceiveAsync(ws, cts.Token)).GetProperty("code").GetString());
    }

    [Fact]
    public async Task A_client_that_closes_mid_turn_has_neither_that_turn_nor_the_ones_it_sent_ahead_generated()
    {
        await using var server = await NatsServer.StartAsync();
        await using var system = new QwenSystem(server);
        // One slot, so every turn the ingress starts goes through the blue work queue; a slowed answer, so the close lands mid-turn.
        await system.StartWorkerAsync("blue", "v1", extra: new() { ["Faults:Fraction"] = "1", ["Faults:Slowdown"] = "40" });
        var (_, http) = await system.StartIngressAsync();
        await QwenSystem.WaitForWorkersAsync(http, "blue", 1);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        // Every request any ingress hands the blue pool, queued or offered.
        await using var nats = Nats.Connect(server.Url);
        await using var queued = await nats.SubscribeCoreAsync<byte[]>(QwenNats.Messaging.Subjects.Infer("blue"), cancellationToken: cts.Token);
        await using var offered = await nats.SubscribeCoreAsync<byte[]>(QwenNats.Messaging.Subjects.Direct("blue"), cancellationToken: cts.Token);
        await nats.PingAsync(cts.Token);
        using var ws = await ConnectAsync(http, "", cts.Token);
        await ReceiveAsync(ws, cts.Token);

        await SendAsync(ws, Message("long", "Once upon a time", maxTokens: 400), cts.Token);
        Assert.Equal("accepted", (await ReceiveAsync(ws, cts.Token)).GetProperty("type").GetString());
        foreach (var id in new[] { "ahead-1", "ahead-2", "ahead-3" })
            await SendAsync(ws, Message(id, "Hello?", maxTokens: 2), cts.Token);
        // The close handshake ends when the ingress closes too, which it does once it has dealt with every frame before the close.
        await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "leaving", cts.Token);
        Assert.Equal(WebSocketState.Closed, ws.State);

        await nats.PingAsync(cts.Token);
        var requests = 0;
        while (queued.Msgs.TryRead(out _) || offered.Msgs.TryRead(out _))
            requests++;
        Assert.Equal(1, requests); // the long turn only
    }

    [Fact]
    public async Task A_cancel_that_arrives_while_the_turn_is_handed_to_a_worker_ends_the_turn_and_not_the_connection()
    {
        await using var server = await NatsServer.StartAsync();
        await using var system = new QwenSystem(server);
        // The offer of the turn waits (up to a minute) for a worker's acceptance that never comes: the cancel lands there.
        var (ingress, http) = await system.StartIngressAsync(new() { ["Ingress:DirectAcceptTimeout"] = "00:01:00" });
        var registry = ingress.Services.GetRequiredService<QwenNats.Messaging.WorkerRegistry>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await using var nats = Nats.Connect(server.Url);
        await using var offers = await nats.SubscribeCoreAsync<QwenNats.Messaging.InferRequest>(QwenNats.Messaging.Subjects.Direct("blue"), QwenNats.Messaging.Subjects.WorkConsumer, cancellationToken: cts.Token);
        await using var cancels = await nats.SubscribeCoreAsync<QwenNats.Messaging.CancelRequest>(QwenNats.Messaging.Subjects.Cancel, cancellationToken: cts.Token);
        await nats.PingAsync(cts.Token);
        void Beat() => registry.Record(new QwenNats.Messaging.WorkerHeartbeat
        {
            WorkerId = "silent", Colour = "blue", ModelId = "m", ModelSha256 = "0", ProfileVersion = "v1", Slots = 2, TakesOffers = true,
        }, DateTimeOffset.UtcNow);
        Beat();
        using var ws = await ConnectAsync(http, "", cts.Token);
        await ReceiveAsync(ws, cts.Token);

        await SendAsync(ws, Message("offered", "Hello"), cts.Token);
        var offer = await offers.Msgs.ReadAsync(cts.Token);
        await SendAsync(ws, "{\"type\":\"cancel\"}", cts.Token);
        var cancelled = await ReceiveAsync(ws, cts.Token);
        Assert.Equal("cancelled", cancelled.GetProperty("type").GetString());
        Assert.Equal("offered", cancelled.GetProperty("turn_id").GetString());
        Assert.Equal(offer.Data!.Id, (await cancels.Msgs.ReadAsync(cts.Token)).Data!.Id); // a worker that took it after all drops it

        // The connection goes on.
        await SendAsync(ws, "{\"type\":\"reset\"}", cts.Token);
        Assert.Equal("reset", (await ReceiveAsync(ws, cts.Token)).GetProperty("type").GetString());
    }

    private static string Message(string id, string content, int maxTokens = 12) =>
        JsonSerializer.Serialize(new { type = "message", id, content, max_tokens = maxTokens, temperature = 0 });

    private static async Task<JsonElement> TurnAsync(ClientWebSocket ws, string frame, CancellationToken ct, bool expectAccepted = true)
    {
        await SendAsync(ws, frame, ct);
        var accepted = false;
        while (true)
        {
            var f = await ReceiveAsync(ws, ct);
            switch (f.GetProperty("type").GetString())
            {
                case "accepted": accepted = true; break;
                case "token": break;
                case "done":
                    Assert.Equal(expectAccepted, accepted);
                    return f;
                default:
                    Assert.Fail($"unexpected frame {f}");
                    break;
            }
        }
    }

    private static Task<ClientWebSocket> ConnectAsync(HttpClient http, string query, CancellationToken ct) => WsClient.ConnectAsync(http, query, ct);

    private static Task SendAsync(ClientWebSocket ws, string text, CancellationToken ct) => WsClient.SendAsync(ws, text, ct);

    private static Task<JsonElement> ReceiveAsync(ClientWebSocket ws, CancellationToken ct) => WsClient.ReceiveAsync(ws, ct);
}
