using System.Net;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using QwenNats.Messaging;
using QwenNats.Tests.Infrastructure;
using Xunit.Abstractions;

namespace QwenNats.Tests.Integration;

/// <summary>
/// The whole system on a three-node JetStream cluster (the shipped deploy/nats/cluster-node.conf with the project's
/// users, authenticated routes), every stream and bucket at replicas 3, every service given all three URLs. Under
/// client load and during a rollout, the node leading the live work queue is killed with SIGKILL and restarted,
/// then the node leading the rollout state. Nothing may be lost, pins and the rollout state must survive, and the
/// rollout must carry on to its decision.
/// </summary>
public sealed class ClusterDrillTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Killing_the_leaders_of_the_work_queue_and_of_the_rollout_state_loses_nothing_and_the_rollout_carries_on()
    {
        var users = new NatsUsers();
        await using var cluster = await NatsCluster.StartAsync(users.ServerEnvironment());
        output.WriteLine($"cluster: {string.Join(", ", cluster.Nodes.Select(n => $"{n.Key} {n.Value.Url}"))}");
        await using var inspector = Nats.Connect(cluster.Url, "cluster-drill", "ingress", users.Passwords["ingress"]);
        await NatsCluster.WaitForStreamAsync(inspector, null, TimeSpan.FromSeconds(30));

        Dictionary<string, string?> As(string user, Dictionary<string, string?> settings)
        {
            foreach (var (k, v) in users.Settings(user)) settings[k] = v;
            settings["Nats:Url"] = cluster.Url;
            settings["Topology:Replicas"] = "3";
            settings["Topology:Storage"] = "file";
            return settings;
        }

        // An A/A rollout (green serves blue's profile) with small samples: it must be promoted, kills or not.
        var policy = TestPolicies.Write("00:04:00", noVerdictPauseAfter: "00:01:30", minStepDuration: "00:00:35");
        var hosts = new List<IHost>();
        await using var system = new QwenSystem(cluster.Url);
        try
        {
            var promoterSettings = As("promoter", RolloutFixture.PromoterSettings(cluster.Url));
            promoterSettings["Promoter:PolicyPath"] = policy;
            promoterSettings["Promoter:Automatic"] = "true";
            // Leader elections in the cluster take a few seconds: the lease outlives them.
            promoterSettings["Promoter:LeaseTtl"] = "00:00:05";
            foreach (var host in new[]
            {
                Promoter.PromoterHost.Build([], c => c.AddInMemoryCollection(promoterSettings)),
                Judge.JudgeHost.Build([], c => c.AddInMemoryCollection(As("judge", RolloutRig.JudgeSettings(cluster.Url, policy)))),
            })
            {
                await host.StartAsync();
                hosts.Add(host);
            }
            await system.StartWorkerAsync("blue", "v1", slots: 2, extra: As("worker_blue", new() { ["Worker:WorkerId"] = "blue-1" }));
            await system.StartWorkerAsync("green", "v1", slots: 2, extra: As("worker_green", new() { ["Worker:WorkerId"] = "green-1" }));
            var (_, http) = await system.StartIngressAsync(As("ingress", new()
            {
                ["Ingress:RequestTimeout"] = "00:00:20", ["Topology:AckWait"] = "00:00:03", ["Ingress:WorkerStaleAfter"] = "00:00:01.500",
                ["Shadow:CanaryFraction"] = "0.5", ["Shadow:Timeout"] = "00:00:10", ["Shadow:ScoreFraction"] = "1",
            }));
            http.Timeout = TimeSpan.FromSeconds(40);
            await QwenSystem.WaitForWorkersAsync(http, "blue", 1, TimeSpan.FromSeconds(60));
            await QwenSystem.WaitForWorkersAsync(http, "green", 1, TimeSpan.FromSeconds(60));
            await using var op = Nats.Connect(cluster.Url, "cluster-drill-operator", "operator", users.Passwords["operator"]);
            await Ctl.WaitForLeaderAsync(op, TimeSpan.FromSeconds(60));
            await Pools.WaitReadyAsync(op, TimeSpan.FromSeconds(60));

            // Every stream and bucket the system made keeps three copies.
            var js = new NatsJSContext(inspector);
            foreach (var stream in new[] { Subjects.WorkStream("blue"), Subjects.WorkStream("green"), "KV_" + Rollouts.Bucket, "KV_" + Rollouts.SessionsBucket, Rollouts.EventsStream, Judging.SamplesStream })
                Assert.Equal(3, (await js.GetStreamAsync(stream)).Info.Config.NumReplicas);

            // Sessions pinned to live (blue) before anything fails, once the ingress is ready (which includes knowing the
            // pins bucket: the promoter creates it after the state's, and in a cluster each bucket takes a moment to form).
            await Eventually.TrueAsync(async () => (await http.GetAsync("/readyz")).IsSuccessStatusCode, TimeSpan.FromSeconds(60));
            var pinned = Enumerable.Range(0, 6).Select(i => $"cluster-pin-{i}").ToList();
            foreach (var s in pinned)
            {
                using var r = await http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"pin me\"}", session: s));
                Assert.Equal(HttpStatusCode.OK, r.StatusCode);
                Assert.Equal("blue", Api.Header(r, "X-Qwen-Colour"));
                Assert.Equal("NewSession", Api.Header(r, "X-Qwen-Route"));
            }
            // The answer waits for its pin: every pin is in KV before the first kill.
            var pinStore = await new NatsKVContext(js).GetStoreAsync(Rollouts.SessionsBucket);
            foreach (var s in pinned)
                Assert.Equal("blue", (await pinStore.GetEntryAsync<SessionPin>(SessionKeys.For(s))).Value?.Colour);

            var load = new DrillLoad(http, maxTokens: 24);
            using var stop = new CancellationTokenSource();
            var running = load.RunAsync(3, stop.Token);
            var started = await Ctl.SendAsync(op, "start", "{\"candidate\":\"green\",\"reason\":\"cluster drill\"}");
            Assert.True(started.Ok, started.Error);
            var rolloutId = started.State!.RolloutId;
            await Task.Delay(TimeSpan.FromSeconds(5));

            var kills = new List<(string Node, string Stream, RolloutPhase Phase)>();
            foreach (var stream in new[] { Subjects.WorkStream("blue"), "KV_" + Rollouts.Bucket })
            {
                var leader = (await NatsCluster.WaitForStreamAsync(inspector, stream, TimeSpan.FromSeconds(60)))!;
                var phase = (await Ctl.SendAsync(op, "status")).State!.Phase;
                await cluster.Nodes[leader].KillAsync();
                output.WriteLine($"{DateTimeOffset.UtcNow:HH:mm:ss.fff} killed {leader} (SIGKILL), leader of {stream}, rollout in {phase}");
                kills.Add((leader, stream, phase));
                var next = await NatsCluster.WaitForStreamAsync(inspector, stream, TimeSpan.FromSeconds(30), allCurrent: false);
                output.WriteLine($"{DateTimeOffset.UtcNow:HH:mm:ss.fff} {stream} led by {next} while {leader} is down");
                await Task.Delay(TimeSpan.FromSeconds(5));
                await cluster.Nodes[leader].RestartAsync();
                var back = await NatsCluster.WaitForStreamAsync(inspector, stream, TimeSpan.FromSeconds(60));
                output.WriteLine($"{DateTimeOffset.UtcNow:HH:mm:ss.fff} restarted {leader}; {stream} led by {back}, every replica current");
                await Task.Delay(TimeSpan.FromSeconds(3));
            }

            var end = await WaitForDecisionAsync(op, TimeSpan.FromMinutes(4));
            await stop.CancelAsync();
            await running;
            var events = (await Ctl.SendAsync(op, "history", "{\"limit\":50}")).Events!.Where(e => e.State.RolloutId == rolloutId || e.From is RolloutPhase.Promoted).ToList();
            foreach (var e in events)
                output.WriteLine($"{e.At:HH:mm:ss.fff} {e.Trigger,-10} {e.From,-10} -> {e.To,-10} by {e.Actor}: {e.Reason}");
            var sessions = await new NatsKVContext(js).GetStoreAsync(Rollouts.SessionsBucket);
            var pins = new List<string?>();
            foreach (var s in pinned)
                pins.Add((await sessions.TryGetEntryAsync<SessionPin>(SessionKeys.For(s))) is { Success: true } pin ? pin.Value.Value?.Colour : null);
            var report = load.Report("cluster-leader-kills");
            report.Publish(output, string.Join(Environment.NewLine, kills.Select(k => $"killed {k.Node} (SIGKILL), the leader of {k.Stream}, with the rollout in {k.Phase}; restarted it"))
                + Environment.NewLine + $"rollout {rolloutId}: {string.Join(" -> ", events.Select(e => e.To))}; now {end.Phase}, {end.Live} live"
                + Environment.NewLine + $"pins made before the kills: {pins.Count(p => p == "blue")} of {pinned.Count} still on blue");

            Assert.Equal(0, report.Lost);
            Assert.True(report.Succeeded > 0);
            // Clear errors only: prompt 503s while a stream elects its leader, and 504s for work queued behind an
            // election (a Raft election takes several seconds) that could not be answered within its deadline.
            Assert.All(report.Codes.Keys, code => Assert.Contains(code, new[] { ErrorCodes.BusUnavailable, ErrorCodes.NoWorkers, ErrorCodes.WorkerLost, ErrorCodes.Overloaded, ErrorCodes.DeadlineExceeded }));
            // Both kills landed during the rollout, which carried on to its decision: the identical candidate is promoted.
            Assert.All(kills, k => Assert.Contains(k.Phase, new[] { RolloutPhase.Shadow, RolloutPhase.Canary }));
            Assert.True(end.Phase is RolloutPhase.Promoted or RolloutPhase.Stable && end.Live == "green", $"rollout ended in {end.Phase}, live {end.Live}: {end.Reason}");
            Assert.Equal([RolloutPhase.Shadow, RolloutPhase.Canary, RolloutPhase.Promoted], events.Select(e => e.To).Take(3));
            // The pins made before the kills are all there, still on blue.
            Assert.All(pins, p => Assert.Equal("blue", p));
        }
        finally
        {
            foreach (var h in hosts)
            {
                await h.StopAsync();
                h.Dispose();
            }
        }
    }

    /// <summary>Until the rollout is decided (promoted, and perhaps already baked), rolled back or paused.</summary>
    private static async Task<RolloutState> WaitForDecisionAsync(NatsConnection op, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (true)
        {
            var state = (await Ctl.SendAsync(op, "status")).State!;
            if (state.Phase is RolloutPhase.Promoted or RolloutPhase.RolledBack or RolloutPhase.Paused or RolloutPhase.Stable || DateTime.UtcNow > until)
                return state;
            await Task.Delay(500);
        }
    }
}
