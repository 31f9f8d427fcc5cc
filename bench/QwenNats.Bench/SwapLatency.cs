using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.ObjectStore;
using QwenNats.Messaging;
using QwenNats.Messaging.Control;
using QwenNats.Messaging.Internal;

namespace QwenNats.Bench;

/// <summary>
/// <c>swap</c>: what a release hot-swap on the candidate colour costs the live colour on the same machine. Clients
/// send live requests through the ingress in a closed loop the whole time; the benchmark records live latency in a
/// quiet window, then deploys releases to the candidate colour (the first deploy fetches the model from the object
/// store, the next ones find it cached), and records live latency from each deploy command to the candidate pool
/// being ready, with the deploy-to-ready time of the same swap. Last, it asks for a deploy to the live colour,
/// which the promoter refuses while that colour serves (the live colour is never hot-swapped).
/// </summary>
internal static class SwapLatency
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    public static async Task<int> RunAsync(string[] args)
    {
        var o = Args.Parse(args);
        var live = o.GetValueOrDefault("live")?.Split(',', StringSplitOptions.RemoveEmptyEntries) ?? [];
        var candidate = o.GetValueOrDefault("candidate")?.Split(',', StringSplitOptions.RemoveEmptyEntries) ?? [];
        if (live.Length == 0 || live.Length != candidate.Length || live.Concat(candidate).Any(m => !File.Exists(m)))
        {
            Console.Error.WriteLine("usage: QwenNats.Bench swap --live <gguf>[,<gguf>...] --candidate <gguf>[,<gguf>...] [--swaps 3] [--quiet 10] [--settle 1] [--clients 2] [--threads 1] [--switch-mode auto]");
            Console.Error.WriteLine("       (--live and --candidate pair up: the i-th live model serves while the candidate colour swaps to the i-th candidate model)");
            return 2;
        }
        var s = new Settings(
            Swaps: int.Parse(o.GetValueOrDefault("swaps", "3"), C),
            Quiet: TimeSpan.FromSeconds(double.Parse(o.GetValueOrDefault("quiet", "10"), C)),
            Settle: TimeSpan.FromSeconds(double.Parse(o.GetValueOrDefault("settle", "1"), C)),
            Clients: int.Parse(o.GetValueOrDefault("clients", "2"), C),
            Threads: o.GetValueOrDefault("threads", "1"),
            SwitchMode: o.GetValueOrDefault("switch-mode", "auto"));

        var md = new StringBuilder();
        md.AppendLine(C, $"Blue (live) and green (candidate) workers on this machine, one each, 2 slots and {s.Threads} thread(s) each, green with `Worker:SwitchMode` {s.SwitchMode}; {s.Clients} clients in a closed loop of sentiment and 8-token chats (greedy) to the live colour through one ingress the whole time.");
        md.AppendLine(C, $"*quiet*: {s.Quiet.TotalSeconds:F0} s before the first deploy; *swap*: from the deploy command to the candidate pool ready (a request counts when it overlaps the window), cold = the first deploy (fetch from the object store + load + warm-up), warm = {s.Swaps} more deploys of a cached model (load + warm-up), {s.Settle.TotalSeconds:F0} s apart.");
        md.AppendLine().AppendLine("| live model | candidate loads | window | window s | live requests | live p50 ms | p95 ms | p99 ms | p95 vs quiet | errors | deploy to ready s |");
        md.AppendLine("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        var refusals = new List<string>();
        var total = Stopwatch.StartNew();
        for (var i = 0; i < live.Length; i++)
        {
            var (rows, refusal) = await MeasureAsync(live[i], candidate[i], s);
            foreach (var row in rows) md.AppendLine(row);
            refusals.Add(refusal);
        }
        md.AppendLine();
        md.AppendLine(C, $"Deploy to the live colour while it serves: {string.Join("; ", refusals.Distinct())}. All of the above took {total.Elapsed.TotalMinutes:F1} minutes.");
        Console.Write(md.ToString());
        return 0;
    }

    private sealed record Settings(int Swaps, TimeSpan Quiet, TimeSpan Settle, int Clients, string Threads, string SwitchMode);

    /// <summary>One live request: when it started and ended on the benchmark's clock (seconds), and what went wrong.</summary>
    private sealed record Call(double Start, double End, string? Error)
    {
        public double Ms => (End - Start) * 1000;
        public bool Overlaps(double from, double to) => Start < to && End > from;
    }

    private static async Task<(List<string> Rows, string Refusal)> MeasureAsync(string liveModel, string candidateModel, Settings s)
    {
        var dir = Path.Combine(Path.GetTempPath(), "qwen-swap-bench-" + Guid.NewGuid().ToString("N")[..8]);
        var port = Proc.FreePort();
        var url = $"nats://127.0.0.1:{port}";
        var httpPort = Proc.FreePort();
        await using var nats = Proc.Nats(port, Path.Combine(dir, "nats"));
        await Task.Delay(300);
        var common = new Dictionary<string, string> { ["Nats:Url"] = url, ["Logging:LogLevel:Default"] = "Warning", ["Topology:Storage"] = "file" };
        await using var promoter = Proc.Service("promoter", "promoter", "QwenNats.Promoter", new Dictionary<string, string>(common) { ["Promoter:Automatic"] = "false" });
        await using var ingress = Proc.Service("ingress", "ingress", "QwenNats.Ingress", new Dictionary<string, string>(common) { ["urls"] = $"http://127.0.0.1:{httpPort}" });
        await using var connection = new NatsConnection(new NatsOpts { Url = url });
        await connection.ConnectAsync();
        var ctl = new ControlClient(connection, TimeSpan.FromSeconds(60));
        await ctl.WaitForLeaderAsync(TimeSpan.FromSeconds(60));

        // Releases: the live one, and two of the candidate model (two profiles) to swap between.
        var store = await new NatsObjContext(new NatsJSContext(connection)).GetObjectStoreAsync(Releases.ModelsBucket);
        var liveSha = (await ModelStore.UploadAsync(store, liveModel, CancellationToken.None)).Sha256;
        var candidateSha = (await ModelStore.UploadAsync(store, candidateModel, CancellationToken.None)).Sha256;
        foreach (var (id, sha, profile) in new[] { ("live", liveSha, "v1"), ("a", candidateSha, "v1"), ("b", candidateSha, "v2") })
        {
            var r = await ctl.SendAsync(Rollouts.Verbs.Release, new ControlRequest { Release = id, ModelSha256 = sha, Profile = PromptProfile.Load(Path.Combine(Proc.Root, "deploy", "profiles", profile + ".json")) });
            if (!r.Ok) throw new InvalidOperationException($"release {id}: {r.Code}: {r.Error}");
        }
        // The live colour gets its release before it has workers (a deploy to it is refused once it serves).
        var first = await ctl.SendAsync(Rollouts.Verbs.Deploy, new ControlRequest { Colour = Colours.Blue, Release = "live" });
        if (!first.Ok) throw new InvalidOperationException($"deploy live: {first.Code}: {first.Error}");
        Dictionary<string, string> Worker(string colour) => new(common)
        {
            ["Worker:Colour"] = colour, ["Worker:WorkerId"] = colour + "-1", ["Worker:Threads"] = s.Threads, ["Worker:Slots"] = "2", ["Worker:ContextSize"] = "512",
            ["Worker:HeartbeatInterval"] = "00:00:00.100", ["Worker:ModelCacheDir"] = Path.Combine(dir, "cache-" + colour), ["Worker:SwitchMode"] = s.SwitchMode,
            ["Logging:LogLevel:LLama"] = "Error",
        };
        await using var blue = Proc.Service("worker-blue", "worker", "QwenNats.Worker", Worker(Colours.Blue));
        await using var green = Proc.Service("worker-green", "worker", "QwenNats.Worker", Worker(Colours.Green));
        await DeployTime.WaitAsync(ctl, Colours.Blue, p => p.Ready, blue);
        await DeployTime.WaitAsync(ctl, Colours.Green, p => p.Workers.Count == 1, green);

        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{httpPort}"), Timeout = TimeSpan.FromMinutes(3) };
        var ready = DateTime.UtcNow.AddMinutes(2);
        while (await SendAsync(http, 0, 0) is { } error)
        {
            if (DateTime.UtcNow > ready) throw new TimeoutException($"the live colour does not answer: {error}\n{blue.Tail}");
            await Task.Delay(250);
        }

        // Live clients in a closed loop for the whole measurement.
        var clock = Stopwatch.StartNew();
        var calls = new List<Call>();
        using var stop = new CancellationTokenSource();
        async Task ClientAsync(int id)
        {
            for (var n = 0; !stop.IsCancellationRequested; n++)
            {
                var start = clock.Elapsed.TotalSeconds;
                var error = await SendAsync(http, id, n);
                lock (calls) calls.Add(new Call(start, clock.Elapsed.TotalSeconds, error));
            }
        }
        var clients = Enumerable.Range(0, s.Clients).Select(ClientAsync).ToArray();
        await Task.Delay(s.Settle);
        var quietFrom = clock.Elapsed.TotalSeconds;
        await Task.Delay(s.Quiet);
        var quietTo = clock.Elapsed.TotalSeconds;
        var swaps = new List<(bool Cold, double From, double To)>();
        for (var i = 0; i <= s.Swaps; i++)
        {
            var from = clock.Elapsed.TotalSeconds;
            var deployed = await ctl.SendAsync(Rollouts.Verbs.Deploy, new ControlRequest { Colour = Colours.Green, Release = i % 2 == 0 ? "a" : "b" });
            if (!deployed.Ok) throw new InvalidOperationException($"deploy: {deployed.Code}: {deployed.Error}");
            await DeployTime.WaitAsync(ctl, Colours.Green, p => p.Ready && p.Assigned?.DeployId == deployed.Assignment!.DeployId, green);
            swaps.Add((i == 0, from, clock.Elapsed.TotalSeconds));
            await Task.Delay(s.Settle);
        }
        await stop.CancelAsync();
        await Task.WhenAll(clients);

        // The live colour is never the one that swaps: the promoter refuses a deploy to it while it serves.
        var toLive = await ctl.SendAsync(Rollouts.Verbs.Deploy, new ControlRequest { Colour = Colours.Blue, Release = "b" });
        var refusal = toLive.Ok ? "accepted (unexpected)" : $"refused, `{toLive.Code}`";
        try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }

        var quiet = calls.Where(c => c.Overlaps(quietFrom, quietTo) && !swaps.Any(w => c.Overlaps(w.From, w.To))).ToList();
        var quietP95 = Percentiles.Of(quiet.Where(c => c.Error is null).Select(c => c.Ms), .95);
        var liveName = Path.GetFileNameWithoutExtension(liveModel);
        var candidateName = $"{Path.GetFileNameWithoutExtension(candidateModel)} ({new FileInfo(candidateModel).Length / 1048576.0:F0} MiB)";
        string Row(string window, double seconds, List<Call> inWindow, string deployToReady)
        {
            var ms = inWindow.Where(c => c.Error is null).Select(c => c.Ms).ToList();
            var vs = window == "quiet" || quietP95 == 0 ? "" : $"{(Percentiles.Of(ms, .95) / quietP95 - 1) * 100:+0;-0} %";
            return $"| {liveName} | {candidateName} | {window} | {seconds:F1} | {ms.Count} | {Percentiles.Of(ms, .5):F0} | {Percentiles.Of(ms, .95):F0} | {Percentiles.Of(ms, .99):F0} | {vs} | {inWindow.Count(c => c.Error is not null)} | {deployToReady} |";
        }
        var cold = swaps.Where(w => w.Cold).ToList();
        var warm = swaps.Where(w => !w.Cold).ToList();
        var warmTimes = warm.Select(w => w.To - w.From).Order().ToList();
        var rows = new List<string>
        {
            Row("quiet", quietTo - quietFrom, quiet, ""),
            Row("swap, cold", cold.Sum(w => w.To - w.From), calls.Where(c => cold.Any(w => c.Overlaps(w.From, w.To))).ToList(), $"{cold.Sum(w => w.To - w.From):F2}"),
        };
        if (warm.Count > 0)
            rows.Add(Row($"swap, warm ×{warm.Count}", warm.Sum(w => w.To - w.From), calls.Where(c => warm.Any(w => c.Overlaps(w.From, w.To))).ToList(),
                $"{Percentiles.Of(warmTimes, .5):F2} ({warmTimes[0]:F2}–{warmTimes[^1]:F2})"));
        var errors = calls.Where(c => c.Error is not null).ToList();
        if (errors.Count > 0)
            Console.Error.WriteLine($"{liveName} / {candidateName}: {errors.Count} of {calls.Count} live requests failed, e.g. {errors[0].Error}");
        return (rows, refusal);
    }

    /// <summary>One live request, sentiment and an 8-token chat in turn; null when it succeeded and the live colour answered.</summary>
    private static async Task<string?> SendAsync(HttpClient http, int client, int n)
    {
        var (path, body) = n % 2 == 0
            ? ("/v1/sentiment", JsonSerializer.Serialize(new { input = "The soup was cold but the staff were kind" }))
            : ("/v1/chat/completions", JsonSerializer.Serialize(new { messages = new[] { new { role = "user", content = "Say something nice" } }, max_tokens = 8, temperature = 0, user = $"swap-{client}-{n}" }));
        try
        {
            using var content = new StringContent(body, Encoding.UTF8, "application/json");
            using var r = await http.PostAsync(path, content);
            if (!r.IsSuccessStatusCode) return $"{path}: HTTP {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}";
            var colour = r.Headers.TryGetValues("X-Qwen-Colour", out var v) ? v.FirstOrDefault() : null;
            return colour == Colours.Blue ? null : $"{path}: answered by colour '{colour}', not the live colour";
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return $"{path}: {e.GetType().Name}: {e.Message}";
        }
    }
}
