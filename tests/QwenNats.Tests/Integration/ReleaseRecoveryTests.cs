using System.Diagnostics;
using Microsoft.Extensions.Configuration;
using NATS.Client.JetStream;
using NATS.Client.ObjectStore;
using QwenNats.Messaging;
using QwenNats.Messaging.Control;
using QwenNats.Messaging.Topology;
using QwenNats.Promoter;
using Microsoft.Extensions.Hosting;
using QwenNats.Tests.Infrastructure;
using Xunit.Abstractions;

namespace QwenNats.Tests.Integration;

/// <summary>A worker process killed while it fetches a release comes back, starts the download again and ends ready.</summary>
public sealed class ReleaseRecoveryTests(ITestOutputHelper output)
{
    /// <summary>Big enough (about 60 MB) that fetching it from the object store takes a while; Qwen2-shaped, random weights.</summary>
    private static readonly QwenShape Sixty = new(2, 512, 8, 8, 1024, 50000, 4096, TiedOutput: true, "Qwen2-kill-test");

    [Fact]
    public async Task A_worker_killed_mid_download_comes_back_and_ends_ready()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"qwen-recovery-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            await using var nats = await NatsServer.StartAsync();
            using var promoter = await StartPromoterAsync(nats);
            // The worker binds to the ingress's work queues: create them as the ingress would.
            await TopologySetup.EnsureAsync(nats, Owners.Ingress, "memory");
            await using var op = await Ctl.ConnectAsync(nats);
            var ctl = new ControlClient(op, TimeSpan.FromSeconds(30));
            await ctl.WaitForLeaderAsync(TimeSpan.FromSeconds(15));

            var model = Path.Combine(dir, "big.gguf");
            QwenShapedModel.WriteWithByteVocabulary(model, Sixty);
            var store = await new NatsObjContext(new NatsJSContext(op)).GetObjectStoreAsync(Releases.ModelsBucket);
            var sha = (await ModelStore.UploadAsync(store, model, CancellationToken.None)).Sha256;
            var registered = await ctl.SendAsync(Rollouts.Verbs.Release, new ControlRequest { Release = "big", ModelSha256 = sha, Profile = PromptProfile.Load(Paths.Profile("v1")) });
            Assert.True(registered.Ok, registered.Error);

            var cache = Path.Combine(dir, "cache");
            var settings = new Dictionary<string, string?>
            {
                ["Nats:Url"] = nats.Url, ["Logging:LogLevel:Default"] = "Information", ["Logging:LogLevel:LLama"] = "Error",
                ["Worker:Colour"] = "green", ["Worker:WorkerId"] = "green-k", ["Worker:ModelCacheDir"] = cache,
                ["Worker:Slots"] = "1", ["Worker:ContextSize"] = "256", ["Worker:Threads"] = "1", ["Worker:HeartbeatInterval"] = "00:00:00.250",
                ["Topology:Storage"] = "memory",
            };
            // The first process's download stops after 1 MiB (fault injection), so it is surely killed mid-way, however
            // slowly this test gets to the kill.
            const long stallAt = 1 << 20;
            var stalling = new Dictionary<string, string?>(settings) { ["Faults:DownloadStallAfterBytes"] = $"{stallAt}" };
            await using (var first = ServiceProcess.Start("worker", "QwenNats.Worker", stalling))
            {
                await WaitAsync(async () => (await ctl.StatusAsync()).Pools!.Single(p => p.Colour == "green").Workers.Count == 1, "the worker to join, waiting for a release");
                Assert.True((await ctl.SendAsync(Rollouts.Verbs.Deploy, new ControlRequest { Colour = "green", Release = "big" })).Ok);
                // Kill -9 while the model is being written to the cache (a partial file holds what came so far).
                var partials = Stopwatch.StartNew();
                while (!Directory.Exists(cache) || Directory.GetFiles(cache, "*.partial").Sum(f => new FileInfo(f).Length) < stallAt)
                {
                    Assert.True(partials.Elapsed < TimeSpan.FromSeconds(60), "the download never started");
                    await Task.Delay(20);
                }
                await first.KillAsync();
            }
            var left = Directory.GetFiles(cache);
            output.WriteLine($"killed mid-download; cache holds: {string.Join(", ", left.Select(Path.GetFileName))}");
            Assert.Contains(left, f => f.EndsWith(".partial", StringComparison.Ordinal));
            Assert.DoesNotContain(left, f => f.EndsWith(".gguf", StringComparison.Ordinal));

            // Started again (without the fault), it deletes the interrupted download, fetches the model again and serves the release.
            await using var worker = ServiceProcess.Start("worker", "QwenNats.Worker", settings);
            var pool = await WaitForAsync(ctl, p => p.Ready, TimeSpan.FromSeconds(120));
            Assert.Equal(("big", sha), (pool.Workers.Single().Release, pool.Workers.Single().ModelSha256));
            Assert.Equal([$"{sha}.gguf"], Directory.GetFiles(cache).Select(Path.GetFileName));
            Assert.Equal(sha, await ModelStore.HashFileAsync(Path.Combine(cache, $"{sha}.gguf"), CancellationToken.None));
            Assert.Contains(worker.Output, l => l.Contains("Removed 1 interrupted model downloads", StringComparison.Ordinal));

            // A worker added to the colour later loads the colour's release by itself.
            await using var system = new QwenSystem(nats);
            await system.StartReleaseWorkerAsync("green", "green-added", Path.Combine(dir, "cache-added"), slots: 1);
            var grown = await WaitForAsync(ctl, p => p.Ready && p.Workers.Count == 2, TimeSpan.FromSeconds(120));
            Assert.All(grown.Workers, w => Assert.Equal("big", w.Release));
            await promoter.StopAsync();
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task A_promoter_that_has_just_started_does_not_take_the_serving_live_pool_for_empty_and_let_a_deploy_replace_it()
    {
        await using var nats = await NatsServer.StartAsync();
        var first = await StartPromoterAsync(nats);
        await TopologySetup.EnsureAsync(nats, Owners.Ingress, "memory");
        await using var system = new QwenSystem(nats);
        await using var op = await Ctl.ConnectAsync(nats);
        var ctl = new ControlClient(op, TimeSpan.FromSeconds(30));
        await ctl.WaitForLeaderAsync(TimeSpan.FromSeconds(15));
        var store = await new NatsObjContext(new NatsJSContext(op)).GetObjectStoreAsync(Releases.ModelsBucket);
        var tiny = (await ModelStore.UploadAsync(store, Paths.Model, CancellationToken.None)).Sha256;
        Assert.True((await ctl.SendAsync(Rollouts.Verbs.Release, new ControlRequest { Release = "r1", ModelSha256 = tiny, Profile = PromptProfile.Load(Paths.Profile("v2")) })).Ok);
        // Blue is live and serves; its worker beats every 2 s, within the promoter's 3 s stale window.
        await system.StartWorkerAsync("blue", "v1", extra: new() { ["Worker:WorkerId"] = "blue-1", ["Worker:HeartbeatInterval"] = "00:00:02" });
        await WaitAsync(async () => (await ctl.StatusAsync()).Pools!.Single(p => p.Colour == "blue").Ready, "blue to serve");
        var deploy = new ControlRequest { Colour = "blue", Release = "r1" };
        Assert.Equal("live_colour", (await ctl.SendAsync(Rollouts.Verbs.Deploy, deploy)).Code);

        // A new promoter leads, and is asked at once, before blue's next heartbeat: blue still serves, so still no.
        await first.StopAsync();
        first.Dispose();
        using var second = await StartPromoterAsync(nats);
        await ctl.WaitForLeaderAsync(TimeSpan.FromSeconds(15));
        var refused = await ctl.SendAsync(Rollouts.Verbs.Deploy, deploy);
        Assert.False(refused.Ok, "a deploy replaced the live release with no rollout");
        Assert.Equal("live_colour", refused.Code);
        await second.StopAsync();
    }

    [Fact]
    public async Task Promote_and_rollback_refuse_to_send_traffic_to_an_empty_pool()
    {
        await using var nats = await NatsServer.StartAsync();
        using var promoter = await StartPromoterAsync(nats);
        await TopologySetup.EnsureAsync(nats, Owners.Ingress, "memory");
        await using var system = new QwenSystem(nats);
        var blue = await system.StartWorkerAsync("blue", "v1", extra: new() { ["Worker:WorkerId"] = "blue-1" });
        var green = await system.StartWorkerAsync("green", "v2", extra: new() { ["Worker:WorkerId"] = "green-1" });
        await using var op = await Ctl.ConnectAsync(nats);
        var ctl = new ControlClient(op);
        await ctl.WaitForLeaderAsync(TimeSpan.FromSeconds(15));
        await Pools.WaitReadyAsync(op);
        Assert.True((await ctl.StartAsync("green")).Ok);

        // The candidate's only worker goes away: promoting would send sessions to nobody.
        await green.StopAsync();
        await WaitAsync(async () => (await ctl.StatusAsync()).Pools!.Single(p => p.Colour == "green").Workers.Count == 0, "green to leave");
        var promote = await ctl.PromoteAsync();
        Assert.False(promote.Ok);
        Assert.Equal("empty_pool", promote.Code);
        Assert.Contains("green", promote.Error);
        // A canary weight would send new sessions there just the same.
        var weight = await Ctl.SendAsync(op, "set-weight", "{\"weight\":50}");
        Assert.Equal("empty_pool", weight.Code);
        Assert.Contains("set-weight", weight.Error);
        // Rolling back to live is still possible while live has workers; once live has none, it is refused too.
        await blue.StopAsync();
        await WaitAsync(async () => (await ctl.StatusAsync()).Pools!.Single(p => p.Colour == "blue").Workers.Count == 0, "blue to leave");
        var rollback = await ctl.RollbackAsync();
        Assert.Equal("empty_pool", rollback.Code);
        var state = (await ctl.StatusAsync()).State!;
        Assert.Equal((RolloutPhase.Shadow, "green"), (state.Phase, state.Candidate));
        await promoter.StopAsync();
    }

    [Fact]
    public async Task An_answer_longer_than_the_drain_timeout_finishes_on_the_old_release_across_a_switch_beside_it()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"qwen-beside-{Guid.NewGuid():N}");
        try
        {
            await using var nats = await NatsServer.StartAsync();
            using var promoter = await StartPromoterAsync(nats);
            await using var system = new QwenSystem(nats);
            var (_, http) = await system.StartIngressAsync(new() { ["Ingress:RequestTimeout"] = "00:02:00" });
            http.Timeout = TimeSpan.FromMinutes(2);
            await using var op = await Ctl.ConnectAsync(nats);
            var ctl = new ControlClient(op, TimeSpan.FromSeconds(30));
            await ctl.WaitForLeaderAsync(TimeSpan.FromSeconds(15));
            // A drain timeout of one second: an answer of several seconds in flight at the switch outlasts it.
            await system.StartReleaseWorkerAsync("green", "green-b", Path.Combine(dir, "cache"),
                extra: new() { ["Worker:SwitchMode"] = "beside", ["Worker:DrainTimeout"] = "00:00:01" });
            await RegisterSlowAndNextAsync(op, ctl);
            async Task DeployAsync(string release)
            {
                var deployed = await ctl.SendAsync(Rollouts.Verbs.Deploy, new ControlRequest { Colour = "green", Release = release });
                Assert.True(deployed.Ok, deployed.Error);
                await WaitForAsync(ctl, p => p.Assigned?.DeployId == deployed.Assignment!.DeployId && p.Ready, TimeSpan.FromSeconds(60));
            }
            await DeployAsync("slow");

            using var request = Api.Post("/v1/chat/completions", Api.ChatBody("Once upon a time", maxTokens: 300, stream: true, temperature: 0));
            Api.ChooseColour(request, "green");
            var clock = System.Diagnostics.Stopwatch.StartNew();
            using var answer = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead); // its first token is out
            Assert.Equal("slow", answer.Headers.GetValues("X-Qwen-Release").Single());
            await DeployAsync("next");
            var events = await Api.ReadEventsAsync(answer, CancellationToken.None);
            output.WriteLine($"the answer took {clock.Elapsed.TotalSeconds:F1} s, {events.Count} events");
            Assert.Equal("[DONE]", events[^1]);
            Assert.DoesNotContain(events, e => e.Contains("\"error\"", StringComparison.Ordinal));
            Assert.Contains(events, e => e.Contains("\"finish_reason\":\"", StringComparison.Ordinal));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task A_request_that_reaches_a_worker_draining_to_switch_goes_to_another_worker_instead_of_waiting_through_the_drain()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"qwen-giveback-{Guid.NewGuid():N}");
        try
        {
            await using var nats = await NatsServer.StartAsync();
            using var promoter = await StartPromoterAsync(nats);
            await using var system = new QwenSystem(nats);
            // Every request through the work queue (no direct offers), where the draining worker's last pull waits too.
            var (ingress, http) = await system.StartIngressAsync(new() { ["Ingress:RequestTimeout"] = "00:02:00", ["Ingress:DirectDelivery"] = "false" });
            http.Timeout = TimeSpan.FromMinutes(2);
            await using var op = await Ctl.ConnectAsync(nats);
            var ctl = new ControlClient(op, TimeSpan.FromSeconds(30));
            await ctl.WaitForLeaderAsync(TimeSpan.FromSeconds(15));
            await RegisterSlowAndNextAsync(op, ctl);
            var deployed = await ctl.SendAsync(Rollouts.Verbs.Deploy, new ControlRequest { Colour = "green", Release = "slow" });
            Assert.True(deployed.Ok, deployed.Error);

            // A long answer on the worker that will drain to switch (the only green worker yet).
            await system.StartReleaseWorkerAsync("green", "green-drains", Path.Combine(dir, "a"), extra: new() { ["Worker:SwitchMode"] = "drain" });
            await WaitForAsync(ctl, p => p.Ready, TimeSpan.FromSeconds(60));
            using var longRequest = Api.Post("/v1/chat/completions", Api.ChatBody("Once upon a time", maxTokens: 300, stream: true, temperature: 0));
            Api.ChooseColour(longRequest, "green");
            using var longAnswer = await http.SendAsync(longRequest, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal("green-drains", longAnswer.Headers.GetValues("X-Qwen-Worker").Single());
            var finishing = Api.ReadEventsAsync(longAnswer, CancellationToken.None);
            // A second green worker, which will switch beside.
            await system.StartReleaseWorkerAsync("green", "green-beside", Path.Combine(dir, "b"), extra: new() { ["Worker:SwitchMode"] = "beside" });
            await WaitForAsync(ctl, p => p.Ready && p.Workers.Count == 2, TimeSpan.FromSeconds(60));

            // The switch: green-drains stops taking work and waits for its long answer; requests sent now go to green-beside.
            var next = await ctl.SendAsync(Rollouts.Verbs.Deploy, new ControlRequest { Colour = "green", Release = "next" });
            Assert.True(next.Ok, next.Error);
            for (var i = 0; i < 6 && !finishing.IsCompleted; i++)
            {
                using var quick = Api.Post("/v1/sentiment", "{\"input\":\"a fine day\"}");
                Api.ChooseColour(quick, "green");
                var clock = System.Diagnostics.Stopwatch.StartNew();
                using var answer = await http.SendAsync(quick);
                Assert.True(answer.IsSuccessStatusCode, await answer.Content.ReadAsStringAsync());
                var worker = answer.Headers.GetValues("X-Qwen-Worker").Single();
                output.WriteLine($"request {i}: {worker} in {clock.Elapsed.TotalMilliseconds:F0} ms");
                if (!finishing.IsCompleted)
                    Assert.Equal("green-beside", worker); // not held by the draining worker until its answer is done
                await Task.Delay(300);
            }
            Assert.Equal("[DONE]", (await finishing)[^1]);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task A_worker_that_drains_to_switch_serves_the_new_release_and_after_a_failed_load_its_previous_one_again()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"qwen-drain-{Guid.NewGuid():N}");
        try
        {
            await using var nats = await NatsServer.StartAsync();
            using var promoter = await StartPromoterAsync(nats);
            await using var system = new QwenSystem(nats);
            var (_, http) = await system.StartIngressAsync();
            await using var op = await Ctl.ConnectAsync(nats);
            var ctl = new ControlClient(op, TimeSpan.FromSeconds(30));
            await ctl.WaitForLeaderAsync(TimeSpan.FromSeconds(15));
            await system.StartReleaseWorkerAsync("green", "green-d", Path.Combine(dir, "cache"), extra: new() { ["Worker:SwitchMode"] = "drain" });

            var store = await new NatsObjContext(new NatsJSContext(op)).GetObjectStoreAsync(Releases.ModelsBucket);
            var tiny = (await ModelStore.UploadAsync(store, Paths.Model, CancellationToken.None)).Sha256;
            var other = (await ModelStore.UploadAsync(store, ModelFiles.Variant(dir, "drain"), CancellationToken.None)).Sha256;
            var corrupt = (await ModelStore.UploadAsync(store, ModelFiles.Corrupt(dir), CancellationToken.None)).Sha256;
            foreach (var (id, sha) in new[] { ("d1", tiny), ("d2", other), ("bad", corrupt) })
                Assert.True((await ctl.SendAsync(Rollouts.Verbs.Release, new ControlRequest { Release = id, ModelSha256 = sha, Profile = PromptProfile.Load(Paths.Profile("v2")) })).Ok);

            async Task<PoolStatus> DeployAsync(string release, Func<PoolStatus, bool> done)
            {
                var deployed = await ctl.SendAsync(Rollouts.Verbs.Deploy, new ControlRequest { Colour = "green", Release = release });
                Assert.True(deployed.Ok, deployed.Error);
                return await WaitForAsync(ctl, p => p.Assigned?.DeployId == deployed.Assignment!.DeployId && done(p), TimeSpan.FromSeconds(60));
            }
            async Task AnswersAsync()
            {
                using var request = Api.Post("/v1/sentiment", System.Text.Json.JsonSerializer.Serialize(new { input = "a fine day" }));
                Api.ChooseColour(request, "green");
                using var answer = await http.SendAsync(request);
                Assert.True(answer.IsSuccessStatusCode, await answer.Content.ReadAsStringAsync());
            }

            await DeployAsync("d1", p => p.Ready);
            await AnswersAsync();
            var switched = await DeployAsync("d2", p => p.Ready);
            Assert.Equal(("d2", other), (switched.Workers.Single().Release, switched.Workers.Single().ModelSha256));
            await AnswersAsync();
            // Drain-first freed d2 before trying the corrupt file; the load fails and d2 is loaded again.
            var failed = await DeployAsync("bad", p => p.Failed);
            var worker = failed.Workers.Single();
            Assert.Equal(("d2", true, "bad"), (worker.Release, worker.Serving, worker.FailedRelease));
            await AnswersAsync();
            await promoter.StopAsync();
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task A_worker_with_a_model_on_its_command_line_serves_its_colours_assigned_release_and_never_that_model()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"qwen-boot-{Guid.NewGuid():N}");
        try
        {
            await using var rig = await OperatedAsync();
            var (system, op, ctl) = (rig.System, rig.Operator, rig.Ctl);
            // Green is assigned "next" (profile v1) ...
            var deployed = await ctl.SendAsync(Rollouts.Verbs.Deploy, new ControlRequest { Colour = "green", Release = "next" });
            Assert.True(deployed.Ok, deployed.Error);
            await using var beats = await op.SubscribeCoreAsync<WorkerHeartbeat>(Subjects.WorkerHeartbeat);
            await op.PingAsync();

            // ... and a green worker (re)starts with the tiny model and profile v2 on its command line, as compose starts them.
            await system.StartWorkerAsync("green", "v2", extra: new() { ["Worker:WorkerId"] = "green-restarted", ["Worker:ModelCacheDir"] = Path.Combine(dir, "cache") });
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            var seen = new List<WorkerHeartbeat>();
            await foreach (var msg in beats.Msgs.ReadAllAsync(cts.Token))
            {
                if (msg.Data is not { WorkerId: "green-restarted" } beat) continue;
                seen.Add(beat);
                if (beat is { Serving: true, Release: "next" }) break;
            }
            // It served nothing until the release was loaded, then the release: never the command-line model and profile.
            Assert.DoesNotContain(seen, b => b.Serving && b.Release != "next");
            Assert.Equal("v1", seen[^1].ProfileVersion);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task A_deploy_to_the_live_colour_is_refused_while_its_workers_load_its_release_after_a_restart()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"qwen-liveload-{Guid.NewGuid():N}");
        try
        {
            await using var rig = await OperatedAsync();
            var (system, ctl) = (rig.System, rig.Ctl);
            var live = (await ctl.StatusAsync()).State!.Live;
            // The live colour's release, as it was before its workers restarted.
            Assert.True((await ctl.SendAsync(Rollouts.Verbs.Deploy, new ControlRequest { Colour = live, Release = "next" })).Ok);

            // Its worker comes back and loads it (its download stalls, so it stays loading).
            await system.StartReleaseWorkerAsync(live, $"{live}-restarted", Path.Combine(dir, "cache"), extra: new() { ["Faults:DownloadStallAfterBytes"] = "1000" });
            await WaitForAsync(ctl, live, p => p.Workers.Any(w => w.Loading == "next"), TimeSpan.FromSeconds(30));

            var refused = await ctl.SendAsync(Rollouts.Verbs.Deploy, new ControlRequest { Colour = live, Release = "slow" });
            Assert.Equal("live_colour", refused.Code);
            Assert.Contains("loading release next", refused.Error, StringComparison.Ordinal);
            Assert.Equal("next", (await ctl.StatusAsync()).Pools!.Single(p => p.Colour == live).Assigned?.Release);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>A nats-server, an operator-driven promoter, an ingress, the operator's connection, and the releases "slow" and
    /// "next" registered.</summary>
    private sealed class Operated : IAsyncDisposable
    {
        public required NatsServer Nats { get; init; }
        public required IHost Promoter { get; init; }
        public required QwenSystem System { get; init; }
        public required NATS.Client.Core.NatsConnection Operator { get; init; }
        public required ControlClient Ctl { get; init; }

        public async ValueTask DisposeAsync()
        {
            await Operator.DisposeAsync();
            await System.DisposeAsync();
            Promoter.Dispose();
            await Nats.DisposeAsync();
        }
    }

    private static async Task<Operated> OperatedAsync()
    {
        var nats = await NatsServer.StartAsync();
        var promoter = await StartPromoterAsync(nats);
        var system = new QwenSystem(nats);
        await system.StartIngressAsync();
        var op = await Ctl.ConnectAsync(nats);
        var rig = new Operated { Nats = nats, Promoter = promoter, System = system, Operator = op, Ctl = new ControlClient(op, TimeSpan.FromSeconds(30)) };
        await rig.Ctl.WaitForLeaderAsync(TimeSpan.FromSeconds(15));
        await RegisterSlowAndNextAsync(rig.Operator, rig.Ctl);
        return rig;
    }

    /// <summary>A promoter that only follows operators (no judge runs here).</summary>
    private static async Task<IHost> StartPromoterAsync(NatsServer nats)
    {
        var settings = RolloutFixture.PromoterSettings(nats.Url);
        settings["Promoter:Automatic"] = "false";
        var promoter = PromoterHost.Build([], c => c.AddInMemoryCollection(settings));
        await promoter.StartAsync();
        return promoter;
    }

    /// <summary>Two releases of the tiny model: "slow" (profile v2, every answer at sixty times the compute, so one is in
    /// flight for seconds) and "next" (profile v1).</summary>
    private static async Task RegisterSlowAndNextAsync(NATS.Client.Core.NatsConnection op, ControlClient ctl)
    {
        var store = await new NatsObjContext(new NatsJSContext(op)).GetObjectStoreAsync(Releases.ModelsBucket);
        var tiny = (await ModelStore.UploadAsync(store, Paths.Model, CancellationToken.None)).Sha256;
        var slow = new FaultOptions { Fraction = 1, Slowdown = 60 };
        Assert.True((await ctl.SendAsync(Rollouts.Verbs.Release, new ControlRequest { Release = "slow", ModelSha256 = tiny, Profile = PromptProfile.Load(Paths.Profile("v2")), Faults = slow })).Ok);
        Assert.True((await ctl.SendAsync(Rollouts.Verbs.Release, new ControlRequest { Release = "next", ModelSha256 = tiny, Profile = PromptProfile.Load(Paths.Profile("v1")) })).Ok);
    }

    private static Task<PoolStatus> WaitForAsync(ControlClient ctl, Func<PoolStatus, bool> done, TimeSpan timeout) =>
        WaitForAsync(ctl, "green", done, timeout);

    private static async Task<PoolStatus> WaitForAsync(ControlClient ctl, string colour, Func<PoolStatus, bool> done, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (true)
        {
            var pool = (await ctl.StatusAsync()).Pools!.Single(p => p.Colour == colour);
            if (done(pool)) return pool;
            Assert.True(DateTime.UtcNow < until, $"{colour}: {pool.Why}");
            await Task.Delay(200);
        }
    }

    private static async Task WaitAsync(Func<Task<bool>> done, string what)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (!await done())
        {
            Assert.False(cts.IsCancellationRequested, $"timed out waiting for {what}");
            await Task.Delay(200);
        }
    }
}
