using System.Diagnostics;
using Microsoft.Extensions.Configuration;
using NATS.Client.Core;
using QwenNats.Messaging;
using QwenNats.Promoter;
using QwenNats.ServiceDefaults;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>Promoters restarting, standing by and dying, each test on its own nats-server.</summary>
public sealed class PromoterFailoverTests
{
    [Fact]
    public async Task A_restarted_promoter_resumes_the_same_phase()
    {
        await using var server = await NatsServer.StartAsync();
        await using var op = await OperatorAsync(server);
        await using var workers = await Pools.StartWorkersAsync(server);
        var first = await StartPromoterAsync(server);
        await WaitForLeaderAsync(op);
        await Pools.WaitReadyAsync(op);
        Assert.True((await CtlAsync(op, "start", "{\"candidate\":\"green\"}")).Ok);
        var canary = await CtlAsync(op, "set-weight", "{\"weight\":30}");
        await first.StopAsync();
        first.Dispose();

        using var second = await StartPromoterAsync(server);
        await WaitForLeaderAsync(op);
        var status = await CtlAsync(op, "status");
        Assert.Equal(canary.State, status.State);
        Assert.NotEqual(canary.Leader, status.Leader);
        // A promoter that has just started knows no worker until their next heartbeats: a promote waits for it to have
        // heard them (Promoter:PoolsSettleWait), and is refused (empty_pool) only for a pool that then has no serving worker.
        await Pools.WaitReadyAsync(op);
        var next = await CtlAsync(op, "promote");
        Assert.True(next.Ok, $"{next.Code}: {next.Error}");
        Assert.Equal((RolloutPhase.Canary, 1, 30), (next.State!.Phase, next.State.Step, next.State.Weight));
        await second.StopAsync();
    }

    [Fact]
    public async Task A_standby_promoter_takes_over_when_the_leader_process_is_killed_and_no_transition_is_applied_twice()
    {
        await using var server = await NatsServer.StartAsync();
        await using var op = await OperatorAsync(server);
        await using var workers = await Pools.StartWorkersAsync(server);
        using var leaderProcess = StartPromoterProcess(server);
        try
        {
            var leader = await WaitForLeaderAsync(op, TimeSpan.FromSeconds(30));
            using var standby = await StartPromoterAsync(server);
            await Pools.WaitReadyAsync(op);
            Assert.True((await CtlAsync(op, "start", "{\"candidate\":\"green\"}")).Ok);
            Assert.Equal(leader, (await CtlAsync(op, "status")).Leader);

            leaderProcess.Kill(entireProcessTree: true);
            using (var exit = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
                await leaderProcess.WaitForExitAsync(exit.Token);
            var killedAt = Stopwatch.StartNew();
            var takeover = await WaitForLeaderAsync(op, TimeSpan.FromSeconds(15));
            Assert.NotEqual(leader, takeover);
            Assert.True(killedAt.Elapsed < TimeSpan.FromSeconds(15));

            var status = await CtlAsync(op, "status");
            Assert.Equal(RolloutPhase.Shadow, status.State!.Phase);
            for (var i = 0; i < 3; i++)
                Assert.True((await CtlAsync(op, "promote")).Ok);
            var history = await CtlAsync(op, "history", "{\"limit\":50}");
            var versions = history.Events!.Select(e => e.State.Version).ToList();
            Assert.Equal(Enumerable.Range(1, versions.Count).Select(v => (long)v), versions);
            Assert.Equal(new[] { "start", "promote", "promote", "promote" }, history.Events!.Select(e => e.Trigger));
            await standby.StopAsync();
        }
        finally
        {
            if (!leaderProcess.HasExited) leaderProcess.Kill(true);
        }
    }

    [Fact]
    public async Task A_leader_stopped_gracefully_releases_its_lease_so_the_standby_need_not_wait_for_it_to_expire()
    {
        await using var server = await NatsServer.StartAsync();
        await using var op = await OperatorAsync(server);
        var first = await StartPromoterAsync(server);
        var leader = await WaitForLeaderAsync(op);
        using var standby = await StartPromoterAsync(server);

        await first.StopAsync();
        first.Dispose();
        // Stopped within the lease's lifetime (6 s in these tests): the lease must say so, not run until it expires.
        var js = new NATS.Client.JetStream.NatsJSContext(op);
        var kv = await new NATS.Client.KeyValueStore.NatsKVContext(js).GetStoreAsync(Rollouts.Bucket);
        var lease = (await kv.GetEntryAsync<PromoterLease>(Rollouts.LeaseKey)).Value!;
        Assert.True(lease.Holder != leader || lease.ExpiresUnixMs == 0,
            $"the stopped leader {leader} still holds the lease until {DateTimeOffset.FromUnixTimeMilliseconds(lease.ExpiresUnixMs):O}");
        Assert.NotEqual(leader, await WaitForLeaderAsync(op));
        await standby.StopAsync();
    }

    [Fact]
    public async Task Two_promoters_racing_never_both_apply_a_command()
    {
        await using var server = await NatsServer.StartAsync();
        await using var op = await OperatorAsync(server);
        await using var workers = await Pools.StartWorkersAsync(server);
        using var a = await StartPromoterAsync(server);
        using var b = await StartPromoterAsync(server);
        await WaitForLeaderAsync(op);
        await Pools.WaitReadyAsync(op);
        Assert.True((await CtlAsync(op, "start", "{\"candidate\":\"green\"}")).Ok);
        var replies = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => CtlAsync(op, "set-weight", $"{{\"weight\":{i + 1}}}")));
        Assert.All(replies, r => Assert.True(r.Ok, r.Error));
        var history = await CtlAsync(op, "history", "{\"limit\":100}");
        var versions = history.Events!.Select(e => e.State.Version).ToList();
        Assert.Equal(21, versions.Count);
        Assert.Equal(Enumerable.Range(1, 21).Select(v => (long)v), versions);
        Assert.Single(history.Events!, e => e.Trigger == "start");
        await a.StopAsync();
        await b.StopAsync();
    }

    private static Process StartPromoterProcess(NatsServer server)
    {
        var config = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";
        var dll = Path.Combine(Paths.RepoRoot, "services", "promoter", "bin", config, "net10.0", "QwenNats.Promoter.dll");
        Assert.True(File.Exists(dll), $"{dll} is not built");
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(dll);
        foreach (var (k, v) in RolloutFixture.PromoterSettings(server.Url))
            psi.ArgumentList.Add($"--{k}={v}");
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    private static async Task<Microsoft.Extensions.Hosting.IHost> StartPromoterAsync(NatsServer server)
    {
        var host = PromoterHost.Build([], c => c.AddInMemoryCollection(RolloutFixture.PromoterSettings(server.Url)));
        await host.StartAsync();
        return host;
    }

    private static Task<NatsConnection> OperatorAsync(NatsServer server) => Ctl.ConnectAsync(server);

    private static Task<ControlReply> CtlAsync(NatsConnection nats, string verb, string json = "") => Ctl.SendAsync(nats, verb, json);

    private static Task<string> WaitForLeaderAsync(NatsConnection nats, TimeSpan? timeout = null) => Ctl.WaitForLeaderAsync(nats, timeout);
}
