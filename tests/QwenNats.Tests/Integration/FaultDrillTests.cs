using System.Net;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using QwenNats.Messaging;
using QwenNats.Messaging.Topology;
using QwenNats.Tests.Infrastructure;
using Xunit.Abstractions;

namespace QwenNats.Tests.Integration;

/// <summary>
/// Fault drills on real processes under load. Each states what it checked (sent, succeeded, failed with a
/// clear error, lost) in the test output and in artifacts/drills/; lost must be zero.
/// </summary>
public sealed class FaultDrillTests(ITestOutputHelper output)
{
    /// <summary>How soon the drills' ingresses take a silent worker for dead (6 heartbeats): noticing is what they test.</summary>
    private const string StaleAfter = "00:00:01.500";

    private static Dictionary<string, string?> WorkerSettings(NatsServer nats, string colour, string id, string profile, string ackWait = "00:00:03") => new()
    {
        ["Nats:Url"] = nats.Url,
        ["Logging:LogLevel:Default"] = "Information",
        ["Logging:LogLevel:LLama"] = "Error",
        ["Worker:Colour"] = colour,
        ["Worker:WorkerId"] = id,
        ["Worker:ModelPath"] = Paths.Model,
        ["Worker:ProfilePath"] = Paths.Profile(profile),
        ["Worker:Slots"] = "2",
        ["Worker:ContextSize"] = "512",
        ["Worker:Threads"] = "1",
        ["Worker:HeartbeatInterval"] = "00:00:00.250",
        ["Worker:FetchExpiry"] = "00:00:02",
        ["Topology:AckWait"] = ackWait,
        ["Topology:Storage"] = "file",
    };

    [Fact]
    public async Task Killing_a_worker_mid_generation_loses_no_request_and_the_pool_recovers()
    {
        await using var nats = await NatsServer.StartAsync();
        await using var system = new QwenSystem(nats);
        var (_, http) = await system.StartIngressAsync(new()
        {
            ["Ingress:RequestTimeout"] = "00:00:20", ["Ingress:WorkerStaleAfter"] = StaleAfter, ["Topology:AckWait"] = "00:00:03", ["Topology:Storage"] = "file",
        });
        http.Timeout = TimeSpan.FromSeconds(40);
        await using var a = ServiceProcess.Start("worker", "QwenNats.Worker", WorkerSettings(nats, "blue", "blue-a", "v1"));
        await using var b = ServiceProcess.Start("worker", "QwenNats.Worker", WorkerSettings(nats, "blue", "blue-b", "v1"));
        await QwenSystem.WaitForWorkersAsync(http, "blue", 2, TimeSpan.FromSeconds(60));

        var load = new DrillLoad(http, maxTokens: 200);
        using var stop = new CancellationTokenSource();
        var running = load.RunAsync(4, stop.Token);
        await Task.Delay(TimeSpan.FromSeconds(3));
        await a.KillAsync();
        var killedAt = DateTimeOffset.UtcNow;
        output.WriteLine($"killed blue-a (SIGKILL) at {killedAt:O}");
        await Task.Delay(TimeSpan.FromSeconds(6));
        await a.RestartAsync();
        var restartedAt = DateTimeOffset.UtcNow;
        using (var recovered = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
            while (!load.Results.Any(r => r.Worker == "blue-a" && r.At > restartedAt) && !recovered.IsCancellationRequested)
                await Task.Delay(200);
        await stop.CancelAsync();
        await running;

        var report = load.Report("worker-kill");
        report.Publish(output);
        var retried = b.Output.Count(l => l.Contains("attempt 2", StringComparison.Ordinal)) + a.Output.Count(l => l.Contains("attempt 2", StringComparison.Ordinal));
        output.WriteLine($"requests taken over by another worker (attempt 2): {retried}; ended with worker_lost: {report.Codes.GetValueOrDefault(ErrorCodes.WorkerLost)}");

        Assert.Equal(0, report.Lost);
        Assert.True(report.Succeeded > 20, report.ToString());
        Assert.True(retried + report.Codes.GetValueOrDefault(ErrorCodes.WorkerLost) >= 1, "the kill hit a request in flight, which was retried or ended with worker_lost");
        Assert.All(report.Codes.Keys, code => Assert.Contains(code, new[] { ErrorCodes.WorkerLost, ErrorCodes.NoWorkers, ErrorCodes.Overloaded }));
        Assert.Contains(load.Results, r => r.Outcome == "ok" && r.At > killedAt && r.At < restartedAt && r.Worker == "blue-b");
        Assert.Contains(load.Results, r => r.Outcome == "ok" && r.At > restartedAt && r.Worker == "blue-a");
        Assert.True(report.SlowestSeconds < 20, $"no request waited for the deadline: slowest {report.SlowestSeconds:F1} s");
    }

    [Fact]
    public async Task A_worker_whose_decode_loop_dies_stops_with_a_failure_and_its_requests_are_answered_by_another()
    {
        await using var nats = await NatsServer.StartAsync();
        await using var system = new QwenSystem(nats);
        const int deadlineSeconds = 20;
        var (_, http) = await system.StartIngressAsync(new()
        {
            ["Ingress:RequestTimeout"] = $"00:00:{deadlineSeconds}", ["Ingress:WorkerStaleAfter"] = StaleAfter, ["Topology:AckWait"] = "00:00:03", ["Topology:Storage"] = "file",
        });
        http.Timeout = TimeSpan.FromSeconds(40);
        var doomed = WorkerSettings(nats, "blue", "blue-dies", "v1");
        doomed["Faults:DecodeLoopCrashAfter"] = "6";
        await using var a = ServiceProcess.Start("worker", "QwenNats.Worker", doomed);
        await using var b = ServiceProcess.Start("worker", "QwenNats.Worker", WorkerSettings(nats, "blue", "blue-b", "v1"));
        await QwenSystem.WaitForWorkersAsync(http, "blue", 2, TimeSpan.FromSeconds(60));

        var load = new DrillLoad(http, maxTokens: 64);
        using var stop = new CancellationTokenSource();
        var running = load.RunAsync(3, stop.Token);
        // The loop dies on its own after six requests: the worker notices, stops, and exits with a failure.
        var exited = await a.WaitForExitAsync(TimeSpan.FromSeconds(60));
        var exitedAt = DateTimeOffset.UtcNow;
        using (var after = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
            while (!load.Results.Any(r => r.Outcome == "ok" && r.At > exitedAt.AddSeconds(1)) && !after.IsCancellationRequested)
                await Task.Delay(200);
        await stop.CancelAsync();
        await running;

        var report = load.Report("decode-loop-dies");
        report.Publish(output);
        var retried = b.Output.Count(l => l.Contains("attempt 2", StringComparison.Ordinal));
        output.WriteLine($"exited: {exited} (code {(exited ? a.ExitCode : -1)}); requests taken over by blue-b (attempt 2): {retried}; ended with worker_lost: {report.Codes.GetValueOrDefault(ErrorCodes.WorkerLost)}");

        Assert.True(exited, "the worker whose decode loop stopped kept running");
        Assert.Equal(1, a.ExitCode);
        Assert.Contains(a.Output, l => l.Contains("stopped for good", StringComparison.Ordinal));
        Assert.Equal(0, report.Lost);
        // A stream that had sent tokens when the loop died ends with worker_lost; nothing else fails.
        Assert.All(report.Codes.Keys, code => Assert.Equal(ErrorCodes.WorkerLost, code));
        Assert.True(report.SlowestSeconds < deadlineSeconds - 2, $"no request waited for its deadline: slowest {report.SlowestSeconds:F1} s");
        Assert.Contains(load.Results, r => r.Outcome == "ok" && r.At > exitedAt && r.Worker == "blue-b");
    }

    [Fact]
    public async Task A_hung_worker_gets_a_504_at_the_deadline_and_blocks_no_other_request()
    {
        await using var nats = await NatsServer.StartAsync();
        await using var system = new QwenSystem(nats);
        var (_, http) = await system.StartIngressAsync(new()
        {
            ["Ingress:RequestTimeout"] = "00:00:03", ["Ingress:WorkerStaleAfter"] = StaleAfter, ["Topology:AckWait"] = "00:00:03", ["Topology:Storage"] = "file",
        });
        var settings = WorkerSettings(nats, "blue", "blue-hangs", "v1");
        settings["Faults:HangRate"] = "0.3";
        settings["Worker:Slots"] = "3";
        await using var worker = ServiceProcess.Start("worker", "QwenNats.Worker", settings);
        await QwenSystem.WaitForWorkersAsync(http, "blue", 1, TimeSpan.FromSeconds(60));

        var load = new DrillLoad(http, maxTokens: 16);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        await load.RunAsync(3, stop.Token);
        var report = load.Report("hung-worker");
        report.Publish(output);

        Assert.Equal(0, report.Lost);
        var timedOut = report.Codes.GetValueOrDefault(ErrorCodes.DeadlineExceeded);
        Assert.True(timedOut >= 1, report.ToString());
        Assert.True(report.Succeeded >= 5, $"other requests kept being served: {report}");
        Assert.Equal(report.FailedClearly, timedOut);
        // Every hung request ended at its deadline (3 s), not later; the others were quick.
        Assert.All(load.Results.Where(r => r.Code == ErrorCodes.DeadlineExceeded), r => Assert.InRange(r.Seconds, 2.5, 6));
        Assert.Contains(worker.Output, l => l.Contains("hanging on this request", StringComparison.Ordinal));
        // The hung jobs were cancelled and their slots freed: the worker still answers after the drill.
        using var after = await http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"still there?\"}"));
        Assert.True(after.StatusCode is HttpStatusCode.OK or HttpStatusCode.GatewayTimeout);
    }

    [Fact]
    public async Task Restarting_nats_server_under_load_keeps_state_pins_and_samples_and_every_service_reconnects()
    {
        await using var nats = await NatsServer.StartAsync();
        await using var system = new QwenSystem(nats);
        var ingressSettings = new Dictionary<string, string?>
        {
            ["Ingress:RequestTimeout"] = "00:00:15", ["Ingress:WorkerStaleAfter"] = StaleAfter, ["Topology:Storage"] = "file", ["Topology:AckWait"] = "00:00:03",
        };
        var (_, http) = await system.StartIngressAsync(ingressSettings);
        http.Timeout = TimeSpan.FromSeconds(30);
        await using var blue = ServiceProcess.Start("worker", "QwenNats.Worker", WorkerSettings(nats, "blue", "blue-1", "v1"));
        await using var green = ServiceProcess.Start("worker", "QwenNats.Worker", WorkerSettings(nats, "green", "green-1", "v2"));
        var promoterSettings = RolloutFixture.PromoterSettings(nats.Url);
        promoterSettings["Topology:Storage"] = "file";
        promoterSettings["Promoter:Automatic"] = "false";
        await using var promoter = ServiceProcess.Start("promoter", "QwenNats.Promoter", promoterSettings);
        await QwenSystem.WaitForWorkersAsync(http, "blue", 1, TimeSpan.FromSeconds(60));
        await QwenSystem.WaitForWorkersAsync(http, "green", 1, TimeSpan.FromSeconds(60));
        await using var op = await Ctl.ConnectAsync(nats);
        await Ctl.WaitForLeaderAsync(op, TimeSpan.FromSeconds(30));

        // A rollout in Shadow (mirrored samples pile up in QWEN_SAMPLES: no judge runs), and a pinned session.
        var started = await Ctl.SendAsync(op, "start", "{\"candidate\":\"green\",\"reason\":\"nats drill\"}");
        Assert.True(started.Ok, started.Error);
        using (var r = await http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"pin me\"}", session: "drill-pinned")))
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var load = new DrillLoad(http, maxTokens: 32);
        using var stop = new CancellationTokenSource();
        var running = load.RunAsync(3, stop.Token);
        await Task.Delay(TimeSpan.FromSeconds(3));
        var before = await SnapshotAsync(op);
        Assert.True(before.Samples > 0, "mirrored samples were recorded before the restart");

        await nats.KillAsync();
        var killedAt = DateTimeOffset.UtcNow;
        await Task.Delay(TimeSpan.FromSeconds(4));
        await nats.RestartAsync();
        var restartedAt = DateTimeOffset.UtcNow;
        using (var back = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
            while (!load.Results.Any(r => r.Outcome == "ok" && r.At > restartedAt) && !back.IsCancellationRequested)
                await Task.Delay(200);
        await Task.Delay(TimeSpan.FromSeconds(3));
        await stop.CancelAsync();
        await running;

        var report = load.Report("nats-restart");
        report.Publish(output);
        await using var op2 = await Ctl.ConnectAsync(nats);
        await Ctl.WaitForLeaderAsync(op2, TimeSpan.FromSeconds(30));
        var after = await SnapshotAsync(op2);
        output.WriteLine($"before: {before}; after: {after}");

        Assert.Equal(0, report.Lost);
        Assert.Contains(load.Results, r => r.Outcome == "ok" && r.At > restartedAt);
        Assert.Contains(load.Results, r => r.Outcome == "ok" && r.At < killedAt);
        Assert.All(report.Codes.Keys, code => Assert.Contains(code, new[] { ErrorCodes.BusUnavailable, ErrorCodes.NoWorkers, ErrorCodes.WorkerLost, ErrorCodes.Overloaded }));
        // During the gap clients get a prompt 503, not a wait for the deadline (15 s here).
        Assert.True(report.SlowestSeconds < 10, $"slowest request {report.SlowestSeconds:F1} s");
        Assert.Equal((RolloutPhase.Shadow, started.State!.RolloutId), (after.State.Phase, after.State.RolloutId));
        Assert.True(after.State.Version >= before.State.Version);
        Assert.Equal("blue", after.Pin?.Colour);
        Assert.True(after.Samples >= before.Samples, $"samples survived: {before.Samples} before, {after.Samples} after");
        Assert.False(blue.HasExited || green.HasExited || promoter.HasExited, "no service process died");
        // The ingress and the workers are back: the pinned session is still served by blue.
        using var pinned = await http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"still pinned?\"}", session: "drill-pinned"));
        Assert.Equal(HttpStatusCode.OK, pinned.StatusCode);
        Assert.Equal("blue", pinned.Headers.GetValues("X-Qwen-Colour").Single());
    }

    [Fact]
    public async Task A_judge_killed_mid_rollout_resumes_without_losing_or_double_counting_a_sample()
    {
        await using var nats = await NatsServer.StartAsync();
        await using var op = await Ctl.ConnectAsync(nats);
        await using var workers = await Pools.StartWorkersAsync(nats, "file");
        var promoterSettings = RolloutFixture.PromoterSettings(nats.Url);
        promoterSettings["Promoter:Automatic"] = "false";
        await using var promoter = ServiceProcess.Start("promoter", "QwenNats.Promoter", promoterSettings);
        await Ctl.WaitForLeaderAsync(op, TimeSpan.FromSeconds(30));
        await Pools.WaitReadyAsync(op);
        var judge = ServiceProcess.Start("judge", "QwenNats.Judge", new Dictionary<string, string?>
        {
            ["Nats:Url"] = nats.Url, ["Judge:PolicyPath"] = Path.Combine(Paths.RepoRoot, "deploy", "rollout-policy.json"),
            ["Judge:EvaluateInterval"] = "00:00:00.250", ["Topology:Storage"] = "file",
        });
        await using var _ = judge;
        var rolloutId = (await Ctl.SendAsync(op, "start", "{\"candidate\":\"green\",\"reason\":\"judge drill\"}")).State!.RolloutId!;
        var js = new NatsJSContext(op);
        // The test publishes samples itself, as an ingress would: it applies the ingress's part of the topology.
        await TopologySetup.EnsureAsync(nats, Owners.Ingress, "file");
        using (var ready = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
            while (true)
            {
                try
                {
                    await js.GetStreamAsync(Judging.SamplesStream, cancellationToken: ready.Token);
                    break;
                }
                catch (NatsJSApiException)
                {
                    await Task.Delay(100, ready.Token);
                }
            }
        var sent = 0;
        async Task PublishAsync(int count)
        {
            for (var i = 0; i < count; i++, sent++)
            {
                var sample = Samples.Agreeing($"drill-{sent}", rolloutId);
                (await js.PublishAsync(Judging.Samples(rolloutId), sample)).EnsureSuccess();
            }
        }
        async Task<int> CountedAsync(int atLeast)
        {
            var until = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (true)
            {
                var v = (await Ctl.SendAsync(op, "status")).Verdict;
                if (v is not null && v.RolloutId == rolloutId && v.Samples >= atLeast) return v.Samples;
                Assert.True(DateTime.UtcNow < until,
                    $"no verdict with {atLeast} samples of {rolloutId}; latest: {v?.RolloutId} {v?.Samples}; judge output:\n{string.Join('\n', judge.Output.TakeLast(40))}");
                await Task.Delay(100);
            }
        }

        await PublishAsync(10);
        Assert.Equal(10, await CountedAsync(10));
        await PublishAsync(5);          // in flight as the judge dies
        await judge.KillAsync();
        await PublishAsync(10);         // published while no judge runs
        await judge.RestartAsync();
        await PublishAsync(5);
        var counted = await CountedAsync(30);
        await Task.Delay(1500);         // nothing is counted twice after the redeliveries settle
        var final = (await Ctl.SendAsync(op, "status")).Verdict!;
        var report = new DrillReport("judge-kill", sent, final.Samples, 0, sent - final.Samples, new Dictionary<string, int>(), 0, []);
        report.Publish(output);
        Assert.Equal(30, counted);
        Assert.Equal(30, final.Samples);
    }

    private sealed record Snapshot(RolloutState State, SessionPin? Pin, long Samples)
    {
        public override string ToString() => $"{State.Phase} {State.RolloutId} v{State.Version}, pin {Pin?.Colour ?? "none"}, {Samples} samples";
    }

    private static async Task<Snapshot> SnapshotAsync(NATS.Client.Core.NatsConnection nats)
    {
        var status = await Ctl.SendAsync(nats, "status");
        var js = new NatsJSContext(nats);
        var kv = new NatsKVContext(js);
        var sessions = await kv.GetStoreAsync(Rollouts.SessionsBucket);
        var pin = await sessions.TryGetEntryAsync<SessionPin>(SessionKeys.For("drill-pinned"));
        var samples = await js.GetStreamAsync(Judging.SamplesStream);
        return new Snapshot(status.State!, pin.Success ? pin.Value.Value : null, samples.Info.State.Messages);
    }
}
