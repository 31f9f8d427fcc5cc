using System.Diagnostics;
using System.Globalization;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.ObjectStore;
using QwenNats.Messaging;
using QwenNats.Messaging.Control;

namespace QwenNats.Bench;

/// <summary>
/// Time from <c>qwen.ctl.deploy</c> to a pool that serves the release, against the old way of shipping (start a
/// worker process with the model on its command line), measured in the same run on the same machine:
/// cold (the worker fetches the model from the object store first), warm (the model is in its cache: load and
/// warm-up only), and the restart baseline (process start, load, warm-up).
/// </summary>
internal static class DeployTime
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    public static async Task<int> RunAsync(string[] args)
    {
        var models = Arg(args, "--model")?.Split(',', StringSplitOptions.RemoveEmptyEntries) ?? [];
        var repeat = int.Parse(Arg(args, "--repeat") ?? "3", C);
        var threads = Arg(args, "--threads") ?? "1";
        if (models.Length == 0 || models.Any(m => !File.Exists(m)))
        {
            Console.Error.WriteLine("usage: QwenNats.Bench deploy --model <gguf>[,<gguf>...] [--repeat 3] [--threads 1]");
            return 2;
        }
        Console.WriteLine($"Worker heartbeat every 100 ms (the resolution of 'ready'); {threads} thread(s); median of {repeat} runs (cold: one run, the first fetch).");
        Console.WriteLine();
        Console.WriteLine("| model | size MiB | upload s | restart-based: process start to ready s | deploy to ready, cold (fetch + load + warm-up) s | deploy to ready, warm (cached) s | warm / restart |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var model in models)
            Console.WriteLine(await MeasureAsync(model, repeat, threads));
        return 0;
    }

    private static async Task<string> MeasureAsync(string model, int repeat, string threads)
    {
        var dir = Path.Combine(Path.GetTempPath(), "qwen-deploy-bench-" + Guid.NewGuid().ToString("N")[..8]);
        var port = Proc.FreePort();
        var url = $"nats://127.0.0.1:{port}";
        await using var nats = Proc.Nats(port, Path.Combine(dir, "nats"));
        await Task.Delay(300);
        var common = new Dictionary<string, string> { ["Nats:Url"] = url, ["Logging:LogLevel:Default"] = "Warning", ["Topology:Storage"] = "file" };
        await using var promoter = Proc.Service("promoter", "promoter", "QwenNats.Promoter", new Dictionary<string, string>(common) { ["Promoter:Automatic"] = "false" });
        await using var ingress = Proc.Service("ingress", "ingress", "QwenNats.Ingress", new Dictionary<string, string>(common) { ["urls"] = $"http://127.0.0.1:{Proc.FreePort()}" });
        await using var connection = new NatsConnection(new NatsOpts { Url = url });
        await connection.ConnectAsync();
        var ctl = new ControlClient(connection, TimeSpan.FromSeconds(60));
        await ctl.WaitForLeaderAsync(TimeSpan.FromSeconds(60));

        var clock = Stopwatch.StartNew();
        var store = await new NatsObjContext(new NatsJSContext(connection)).GetObjectStoreAsync(Releases.ModelsBucket);
        var sha = (await ModelStore.UploadAsync(store, model, CancellationToken.None)).Sha256;
        var upload = clock.Elapsed.TotalSeconds;
        foreach (var (id, profile) in new[] { ("a", "v1"), ("b", "v2") })
        {
            var r = await ctl.SendAsync(Rollouts.Verbs.Release, new ControlRequest { Release = id, ModelSha256 = sha, Profile = PromptProfile.Load(Path.Combine(Proc.Root, "deploy", "profiles", profile + ".json")) });
            if (!r.Ok) throw new InvalidOperationException($"release {id}: {r.Code}: {r.Error}");
        }
        Dictionary<string, string> Worker(string colour, string id) => new(common)
        {
            ["Worker:Colour"] = colour, ["Worker:WorkerId"] = id, ["Worker:Threads"] = threads, ["Worker:Slots"] = "2", ["Worker:ContextSize"] = "512",
            ["Worker:HeartbeatInterval"] = "00:00:00.100", ["Worker:ModelCacheDir"] = Path.Combine(dir, "cache-" + id), ["Logging:LogLevel:LLama"] = "Error",
        };

        // The restart baseline: a worker process with the model on its command line, from start to serving.
        var restarts = new List<double>();
        for (var i = 0; i < repeat; i++)
        {
            var settings = Worker("blue", $"blue-{i}");
            settings["Worker:ModelPath"] = model;
            settings["Worker:ProfilePath"] = Path.Combine(Proc.Root, "deploy", "profiles", "v1.json");
            settings["Worker:FollowReleases"] = "false";
            var started = Stopwatch.StartNew();
            var worker = Proc.Service("worker", "worker", "QwenNats.Worker", settings);
            try
            {
                await WaitAsync(ctl, "blue", p => p.Ready, worker);
                restarts.Add(started.Elapsed.TotalSeconds);
            }
            finally
            {
                await worker.DisposeAsync();
            }
            await WaitAsync(ctl, "blue", p => p.Workers.Count == 0, null);
        }

        // Deploys to a worker that follows releases: the first fetches the model, the others find it cached.
        await using var green = Proc.Service("worker", "worker", "QwenNats.Worker", Worker("green", "green-1"));
        await WaitAsync(ctl, "green", p => p.Workers.Count == 1, green);
        var cold = await DeployAsync(ctl, "a", green);
        var warm = new List<double>();
        for (var i = 0; i < repeat; i++)
            warm.Add(await DeployAsync(ctl, i % 2 == 0 ? "b" : "a", green));

        try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        var restart = Median(restarts);
        return $"| {Path.GetFileNameWithoutExtension(model)} | {new FileInfo(model).Length / 1048576.0:F1} | {upload:F1} | {restart:F2} | {cold:F2} | {Median(warm):F2} | **{Median(warm) / restart:F2}** |";
    }

    private static async Task<double> DeployAsync(ControlClient ctl, string release, Proc worker)
    {
        var clock = Stopwatch.StartNew();
        var deployed = await ctl.SendAsync(Rollouts.Verbs.Deploy, new ControlRequest { Colour = "green", Release = release });
        if (!deployed.Ok) throw new InvalidOperationException($"deploy {release}: {deployed.Code}: {deployed.Error}");
        await WaitAsync(ctl, "green", p => p.Ready && p.Assigned?.DeployId == deployed.Assignment!.DeployId, worker);
        return clock.Elapsed.TotalSeconds;
    }

    internal static async Task WaitAsync(ControlClient ctl, string colour, Func<PoolStatus, bool> done, Proc? worker)
    {
        var deadline = DateTime.UtcNow.AddMinutes(10);
        while (true)
        {
            var pool = (await ctl.StatusAsync()).Pools!.Single(p => p.Colour == colour);
            if (done(pool)) return;
            if (pool.Failed || DateTime.UtcNow > deadline || worker is { Exited: true })
                throw new InvalidOperationException($"{colour}: {pool.Why}\n{worker?.Tail}");
            await Task.Delay(20);
        }
    }

    private static double Median(List<double> xs)
    {
        var s = xs.Order().ToArray();
        return s.Length == 0 ? double.NaN : s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }

    private static string? Arg(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}
