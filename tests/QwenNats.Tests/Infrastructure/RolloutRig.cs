using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using NATS.Client.Core;
using QwenNats.Judge;
using QwenNats.Messaging;
using QwenNats.Messaging.Topology;
using QwenNats.Promoter;
using Xunit.Abstractions;

namespace QwenNats.Tests.Infrastructure;

/// <summary>How a <see cref="RolloutRig"/> is started.</summary>
public sealed record RolloutRigOptions
{
    /// <summary>Green's extra worker settings (fault injection for a bad release).</summary>
    public Dictionary<string, string?>? GreenFaults { get; init; }
    public bool Automatic { get; init; } = true;
    /// <summary>False: no ingress (the test publishes samples itself), one worker per pool.</summary>
    public bool Workers { get; init; } = true;
    public required string Policy { get; init; }
    public string GreenProfile { get; init; } = "v2";
    public bool Judge { get; init; } = true;
    /// <summary>Run the golden set on blue (live) before the test, which stores its result for the gate.</summary>
    public bool StoreLiveGolden { get; init; } = true;
    /// <summary>Ingress settings on top of the rig's (mirror everything, half the canary traffic, 20 s mirror timeout).</summary>
    public Dictionary<string, string?>? Ingress { get; init; }
}

/// <summary>
/// A whole rollout loop on a real nats-server: promoter, judge, a blue (v1) and a green worker with two slots
/// each, and an ingress that mirrors live traffic to green (10 s to take a copy, 10 s more to answer it). For tests
/// that let the judge decide.
/// </summary>
public sealed class RolloutRig : IAsyncDisposable
{
    public required NatsServer Server { get; init; }
    public required QwenSystem System { get; init; }
    public required HttpClient Http { get; init; }
    public required NatsConnection Operator { get; init; }
    public required List<IHost> Hosts { get; init; }
    public required string Policy { get; init; }

    public static Dictionary<string, string?> JudgeSettings(string url, string policy) => new()
    {
        ["Nats:Url"] = url, ["Logging:LogLevel:Default"] = "Warning",
        ["Judge:PolicyPath"] = policy, ["Judge:EvaluateInterval"] = "00:00:00.250", ["Topology:Storage"] = "memory",
    };

    public static async Task<IHost> StartJudgeAsync(string url, string policy, Dictionary<string, string?>? extra = null)
    {
        var settings = JudgeSettings(url, policy);
        foreach (var (k, v) in extra ?? []) settings[k] = v;
        var judge = JudgeHost.Build([], c => c.AddInMemoryCollection(settings));
        await judge.StartAsync();
        return judge;
    }

    public static async Task<RolloutRig> StartAsync(RolloutRigOptions o)
    {
        var server = await NatsServer.StartAsync();
        var system = new QwenSystem(server);
        var hosts = new List<IHost>();
        var promoterSettings = RolloutFixture.PromoterSettings(server.Url);
        promoterSettings["Promoter:PolicyPath"] = o.Policy;
        promoterSettings["Promoter:GoldenPath"] = Path.Combine(Paths.RepoRoot, "deploy", "golden", "sentiment.jsonl");
        promoterSettings["Promoter:GoldenChatPath"] = Path.Combine(Paths.RepoRoot, "deploy", "golden", "chat.jsonl");
        // The rig computes live's golden result itself (StoreLiveGolden); a background run on green would only be
        // stopped when the rollout starts, after using the cores the test is about to measure.
        promoterSettings["Promoter:GoldenPrecompute"] = "false";
        promoterSettings["Promoter:Automatic"] = o.Automatic ? "true" : "false";
        var promoter = PromoterHost.Build([], c => c.AddInMemoryCollection(promoterSettings));
        await promoter.StartAsync();
        hosts.Add(promoter);
        if (o.Judge)
            hosts.Add(await StartJudgeAsync(server.Url, o.Policy));
        HttpClient http;
        if (o.Workers)
        {
            await system.StartWorkerAsync("blue", "v1", slots: 2);
            await system.StartWorkerAsync("green", o.GreenProfile, slots: 2, extra: o.GreenFaults);
            var ingress = new Dictionary<string, string?> { ["Shadow:CanaryFraction"] = "0.5", ["Shadow:Timeout"] = "00:00:10", ["Shadow:ScoreFraction"] = "1" };
            foreach (var (k, v) in o.Ingress ?? [])
                ingress[k] = v;
            (_, http) = await system.StartIngressAsync(ingress);
            await QwenSystem.WaitForWorkersAsync(http, "blue", 1);
            await QwenSystem.WaitForWorkersAsync(http, "green", 1);
        }
        else
        {
            // The test publishes samples itself, as an ingress would (it applies the ingress's part of the topology);
            // the pools still have workers, since a rollout needs a serving candidate.
            await TopologySetup.EnsureAsync(server, Owners.Ingress, "memory");
            await system.StartWorkerAsync("blue", "v1");
            await system.StartWorkerAsync("green", o.GreenProfile);
            http = new HttpClient();
        }
        var op = await Ctl.ConnectAsync(server);
        await Ctl.WaitForLeaderAsync(op);
        await Pools.WaitReadyAsync(op);
        if (o.Workers && o.StoreLiveGolden)
            // Live's golden result is stored, as a production live release's is from its own rollout, so the gate
            // runs the golden set on the candidate only (live's shadow queue starves under the client load).
            Assert.True((await Ctl.SendAsync(op, "golden", "{\"colour\":\"blue\"}", timeout: TimeSpan.FromSeconds(90))).Ok);
        return new RolloutRig { Server = server, System = system, Http = http, Operator = op, Hosts = hosts, Policy = o.Policy };
    }

    /// <summary>Polls <c>status</c> until <paramref name="done"/> or the timeout; prints the state and the verdict it ends on.</summary>
    public async Task<RolloutState> WaitForPhaseAsync(ITestOutputHelper output, Func<RolloutState, bool> done, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (true)
        {
            var status = await Ctl.SendAsync(Operator, "status");
            if (done(status.State!) || DateTime.UtcNow > until)
            {
                output.WriteLine($"state: {JsonSerializer.Serialize(status.State, QwenJsonContext.Default.RolloutState)}");
                output.WriteLine($"verdict: {(status.Verdict is null ? "none" : JsonSerializer.Serialize(status.Verdict, QwenJsonContext.Default.Verdict))}");
                return status.State!;
            }
            await Task.Delay(200);
        }
    }

    public async Task<IReadOnlyList<RolloutEvent>> HistoryAsync(ITestOutputHelper output, int limit = 20)
    {
        var events = (await Ctl.SendAsync(Operator, "history", $"{{\"limit\":{limit}}}")).Events!;
        foreach (var e in events)
            output.WriteLine($"{e.At:HH:mm:ss.fff} {e.Trigger,-10} {e.From,-10} -> {e.To,-10} by {e.Actor} ({e.Cause}): {e.Reason}");
        return events;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var h in Hosts)
        {
            await h.StopAsync();
            h.Dispose();
        }
        await Operator.DisposeAsync();
        Http.Dispose();
        await System.DisposeAsync();
        await Server.DisposeAsync();
    }
}
