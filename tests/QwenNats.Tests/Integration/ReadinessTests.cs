using System.Globalization;
using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using QwenNats.Ingress.Routing;
using QwenNats.Messaging;
using QwenNats.Messaging.Topology;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>Readiness tells the truth: an ingress is not ready on its configured default, a worker not before its queue exists.</summary>
public sealed class ReadinessTests
{
    [Fact]
    public async Task An_ingress_is_ready_only_with_the_real_rollout_state_and_pins_nothing_before()
    {
        await using var server = await NatsServer.StartAsync();
        await TopologySetup.EnsureAsync(server, Owners.Promoter, "memory");
        await using (var nats = await Ctl.ConnectAsync(server))
        {
            // The real state says green is live; the ingress is configured with blue.
            var js = new NatsJSContext(nats);
            var rollout = await new NatsKVContext(js).GetStoreAsync(Rollouts.Bucket);
            await rollout.PutAsync(Rollouts.StateKey, new RolloutState { Live = Colours.Green, Reason = "test", Actor = "test" });
        }

        await using var system = new QwenSystem(server);
        await system.StartWorkerAsync("blue", "v1");
        await system.StartWorkerAsync("green", "v2");
        var (app, http) = await system.StartIngressAsync(new() { ["Ingress:LiveColour"] = "blue" });
        var view = app.Services.GetRequiredService<RolloutView>();

        // Until the state is read nothing is pinned and /readyz is not 200; once it is 200 it names the real colour.
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (true)
        {
            // Read before the flag: the state may be read meanwhile, and if the flag is still down after the call,
            // it was down during it.
            var sessions = await view.GetSessionsAsync(cts.Token);
            if (!view.StateRead)
                Assert.Null(sessions);
            using var ready = await http.GetAsync("/readyz", cts.Token);
            var body = JsonDocument.Parse(await ready.Content.ReadAsStringAsync(cts.Token)).RootElement;
            if (ready.StatusCode == HttpStatusCode.OK)
            {
                Assert.True(view.StateRead);
                Assert.Equal("green", body.GetProperty("live_colour").GetString());
                Assert.Equal("read", body.GetProperty("rollout_state").GetString());
                break;
            }
            Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
            await Task.Delay(20, cts.Token);
        }
        Assert.Equal(Colours.Green, view.Current.Live);
    }

    [Fact]
    public async Task A_view_that_has_not_read_the_state_pins_no_session()
    {
        await using var server = await NatsServer.StartAsync();
        // The pins bucket exists, so only the unread state keeps the view from pinning.
        await TopologySetup.EnsureAsync(server, Owners.Promoter, "memory");
        await using var system = new QwenSystem(server);
        var (app, _) = await system.StartIngressAsync();
        // A second view on the same services that is never started: it has read nothing.
        var fresh = ActivatorUtilities.CreateInstance<RolloutView>(app.Services);
        Assert.False(fresh.StateRead);
        Assert.Null(await fresh.GetSessionsAsync(default));
        var ingressOptions = app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<Ingress.IngressOptions>>();
        var pins = new SessionPins(app.Services.GetRequiredService<Messaging.Topology.TopologyClient>(), TimeProvider.System, ingressOptions, NullLogger<SessionPins>.Instance);
        var routed = await new SessionRouter(fresh, pins, TimeProvider.System, ingressOptions,
            NullLogger<SessionRouter>.Instance).RouteAsync("s1", isNew: false, default);
        Assert.Equal(RoutingPolicy.DecideUnknownPin(fresh.Current), routed.Decision);
        Assert.Same(PinWrite.None, routed.PinWrite);
    }

    [Fact]
    public async Task A_worker_is_live_but_not_ready_until_the_ingress_has_created_its_work_queue()
    {
        await using var server = await NatsServer.StartAsync();
        await using var system = new QwenSystem(server);
        var port = Ports.Free();
        await system.StartWorkerAsync("blue", "v1", extra: new() { ["Metrics:Port"] = port.ToString(CultureInfo.InvariantCulture) });
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };

        using (var live = await http.GetAsync("/healthz"))
            Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        string body;
        while (true)
        {
            using var r = await http.GetAsync("/readyz", cts.Token);
            body = await r.Content.ReadAsStringAsync(cts.Token);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, r.StatusCode);
            if (body.Contains("created by the ingress", StringComparison.Ordinal)) break;   // the missing stream and who creates it
            await Task.Delay(100, cts.Token);
        }
        Assert.Contains("QWEN_WORK_BLUE", body);

        var (_, ingress) = await system.StartIngressAsync();
        await QwenSystem.WaitForWorkersAsync(ingress, "blue", 1);
        while (true)
        {
            using var r = await http.GetAsync("/readyz", cts.Token);
            if (r.StatusCode == HttpStatusCode.OK) break;
            await Task.Delay(100, cts.Token);
        }
        using var metrics = await http.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, metrics.StatusCode);
    }
}
