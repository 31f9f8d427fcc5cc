using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using NATS.Client.Core;
using QwenNats.Messaging;
using QwenNats.Messaging.Control;
using QwenNats.Promoter;
using QwenNats.ServiceDefaults;

namespace QwenNats.Tests.Infrastructure;

/// <summary>
/// A whole system for the control plane: one nats-server, a blue and a green worker, two ingresses,
/// and a promoter with short timers. Tests return it to Stable (blue live) when they finish.
/// </summary>
public sealed class RolloutFixture : IAsyncLifetime
{
    public NatsServer Nats { get; private set; } = null!;
    public QwenSystem System { get; private set; } = null!;
    public HttpClient Http1 { get; private set; } = null!;
    public HttpClient Http2 { get; private set; } = null!;
    public WebApplication Ingress1 { get; private set; } = null!;
    public IHost Promoter { get; private set; } = null!;
    public NatsConnection Operator { get; private set; } = null!;

    /// <summary>Where the workers keep the model files of releases deployed to them (they follow their colour's
    /// assignment); removed when the fixture ends.</summary>
    public string ModelCacheDir { get; } = Path.Combine(Path.GetTempPath(), $"qwen-rollout-models-{Guid.NewGuid():N}");

    public static Dictionary<string, string?> PromoterSettings(string natsUrl) => new()
    {
        ["Nats:Url"] = natsUrl,
        ["Logging:LogLevel:Default"] = "Warning",
        ["Promoter:BakeWindow"] = "00:00:03",
        ["Promoter:RolledBackHold"] = "00:00:00.500",
        // Renewed every 2 s: only a death, or a stall of 4 s (not the 1 s a loaded test machine can give), passes the lead on.
        ["Promoter:LeaseTtl"] = "00:00:06",
        ["Promoter:TickInterval"] = "00:00:00.100",
        ["Topology:Storage"] = "memory",
    };

    public async Task InitializeAsync()
    {
        Nats = await NatsServer.StartAsync();
        System = new QwenSystem(Nats);
        Promoter = await StartPromoterAsync();
        await System.StartWorkerAsync("blue", "v1", slots: 2, extra: new() { ["Worker:WorkerId"] = "blue-1", ["Worker:ModelCacheDir"] = Path.Combine(ModelCacheDir, "blue") });
        await System.StartWorkerAsync("green", "v2", slots: 2, extra: new() { ["Worker:WorkerId"] = "green-1", ["Worker:ModelCacheDir"] = Path.Combine(ModelCacheDir, "green") });
        // The first ingress's console is read-only (no operator token), as ConsoleTests expects.
        (Ingress1, Http1) = await System.StartIngressAsync(new() { ["Console:OperatorToken"] = "" });
        (_, Http2) = await System.StartIngressAsync();
        await QwenSystem.WaitForWorkersAsync(Http1, "blue", 1);
        await QwenSystem.WaitForWorkersAsync(Http1, "green", 1);
        await QwenSystem.WaitForWorkersAsync(Http2, "green", 1);
        await QwenSystem.WaitForWorkersAsync(Http2, "blue", 1);
        Operator = await Ctl.ConnectAsync(Nats);
        await WaitForLeaderAsync();
    }

    public async Task<IHost> StartPromoterAsync(Dictionary<string, string?>? extra = null)
    {
        var settings = PromoterSettings(Nats.Url);
        if (extra is not null) foreach (var (k, v) in extra) settings[k] = v;
        var host = PromoterHost.Build([], c => c.AddInMemoryCollection(settings));
        await host.StartAsync();
        return host;
    }

    /// <summary>Sends an operator command the way <c>nats req qwen.ctl.&lt;verb&gt; '&lt;json&gt;'</c> does.</summary>
    public Task<ControlReply> CtlAsync(string verb, string json = "", CancellationToken ct = default) => Ctl.SendAsync(Operator, verb, json, ct);

    public Task<string> WaitForLeaderAsync(TimeSpan? timeout = null) => Ctl.WaitForLeaderAsync(Operator, timeout);

    /// <summary>Ends whatever rollout a test left and waits until both ingresses see Stable with blue live.</summary>
    public async Task ResetAsync()
    {
        var s = (await CtlAsync("status")).State!;
        if (s.Phase is RolloutPhase.Shadow or RolloutPhase.Canary or RolloutPhase.Paused)
            await CtlAsync("abort", "{\"reason\":\"test reset\"}");
        s = (await CtlAsync("status")).State!;
        if (s.Phase == RolloutPhase.Promoted)
            await CtlAsync("promote", "{\"reason\":\"test reset\"}");
        s = (await CtlAsync("status")).State!;
        if (s.Live != "blue")
        {
            await CtlAsync("start", "{\"candidate\":\"blue\",\"reason\":\"test reset\"}");
            await CtlAsync("promote", "{\"full\":true}");
            await CtlAsync("promote");
        }
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        RolloutState state;
        while ((state = (await CtlAsync("status", ct: cts.Token)).State!).Phase is not RolloutPhase.Stable)
            await Task.Delay(100, cts.Token);
        await AppliedAsync(state.Version);
    }

    /// <summary>Waits (up to the ingresses' own limit) until both ingresses route by rollout state version <paramref name="version"/> or later.</summary>
    public async Task AppliedAsync(long version)
    {
        foreach (var http in new[] { Http1, Http2 })
        {
            var applied = JsonDocument.Parse(await http.GetStringAsync($"/api/rollout/applied?version={version}")).RootElement;
            Assert.True(applied.GetProperty("reached").GetBoolean(), $"state version {version} not applied");
        }
    }

    public async Task DisposeAsync()
    {
        if (Operator is not null) await Operator.DisposeAsync();
        if (Promoter is not null)
        {
            await Promoter.StopAsync();
            Promoter.Dispose();
        }
        Http1?.Dispose();
        Http2?.Dispose();
        if (System is not null) await System.DisposeAsync();
        if (Nats is not null) await Nats.DisposeAsync();
        try
        {
            if (Directory.Exists(ModelCacheDir)) Directory.Delete(ModelCacheDir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

[CollectionDefinition(Name)]
public sealed class RolloutCollection : ICollectionFixture<RolloutFixture>
{
    public const string Name = "rollout";
}

/// <summary>Operator requests on <c>qwen.ctl.*</c>, as <c>nats req</c> sends them.</summary>
public static class Ctl
{
    public static async Task<NatsConnection> ConnectAsync(NatsServer server)
    {
        var nats = Nats.Connect(server.Url);
        await nats.ConnectAsync();
        return nats;
    }

    /// <summary>Through the library's typed control client, with a raw JSON body.</summary>
    public static Task<ControlReply> SendAsync(NatsConnection nats, string verb, string json = "", CancellationToken ct = default, TimeSpan? timeout = null) =>
        new ControlClient(nats).SendAsync(verb, json, timeout, ct);

    /// <summary>Waits until some promoter leads and answers; returns its id.</summary>
    public static Task<string> WaitForLeaderAsync(NatsConnection nats, TimeSpan? timeout = null) =>
        new ControlClient(nats).WaitForLeaderAsync(timeout ?? TimeSpan.FromSeconds(15));
}
