using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text.Json;
using QwenNats.Messaging;
using QwenNats.Tests.Infrastructure;
using Xunit.Abstractions;

namespace QwenNats.Tests.Integration;

[Collection(RolloutCollection.Name)]
public sealed class SwitchUnderLoadTests(RolloutFixture fx, ITestOutputHelper output) : IAsyncLifetime
{
    public Task InitializeAsync() => fx.ResetAsync();
    public Task DisposeAsync() => fx.ResetAsync();

    private sealed record Observation(string Session, string Kind, long SentTicks, long AnsweredTicks, string? Colour, string? Error);

    [Fact]
    public async Task Rollouts_and_rollbacks_under_load_fail_no_request_and_move_no_session_except_across_a_rollback()
    {
        var clock = Stopwatch.StartNew();
        var observations = new ConcurrentBag<Observation>();
        var rollbacks = new ConcurrentBag<(long Sent, long Replied)>();
        using var stop = new CancellationTokenSource();

        var loops = Enumerable.Range(0, 6).Select(i => HttpLoopAsync(i, clock, observations, stop.Token))
            .Concat(Enumerable.Range(0, 2).Select(i => WebSocketLoopAsync(i, clock, observations, stop.Token)))
            .ToArray();

        await Task.Delay(300);
        // At least 10 rollout cycles, and as many more as it takes (up to 150) for 100 requests to have run
        // across them: a busy machine serves fewer requests per cycle, which must not fail the test.
        const int minCycles = 10, maxCycles = 150, minRequests = 100;
        var cycles = 0;
        for (; cycles < minCycles || (observations.Count < minRequests && cycles < maxCycles); cycles++)
        {
            Assert.True((await fx.CtlAsync("start", "{\"candidate\":\"green\",\"reason\":\"load test\"}")).Ok);
            await Task.Delay(100);
            Assert.True((await fx.CtlAsync("set-weight", "{\"weight\":50}")).Ok);
            await Task.Delay(250);
            Assert.True((await fx.CtlAsync("promote")).Ok);
            await Task.Delay(250);
            var sent = clock.ElapsedTicks;
            var rb = await fx.CtlAsync("rollback", "{\"reason\":\"load test\"}");
            Assert.True(rb.Ok, rb.Error);
            // A rollback is under way until both ingresses route by it: until then one may still pin a new session
            // to green, which the rollback then moves.
            await fx.AppliedAsync(rb.State!.Version);
            rollbacks.Add((sent, clock.ElapsedTicks));
            await Task.Delay(150);
        }
        await stop.CancelAsync();
        await Task.WhenAll(loops);

        var all = observations.ToList();
        var failed = all.Where(o => o.Error is not null).ToList();
        output.WriteLine($"{all.Count} requests, {failed.Count} failed, {all.Count(o => o.Colour == "green")} answered by green, {all.Select(o => o.Session).Distinct().Count()} sessions, {cycles} rollout cycles");
        Assert.Empty(failed.Select(f => $"{f.Kind} {f.Session}: {f.Error}"));
        Assert.True(all.Count >= minRequests, $"only {all.Count} requests ran in {cycles} rollout cycles");
        Assert.Contains(all, o => o.Colour == "green");
        Assert.Contains(all, o => o.Colour == "blue");

        foreach (var session in all.GroupBy(o => o.Session))
        {
            var seq = session.OrderBy(o => o.SentTicks).ToList();
            for (var i = 1; i < seq.Count; i++)
            {
                var (a, b) = (seq[i - 1], seq[i]);
                if (a.Colour == b.Colour) continue;
                Assert.True(a.Colour == "green" && b.Colour == "blue",
                    $"session {session.Key} moved from {a.Colour} to {b.Colour}; only a rollback may move a session (green to blue)");
                Assert.Contains(rollbacks, r => r.Sent < b.AnsweredTicks && r.Replied > a.SentTicks);
            }
        }
    }

    private async Task HttpLoopAsync(int worker, Stopwatch clock, ConcurrentBag<Observation> observations, CancellationToken stop)
    {
        var n = 0;
        while (!stop.IsCancellationRequested)
        {
            var session = $"load-{worker}-{n++}";
            var history = new List<object>();
            for (var turn = 0; turn < 4 && !stop.IsCancellationRequested; turn++)
            {
                var http = (turn + worker) % 2 == 0 ? fx.Http1 : fx.Http2;
                var chat = turn % 2 == 1;
                HttpRequestMessage req;
                if (chat)
                {
                    history.Add(new { role = "user", content = $"Turn {turn}" });
                    req = Api.Post("/v1/chat/completions", JsonSerializer.Serialize(new { messages = history, max_tokens = 6, temperature = 0 }), session: session);
                }
                else
                {
                    req = Api.Post("/v1/sentiment", "{\"input\":\"what a lovely day\"}", session: session);
                }
                var sent = clock.ElapsedTicks;
                try
                {
                    using var r = await http.SendAsync(req, CancellationToken.None);
                    var body = await Api.JsonAsync(r);
                    if (r.StatusCode != HttpStatusCode.OK)
                    {
                        observations.Add(new Observation(session, chat ? "chat" : "sentiment", sent, clock.ElapsedTicks, null, $"{(int)r.StatusCode} {body}"));
                        continue;
                    }
                    observations.Add(new Observation(session, chat ? "chat" : "sentiment", sent, clock.ElapsedTicks, body.GetProperty("colour").GetString(), null));
                    if (chat)
                        history.Add(new { role = "assistant", content = body.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString() });
                }
                catch (Exception e)
                {
                    observations.Add(new Observation(session, chat ? "chat" : "sentiment", sent, clock.ElapsedTicks, null, e.Message));
                }
                finally
                {
                    req.Dispose();
                }
            }
        }
    }

    private async Task WebSocketLoopAsync(int worker, Stopwatch clock, ConcurrentBag<Observation> observations, CancellationToken stop)
    {
        var n = 0;
        while (!stop.IsCancellationRequested)
        {
            var session = $"ws-load-{worker}-{n++}";
            using var ws = new System.Net.WebSockets.ClientWebSocket();
            var http = worker % 2 == 0 ? fx.Http1 : fx.Http2;
            await ws.ConnectAsync(new UriBuilder(http.BaseAddress!) { Scheme = "ws", Path = "/ws/chat", Query = $"session={session}" }.Uri, CancellationToken.None);
            await ControlPlaneTests.WsAsync(ws, null, CancellationToken.None);
            for (var turn = 0; turn < 5 && !stop.IsCancellationRequested; turn++)
            {
                var sent = clock.ElapsedTicks;
                try
                {
                    var colour = await ControlPlaneTests.WsTurnAsync(ws, CancellationToken.None);
                    observations.Add(new Observation(session, "websocket", sent, clock.ElapsedTicks, colour, null));
                }
                catch (Exception e)
                {
                    observations.Add(new Observation(session, "websocket", sent, clock.ElapsedTicks, null, e.Message));
                    break;
                }
            }
            await ws.CloseAsync(System.Net.WebSockets.WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
        }
    }
}
