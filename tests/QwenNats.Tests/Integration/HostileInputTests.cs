using System.Collections.Concurrent;
using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using NATS.Client.Core;
using QwenNats.Messaging;
using QwenNats.Tests.Infrastructure;
using Xunit.Abstractions;

namespace QwenNats.Tests.Integration;

/// <summary>
/// More than 10,000 generated bad inputs against every HTTP endpoint, the WebSocket and every qwen.ctl
/// subject of a system running as separate processes. Every answer must be a 4xx in OpenAI's shape (a
/// JSON error on NATS, an error frame on the WebSocket); no 5xx, no process exits, memory returns near its
/// start, and neither the keys nor the fuzz text appear in any log.
/// </summary>
[Collection(ProcessSystemCollection.Name)]
public sealed class HostileInputTests(ProcessSystemFixture fx, ITestOutputHelper output)
{
    private const int HttpCases = 7_000;
    private const int Injections = 40;
    private const int Frames = 1_600;
    private const int ControlCases = 1_600;

    [Fact]
    public async Task Ten_thousand_hostile_inputs_get_clear_4xx_errors_and_leave_every_process_healthy()
    {
        var fuzz = new Fuzz(seed: 20261125);
        var problems = new ConcurrentQueue<string>();
        var byKind = new ConcurrentDictionary<string, int>();
        using var http = fx.Client();
        var rollout = (await Ctl.SendAsync(fx.Operator, "status")).State!;

        // Warm up (JIT, pools, first allocations) before taking the memory baseline.
        await RunHttpAsync(http, Enumerable.Range(0, 300).Select(fuzz.NextHttp).ToList(), problems, byKind);
        await Task.Delay(2000);
        var before = Memory();

        var cases = Enumerable.Range(0, HttpCases).Select(fuzz.NextHttp).Concat(Enumerable.Range(0, Injections).Select(fuzz.NextInjection)).ToList();
        var frames = Enumerable.Range(0, Frames).Select(_ => fuzz.NextFrame()).ToList();
        var controls = Enumerable.Range(0, ControlCases).Select(_ => fuzz.NextControl()).ToList();
        await Task.WhenAll(
            RunHttpAsync(http, cases, problems, byKind),
            RunWebSocketAsync(frames, problems, byKind),
            RunControlAsync(controls, problems, byKind));

        await Task.Delay(5000);
        var after = Memory();
        var total = byKind.Where(k => !k.Key.StartsWith("http refused", StringComparison.Ordinal)).Sum(k => k.Value);
        output.WriteLine($"{total} hostile inputs: " + string.Join(", ", byKind.OrderBy(k => k.Key).Select(k => $"{k.Key} {k.Value}")));
        foreach (var (name, bytes) in before)
            output.WriteLine($"{name}: resident {bytes / 1048576.0:F0} MiB after warm-up, {after[name] / 1048576.0:F0} MiB after the fuzz");
        foreach (var p in problems.Take(20)) output.WriteLine("problem: " + p);

        Assert.True(total >= 10_000, $"only {total} inputs were sent");
        Assert.Empty(problems);
        foreach (var p in fx.Processes)
            Assert.False(p.HasExited, $"{p.Name} exited");
        foreach (var (name, bytes) in before)
            Assert.True(after[name] <= bytes * 1.5 + 64 * 1048576, $"{name} grew from {bytes / 1048576} MiB to {after[name] / 1048576} MiB");
        // Nothing the fuzz sent changed the rollout.
        var now = (await Ctl.SendAsync(fx.Operator, "status")).State!;
        Assert.Equal((rollout.Phase, rollout.Version, rollout.Live), (now.Phase, now.Version, now.Live));
        // No key, token or fuzz text reached any log.
        var secrets = new[] { ProcessSystemFixture.KeyBulk, ProcessSystemFixture.KeyLimited, ProcessSystemFixture.KeyWebSocket, ProcessSystemFixture.OperatorToken, Fuzz.Canary };
        foreach (var p in fx.Processes)
        {
            var leaked = p.Output.FirstOrDefault(line => secrets.Any(s => line.Contains(s, StringComparison.Ordinal)));
            Assert.True(leaked is null, $"{p.Name} logged a secret or user text: {leaked?[..Math.Min(leaked.Length, 300)]}");
        }
    }

    private Dictionary<string, long> Memory()
    {
        var m = fx.Processes.ToDictionary(p => p.Name, p => p.ResidentBytes());
        m["nats-server"] = ServiceProcess.Resident(fx.Nats.Pid);
        return m;
    }

    private static async Task RunHttpAsync(HttpClient http, IReadOnlyList<FuzzCase> cases, ConcurrentQueue<string> problems, ConcurrentDictionary<string, int> byKind)
    {
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, 6).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < cases.Count)
            {
                var c = cases[i];
                byKind.AddOrUpdate("http " + c.Kind, 1, (_, n) => n + 1);
                try
                {
                    using var req = new HttpRequestMessage(new HttpMethod(c.Method), c.Path) { Content = new ByteArrayContent(c.Body) };
                    req.Content.Headers.ContentType = new("application/json");
                    // As a well-behaved client of large uploads: wait for 100-continue, so an early 413 is read
                    // instead of racing the server's close of the upload.
                    if (c.Body.Length > 65_536) req.Headers.ExpectContinue = true;
                    foreach (var (k, v) in c.Headers)
                        if (!req.Headers.TryAddWithoutValidation(k, v)) req.Content.Headers.TryAddWithoutValidation(k, v);
                    using var r = await http.SendAsync(req);
                    var body = await r.Content.ReadAsStringAsync();
                    var status = (int)r.StatusCode;
                    if (c.MaySucceed && status == 200)
                    {
                        var colour = r.Headers.TryGetValues("X-Qwen-Colour", out var cv) ? cv.Single() : null;
                        if (colour != "blue")
                            problems.Enqueue($"{c.Kind} {c.Path}: served by {colour}, not the live colour");
                        if (c.Path == "/v1/sentiment")
                        {
                            var label = JsonDocument.Parse(body).RootElement.GetProperty("label").GetString();
                            if (label is not ("positive" or "negative" or "neutral"))
                                problems.Enqueue($"{c.Kind}: sentiment answered '{label}'");
                        }
                        else if (JsonDocument.Parse(body).RootElement.GetProperty("object").GetString() != "chat.completion")
                            problems.Enqueue($"{c.Kind}: chat answered something else: {body[..Math.Min(200, body.Length)]}");
                        continue;
                    }
                    if (status is < 400 or >= 500)
                    {
                        problems.Enqueue($"{c.Kind} {c.Method} {c.Path}: HTTP {status} {body[..Math.Min(200, body.Length)]}");
                        continue;
                    }
                    if (status == 400 && body.Length == 0 && c.Path.Contains("%00", StringComparison.Ordinal))
                    {
                        // Kestrel refuses a NUL in the request target while parsing the request line, before any
                        // application code runs: a bare 400 and a closed connection.
                        byKind.AddOrUpdate("http refused by the HTTP server (NUL in the path)", 1, (_, n) => n + 1);
                        continue;
                    }
                    if (!HasErrorShape(body))
                        problems.Enqueue($"{c.Kind} {c.Method} {c.Path}: HTTP {status} without the OpenAI error shape: {body[..Math.Min(200, body.Length)]}");
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException)
                {
                    problems.Enqueue($"{c.Kind} {c.Method} {c.Path} [{string.Join(";", c.Headers.Select(h => h.Key + "=" + h.Value))}] {c.Body.Length} bytes: {e.GetType().Name} {e.Message} / {e.InnerException?.Message}");
                }
            }
        }));
    }

    private static bool HasErrorShape(string body)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            return doc.RootElement.TryGetProperty("error", out var e)
                && e.TryGetProperty("code", out var code) && code.ValueKind == JsonValueKind.String
                && e.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String
                && e.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private async Task RunWebSocketAsync(IReadOnlyList<(string Kind, bool Text, byte[] Frame)> frames, ConcurrentQueue<string> problems, ConcurrentDictionary<string, int> byKind)
    {
        var uri = new UriBuilder(fx.Base) { Scheme = "ws", Path = "/ws/chat" }.Uri;
        ClientWebSocket? ws = null;
        var buffer = new byte[1 << 16];
        try
        {
            foreach (var (kind, text, frame) in frames)
            {
                byKind.AddOrUpdate("ws " + kind, 1, (_, n) => n + 1);
                if (ws is not { State: WebSocketState.Open })
                {
                    ws?.Dispose();
                    ws = new ClientWebSocket();
                    ws.Options.SetRequestHeader("Authorization", "Bearer " + ProcessSystemFixture.KeyBulk);
                    await ws.ConnectAsync(uri, CancellationToken.None);
                    await ws.ReceiveAsync(buffer, CancellationToken.None); // ready
                }
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
                try
                {
                    await ws.SendAsync(frame, text ? WebSocketMessageType.Text : WebSocketMessageType.Binary, true, cts.Token);
                    var r = await ws.ReceiveAsync(buffer, cts.Token);
                    if (r.MessageType == WebSocketMessageType.Close)
                    {
                        problems.Enqueue($"ws {kind}: the server closed the connection ({ws.CloseStatus})");
                        continue;
                    }
                    var reply = JsonDocument.Parse(buffer.AsMemory(0, r.Count)).RootElement;
                    if (reply.GetProperty("type").GetString() != "error" || string.IsNullOrEmpty(reply.GetProperty("code").GetString()))
                        problems.Enqueue($"ws {kind}: answered {Encoding.UTF8.GetString(buffer, 0, Math.Min(r.Count, 200))}");
                }
                catch (Exception e) when (e is WebSocketException or OperationCanceledException or JsonException)
                {
                    problems.Enqueue($"ws {kind}: {e.GetType().Name} {e.Message}");
                }
            }
        }
        finally
        {
            ws?.Dispose();
        }
    }

    private async Task RunControlAsync(IReadOnlyList<(string Kind, string Verb, byte[] Payload)> cases, ConcurrentQueue<string> problems, ConcurrentDictionary<string, int> byKind)
    {
        foreach (var (kind, verb, payload) in cases)
        {
            byKind.AddOrUpdate("nats " + kind, 1, (_, n) => n + 1);
            try
            {
                var reply = await fx.Operator.RequestAsync<byte[], byte[]>(Rollouts.Control(verb), payload, replyOpts: new NatsSubOpts { Timeout = TimeSpan.FromSeconds(10) });
                var answer = JsonDocument.Parse(reply.Data!).RootElement;
                if (answer.GetProperty("ok").GetBoolean() || string.IsNullOrEmpty(answer.GetProperty("code").GetString()))
                    problems.Enqueue($"{Rollouts.Control(verb)} {kind}: {Encoding.UTF8.GetString(reply.Data!)[..Math.Min(200, reply.Data!.Length)]}");
            }
            catch (Exception e) when (e is NatsException or JsonException or KeyNotFoundException)
            {
                problems.Enqueue($"{Rollouts.Control(verb)} {kind}: {e.GetType().Name} {e.Message}");
            }
        }
    }
}
