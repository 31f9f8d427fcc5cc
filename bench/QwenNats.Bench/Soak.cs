using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using NATS.Client.Core;
using QwenNats.Messaging;
using QwenNats.Messaging.Internal;
using QwenNats.ServiceDefaults;

namespace QwenNats.Bench;

/// <summary>
/// Soak: mixed client load (chat, streamed chat, sentiment, WebSocket conversations) while an operator
/// loop starts rollouts and then either promotes or rolls back, for a set time. Reports requests,
/// failures (anything but a complete answer; must be zero), latency per minute and the resident memory
/// of every process of the local run at the start (after warm-up) and at the end.
/// </summary>
internal static class Soak
{
    /// <summary>Lost: no answer at all before the client gave up (its timeout), as opposed to a clear error.</summary>
    private sealed record Outcome(DateTimeOffset At, string Kind, bool Ok, double Ms, string? Detail, bool Lost = false);

    public static async Task<int> RunAsync(string[] args)
    {
        var o = Args.Parse(args);
        var ingress = new Uri(o.GetValueOrDefault("ingress", "http://127.0.0.1:8080"));
        var natsUrl = o.GetValueOrDefault("nats", "nats://127.0.0.1:4222");
        var duration = TimeSpan.FromSeconds(double.Parse(o.GetValueOrDefault("seconds", "600"), CultureInfo.InvariantCulture));
        var warmup = TimeSpan.FromSeconds(double.Parse(o.GetValueOrDefault("warmup", "30"), CultureInfo.InvariantCulture));
        var clients = int.Parse(o.GetValueOrDefault("clients", "4"), CultureInfo.InvariantCulture);
        var cycle = TimeSpan.FromSeconds(double.Parse(o.GetValueOrDefault("cycle", "20"), CultureInfo.InvariantCulture));
        var maxGrowth = double.Parse(o.GetValueOrDefault("max-growth", "10"), CultureInfo.InvariantCulture);
        var pidDir = o.GetValueOrDefault("pids", ".run/pids");

        await using var nats = Nats.Connect(natsUrl, "qwen-bench");
        await nats.ConnectAsync();
        using var http = new HttpClient(new SocketsHttpHandler { UseCookies = false, MaxConnectionsPerServer = 32 }) { BaseAddress = ingress, Timeout = TimeSpan.FromSeconds(90) };
        var results = new ConcurrentQueue<Outcome>();
        var commands = new ConcurrentQueue<string>();
        var started = DateTimeOffset.UtcNow;
        var initialLive = (await SwitchPropagation.CtlAsync(nats, "status", "")).State!.Live;
        using var stop = new CancellationTokenSource(duration);

        var load = Enumerable.Range(0, clients).Select(i => ClientAsync(i, http, ingress, results, stop.Token)).ToList();
        var operatorLoop = OperatorAsync(nats, cycle, commands, stop.Token);

        // Resident memory every minute, so a trend (a leak grows every minute) is told apart from warm-up.
        var series = new List<(double Minute, Dictionary<string, long> Rss)>();
        var sampling = Task.Run(async () =>
        {
            var every = duration >= TimeSpan.FromMinutes(3) ? TimeSpan.FromMinutes(1) : TimeSpan.FromSeconds(10);
            while (!stop.IsCancellationRequested)
            {
                lock (series) series.Add(((DateTimeOffset.UtcNow - started).TotalMinutes, Memory(pidDir)));
                try { await Task.Delay(every, stop.Token); } catch (OperationCanceledException) { }
            }
        });
        await Task.Delay(warmup < duration ? warmup : duration / 4);
        var memoryStart = Memory(pidDir);
        await Task.WhenAll(load);
        await operatorLoop;
        await sampling;
        var memoryEnd = Memory(pidDir);
        series.Add(((DateTimeOffset.UtcNow - started).TotalMinutes, memoryEnd));
        await Restore(nats, initialLive);

        var all = results.ToList();
        var failures = all.Where(r => !r.Ok).ToList();
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Soak of {duration.TotalMinutes:F1} min against {ingress} ({clients} clients: chat, streamed chat, sentiment, WebSocket turns; an operator cycle every {cycle.TotalSeconds:F0} s), started {started:yyyy-MM-dd HH:mm} UTC.");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"**{all.Count} requests, {failures.Count} failed, {failures.Count(f => f.Lost)} lost** ({string.Join(", ", all.GroupBy(r => r.Kind).OrderBy(g => g.Key).Select(g => $"{g.Key} {g.Count()}"))}).");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Operator commands: {commands.Count} ({string.Join(", ", commands.GroupBy(c => c).OrderBy(g => g.Key).Select(g => $"{g.Key} {g.Count()}"))}).");
        sb.AppendLine();
        sb.AppendLine("| minute | requests | failed | p50 ms | p95 ms | max ms |");
        sb.AppendLine("| ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var minute in all.GroupBy(r => (int)((r.At - started).TotalMinutes)).OrderBy(g => g.Key))
        {
            var ms = minute.Where(r => r.Ok).Select(r => r.Ms).Order().ToArray();
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {minute.Key + 1} | {minute.Count()} | {minute.Count(r => !r.Ok)} | {P(ms, 0.5):F0} | {P(ms, 0.95):F0} | {(ms.Length == 0 ? 0 : ms[^1]):F0} |");
        }
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"| process | resident after {warmup.TotalSeconds:F0} s warm-up | at the end | growth |");
        sb.AppendLine("| --- | ---: | ---: | ---: |");
        var worstGrowth = 0.0;
        foreach (var (name, start) in memoryStart.OrderBy(m => m.Key, StringComparer.Ordinal))
        {
            if (!memoryEnd.TryGetValue(name, out var end)) { sb.AppendLine(CultureInfo.InvariantCulture, $"| {name} | {start / 1048576.0:F0} MiB | exited | – |"); worstGrowth = double.PositiveInfinity; continue; }
            var growth = start == 0 ? 0 : (end - start) * 100.0 / start;
            worstGrowth = Math.Max(worstGrowth, growth);
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {name} | {start / 1048576.0:F0} MiB | {end / 1048576.0:F0} MiB | {growth:+0.0;-0.0} % |");
        }
        sb.AppendLine();
        sb.AppendLine("Resident MiB over time:");
        sb.AppendLine();
        var names = memoryStart.Keys.OrderBy(k => k, StringComparer.Ordinal).ToList();
        sb.AppendLine("| minute | " + string.Join(" | ", names) + " |");
        sb.AppendLine("| ---: |" + string.Concat(names.Select(_ => " ---: |")));
        foreach (var (minute, rss) in series)
        {
            var cells = string.Join(" | ", names.Select(n => rss.TryGetValue(n, out var b) ? (b / 1048576.0).ToString("F0", CultureInfo.InvariantCulture) : "–"));
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture, $"| {minute:F1} | {cells} |"));
        }
        foreach (var f in failures.Take(10))
            sb.AppendLine(CultureInfo.InvariantCulture, $"\nfailure at {f.At:HH:mm:ss} ({f.Kind}): {f.Detail}");
        Console.WriteLine(sb.ToString());
        if (failures.Count > 0)
        {
            Console.Error.WriteLine($"soak: {failures.Count} failed requests");
            return 1;
        }
        if (worstGrowth > maxGrowth)
        {
            Console.Error.WriteLine($"soak: resident memory grew {worstGrowth:F1} % (limit {maxGrowth} %)");
            return 1;
        }
        return 0;
    }

    private static double P(double[] sorted, double q) => Percentiles.NearestRank(sorted, q);

    private static Dictionary<string, long> Memory(string pidDir)
    {
        var m = new Dictionary<string, long>(StringComparer.Ordinal);
        if (!Directory.Exists(pidDir)) return m;
        foreach (var file in Directory.GetFiles(pidDir, "*.pid"))
        {
            if (!int.TryParse(File.ReadAllText(file).Trim(), out var pid)) continue;
            var rss = ProcessMemory.Resident(pid);
            if (rss > 0) m[Path.GetFileNameWithoutExtension(file)] = rss;
        }
        return m;
    }

    private static async Task ClientAsync(int client, HttpClient http, Uri ingress, ConcurrentQueue<Outcome> results, CancellationToken stop)
    {
        var n = 0;
        var session = $"soak-{client}-{Guid.NewGuid():N}";
        while (!stop.IsCancellationRequested)
        {
            n++;
            if (n % 50 == 0) session = $"soak-{client}-{Guid.NewGuid():N}";   // new sessions keep entering the canary split
            var kind = (n + client) % 4;
            var clock = Stopwatch.StartNew();
            try
            {
                switch (kind)
                {
                    case 0:
                        await JsonAsync(http, "/v1/sentiment", "{\"input\":\"The soak test keeps going and I am happy about it\"}", session, "label");
                        break;
                    case 1:
                        await JsonAsync(http, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"Once upon a time\"}],\"max_tokens\":32}", session, "choices");
                        break;
                    case 2:
                        await StreamAsync(http, session);
                        break;
                    default:
                        await WebSocketAsync(ingress, session);
                        break;
                }
                results.Enqueue(new Outcome(DateTimeOffset.UtcNow, Kinds[kind], true, clock.Elapsed.TotalMilliseconds, null));
            }
            catch (Exception e) when (e is not OperationCanceledException || !stop.IsCancellationRequested)
            {
                results.Enqueue(new Outcome(DateTimeOffset.UtcNow, Kinds[kind], false, clock.Elapsed.TotalMilliseconds, $"{e.GetType().Name}: {e.Message}",
                    Lost: e is OperationCanceledException or TimeoutException));
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    private static readonly string[] Kinds = ["sentiment", "chat", "chat-stream", "websocket"];

    private static async Task JsonAsync(HttpClient http, string path, string body, string session, string field)
    {
        using var req = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        req.Headers.Add("X-Session-Id", session);
        using var r = await http.SendAsync(req);
        var text = await r.Content.ReadAsStringAsync();
        if (!r.IsSuccessStatusCode) throw new InvalidOperationException($"HTTP {(int)r.StatusCode}: {text[..Math.Min(200, text.Length)]}");
        if (!JsonDocument.Parse(text).RootElement.TryGetProperty(field, out _)) throw new InvalidOperationException("no " + field);
    }

    private static async Task StreamAsync(HttpClient http, string session)
    {
        using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent("{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story\"}],\"max_tokens\":32,\"stream\":true}", Encoding.UTF8, "application/json"),
        };
        req.Headers.Add("X-Session-Id", session);
        using var r = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead);
        if (!r.IsSuccessStatusCode) throw new InvalidOperationException($"HTTP {(int)r.StatusCode}: {await r.Content.ReadAsStringAsync()}");
        using var reader = new StreamReader(await r.Content.ReadAsStreamAsync());
        string? last = null;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            if (line.Contains("\"error\"", StringComparison.Ordinal)) throw new InvalidOperationException(line);
            last = line;
        }
        if (last != "data: [DONE]") throw new InvalidOperationException("stream ended without [DONE]");
    }

    private static async Task WebSocketAsync(Uri ingress, string session)
    {
        using var ws = new ClientWebSocket();
        var uri = new UriBuilder(ingress) { Scheme = "ws", Path = "/ws/chat", Query = "session=" + Uri.EscapeDataString(session) }.Uri;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        await ws.ConnectAsync(uri, cts.Token);
        var buffer = new byte[1 << 16];
        await ws.ReceiveAsync(buffer, cts.Token);
        for (var turn = 0; turn < 2; turn++)
        {
            await ws.SendAsync(Encoding.UTF8.GetBytes("{\"content\":\"And then?\",\"max_tokens\":16}"), WebSocketMessageType.Text, true, cts.Token);
            while (true)
            {
                var r = await ws.ReceiveAsync(buffer, cts.Token);
                var frame = JsonDocument.Parse(buffer.AsMemory(0, r.Count)).RootElement;
                var type = frame.GetProperty("type").GetString();
                if (type == "error") throw new InvalidOperationException("error frame: " + frame.GetProperty("code").GetString());
                if (type == "done") break;
            }
        }
        await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", cts.Token);
    }

    /// <summary>Every cycle: start a rollout of the other colour, open the canary, then promote it all the way
    /// (odd cycles) or roll it back (even cycles). Refusals (the judge's automation got there first) are counted.</summary>
    private static async Task OperatorAsync(NatsConnection nats, TimeSpan cycle, ConcurrentQueue<string> commands, CancellationToken stop)
    {
        var n = 0;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                n++;
                var state = (await Ctl(nats, "status", "", commands, count: false)).State!;
                if (state.Phase is RolloutPhase.Stable)
                {
                    var candidate = state.Live == Colours.Blue ? Colours.Green : Colours.Blue;
                    await Ctl(nats, "start", $"{{\"candidate\":\"{candidate}\",\"reason\":\"soak cycle {n}\",\"actor\":\"soak\"}}", commands);
                    await Task.Delay(cycle / 4, stop);
                    await Ctl(nats, "set-weight", "{\"weight\":50,\"reason\":\"soak\",\"actor\":\"soak\"}", commands);
                    await Task.Delay(cycle / 4, stop);
                    if (n % 2 == 1)
                    {
                        await Ctl(nats, "promote", "{\"full\":true,\"reason\":\"soak\",\"actor\":\"soak\"}", commands);
                        await Task.Delay(cycle / 4, stop);
                        await Ctl(nats, "promote", "{\"reason\":\"soak: close the bake window\",\"actor\":\"soak\"}", commands);
                    }
                    else
                        await Ctl(nats, "rollback", "{\"reason\":\"soak\",\"actor\":\"soak\"}", commands);
                }
                await Task.Delay(cycle / 4, stop);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static async Task<ControlReply> Ctl(NatsConnection nats, string verb, string json, ConcurrentQueue<string> commands, bool count = true)
    {
        var reply = await SwitchPropagation.CtlAsync(nats, verb, json);
        if (count) commands.Enqueue(reply.Ok ? verb : $"{verb} refused");
        return reply;
    }

    /// <summary>Leaves the system Stable, with the live colour it had when the soak began.</summary>
    private static async Task Restore(NatsConnection nats, string live)
    {
        for (var attempt = 0; attempt < 20; attempt++)
        {
            var s = (await SwitchPropagation.CtlAsync(nats, "status", "")).State!;
            if (s.Phase is RolloutPhase.Stable && s.Live == live) return;
            if (s.Phase is RolloutPhase.Shadow or RolloutPhase.Canary or RolloutPhase.Paused)
                await SwitchPropagation.CtlAsync(nats, "abort", "{\"reason\":\"soak finished\"}");
            else if (s.Phase is RolloutPhase.Promoted)
                await SwitchPropagation.CtlAsync(nats, "promote", "{\"reason\":\"soak finished\"}");
            else if (s.Phase is RolloutPhase.Stable)
            {
                await SwitchPropagation.CtlAsync(nats, "start", $"{{\"candidate\":\"{live}\",\"reason\":\"soak finished: back to {live}\"}}");
                await SwitchPropagation.CtlAsync(nats, "promote", "{\"full\":true,\"reason\":\"soak finished\"}");
            }
            await Task.Delay(500);
        }
    }
}
