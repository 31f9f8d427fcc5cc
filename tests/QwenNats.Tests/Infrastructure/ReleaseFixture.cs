using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.ObjectStore;
using QwenNats.Judge;
using QwenNats.Messaging;
using QwenNats.Messaging.Control;
using QwenNats.Promoter;

namespace QwenNats.Tests.Infrastructure;

/// <summary>
/// A whole system whose workers start with no model and serve releases: one nats-server, a promoter that follows
/// the judge (small-sample policy), the judge, an ingress, and one blue and one green worker that follow their
/// colour's assignment. It bootstraps release <see cref="FirstRelease"/> (the tiny model, profile v1) on both colours,
/// blue live. Tests ship further releases to whichever colour is idle.
/// </summary>
public sealed class ReleaseFixture : IAsyncLifetime
{
    public const string FirstRelease = "r1";

    private readonly List<IHost> _hosts = [];

    public NatsServer Nats { get; private set; } = null!;
    public QwenSystem System { get; private set; } = null!;
    public HttpClient Http { get; private set; } = null!;
    public NatsConnection Operator { get; private set; } = null!;
    public ControlClient Ctl { get; private set; } = null!;
    public string Dir { get; } = Path.Combine(Path.GetTempPath(), $"qwen-releases-{Guid.NewGuid():N}");
    public IHost BlueWorker { get; private set; } = null!;
    public IHost GreenWorker { get; private set; } = null!;
    public string TinySha { get; private set; } = "";

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(Dir);
        Nats = await NatsServer.StartAsync();
        System = new QwenSystem(Nats);
        var policy = TestPolicies.Write("00:01:00", minStepDuration: "00:00:12");
        var promoterSettings = RolloutFixture.PromoterSettings(Nats.Url);
        promoterSettings["Promoter:PolicyPath"] = policy;
        var promoter = PromoterHost.Build([], c => c.AddInMemoryCollection(promoterSettings));
        await promoter.StartAsync();
        _hosts.Add(promoter);
        var judge = JudgeHost.Build([], c => c.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Nats:Url"] = Nats.Url, ["Logging:LogLevel:Default"] = "Warning",
            ["Judge:PolicyPath"] = policy, ["Judge:EvaluateInterval"] = "00:00:00.250", ["Topology:Storage"] = "memory",
        }));
        await judge.StartAsync();
        _hosts.Add(judge);
        BlueWorker = await System.StartReleaseWorkerAsync("blue", "blue-1", Path.Combine(Dir, "cache-blue"));
        GreenWorker = await System.StartReleaseWorkerAsync("green", "green-1", Path.Combine(Dir, "cache-green"));
        (_, Http) = await System.StartIngressAsync(new() { ["Shadow:CanaryFraction"] = "0.5", ["Shadow:Timeout"] = "00:00:20", ["Shadow:ScoreFraction"] = "1" });
        Operator = await Infrastructure.Ctl.ConnectAsync(Nats);
        Ctl = new ControlClient(Operator, TimeSpan.FromSeconds(30));
        await Ctl.WaitForLeaderAsync(TimeSpan.FromSeconds(15));

        TinySha = await UploadAsync(Paths.Model);
        Assert.True((await RegisterAsync(FirstRelease, TinySha, "v1")).Ok);
        foreach (var colour in new[] { "blue", "green" })
        {
            var deployed = await Ctl.SendAsync(Rollouts.Verbs.Deploy, new ControlRequest { Colour = colour, Release = FirstRelease, Reason = "bootstrap" });
            Assert.True(deployed.Ok, $"{deployed.Code}: {deployed.Error}");
        }
        await WaitForPoolAsync("blue", p => p.Ready, TimeSpan.FromSeconds(60));
        await WaitForPoolAsync("green", p => p.Ready, TimeSpan.FromSeconds(60));
        await QwenSystem.WaitForWorkersAsync(Http, "blue", 1);
        await QwenSystem.WaitForWorkersAsync(Http, "green", 1);
    }

    public async Task<INatsObjStore> ModelsAsync() =>
        await new NatsObjContext(new NatsJSContext(Operator)).GetObjectStoreAsync(Releases.ModelsBucket);

    public async Task<string> UploadAsync(string path) => (await ModelStore.UploadAsync(await ModelsAsync(), path, CancellationToken.None)).Sha256;

    public Task<ControlReply> RegisterAsync(string id, string sha, string profile, FaultOptions? faults = null) =>
        Ctl.SendAsync(Rollouts.Verbs.Release, new ControlRequest
        {
            Release = id, ModelSha256 = sha, Profile = PromptProfile.Load(Paths.Profile(profile)), Notes = $"test release {id}", Faults = faults,
        });

    public async Task<PoolStatus> PoolAsync(string colour) => (await Ctl.StatusAsync()).Pools!.Single(p => p.Colour == colour);

    public async Task<PoolStatus> WaitForPoolAsync(string colour, Func<PoolStatus, bool> done, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (true)
        {
            var pool = await PoolAsync(colour);
            if (done(pool)) return pool;
            if (DateTime.UtcNow > until)
                throw new TimeoutException($"pool {colour}: ready {pool.Ready}, failed {pool.Failed}: {pool.Why}");
            await Task.Delay(100);
        }
    }

    public async Task<string> IdleColourAsync()
    {
        var state = (await Ctl.StatusAsync()).State!;
        Assert.Equal(RolloutPhase.Stable, state.Phase);
        return state.Live == "blue" ? "green" : "blue";
    }

    /// <summary>Waits until no rollout is in progress (a test that ended mid-rollout is aborted or its bake closed).</summary>
    public async Task SettleAsync()
    {
        var state = (await Ctl.StatusAsync()).State!;
        if (state.Phase is RolloutPhase.Shadow or RolloutPhase.Canary or RolloutPhase.Paused)
            await Ctl.AbortAsync("test reset");
        if (state.Phase == RolloutPhase.Promoted)
            await Ctl.PromoteAsync(reason: "test reset");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        while ((await Ctl.StatusAsync(cts.Token)).State!.Phase is not RolloutPhase.Stable)
            await Task.Delay(100, cts.Token);
    }

    public async Task DisposeAsync()
    {
        foreach (var h in _hosts)
        {
            await h.StopAsync();
            h.Dispose();
        }
        if (Operator is not null) await Operator.DisposeAsync();
        Http?.Dispose();
        if (System is not null) await System.DisposeAsync();
        if (Nats is not null) await Nats.DisposeAsync();
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>
/// Runs alone: its tests keep both cores busy with client load for minutes, which would starve the timing of
/// whatever test ran beside them (and make their own judge decisions noisier).
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ReleaseCollection : ICollectionFixture<ReleaseFixture>
{
    public const string Name = "releases";
}

/// <summary>Tests that drive client load through a whole rollout: run alone, for the same reason as <see cref="ReleaseCollection"/>.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class LoadCollection
{
    public const string Name = "load";
}
