using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using QwenNats.Judge;
using QwenNats.Messaging;
using QwenNats.Messaging.Topology;
using QwenNats.Promoter;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>The topology table against a running system: each resource is created by its owner with the table's
/// settings, whatever order the services start in and whatever the other services are configured with.</summary>
public sealed class TopologyTests
{
    /// <summary>Settings every service gets; only the owners' copies may matter.</summary>
    private static readonly Dictionary<string, string?> Shared = new()
    {
        ["Topology:Storage"] = "memory",
        ["Topology:MaxMessages"] = "77",
        ["Topology:ShadowMaxMessages"] = "9",
        ["Topology:AckWait"] = "00:00:05",
        ["Topology:JudgeAckWait"] = "00:00:11",
        ["Topology:EventsMaxAge"] = "3.00:00:00",
        ["Topology:SessionIdle"] = "00:12:00",
    };

    [Fact]
    public async Task Every_stream_consumer_and_bucket_of_a_running_system_matches_the_table()
    {
        await using var server = await NatsServer.StartAsync();
        await using var system = new QwenSystem(server);
        using var promoter = await StartAsync(PromoterHost.Build([], c => c.AddInMemoryCollection(With(RolloutFixture.PromoterSettings(server.Url), Shared))));
        using var judge = await StartAsync(JudgeHost.Build([], c => c.AddInMemoryCollection(With(new() { ["Nats:Url"] = server.Url, ["Logging:LogLevel:Default"] = "Warning" }, Shared))));
        await system.StartWorkerAsync("blue", "v1", extra: Shared);
        await system.StartWorkerAsync("green", "v2", extra: Shared);
        await system.StartIngressAsync(Shared);

        var table = new QwenTopology(Options(Shared));
        await using var nats = await Ctl.ConnectAsync(server);
        var js = new NatsJSContext(nats);
        var kv = new NatsKVContext(js);
        foreach (var r in table.Resources)
        {
            await WaitForAsync(js, kv, r);
            switch (r.Kind)
            {
                case ResourceKind.Stream:
                    var want = table.StreamConfig(r.Name);
                    var have = (await js.GetStreamAsync(r.Name)).Info.Config;
                    Assert.Equal(want.Subjects, have.Subjects);
                    Assert.Equal(want.Retention, have.Retention);
                    Assert.Equal(want.Discard, have.Discard);
                    Assert.Equal(want.MaxMsgs == 0 ? -1 : want.MaxMsgs, have.MaxMsgs);
                    Assert.Equal(want.MaxBytes == 0 ? -1 : want.MaxBytes, have.MaxBytes);
                    Assert.Equal(want.MaxAge, have.MaxAge);
                    Assert.Equal(want.Storage, have.Storage);
                    Assert.Equal(want.NumReplicas, have.NumReplicas);
                    break;
                case ResourceKind.Consumer:
                    var wantC = table.ConsumerConfig(r.Stream!, r.Name);
                    var haveC = (await js.GetConsumerAsync(r.Stream!, r.Name)).Info.Config;
                    Assert.Equal(wantC.AckPolicy, haveC.AckPolicy);
                    Assert.Equal(wantC.AckWait, haveC.AckWait);
                    Assert.Equal(wantC.MaxDeliver == 0 ? -1 : wantC.MaxDeliver, haveC.MaxDeliver);
                    Assert.Equal(wantC.DeliverPolicy, haveC.DeliverPolicy);
                    if (wantC.MaxAckPending != 0) Assert.Equal(wantC.MaxAckPending, haveC.MaxAckPending);
                    break;
                case ResourceKind.Bucket:
                    var wantB = table.BucketConfig(r.Name);
                    var status = await (await kv.GetStoreAsync(r.Name)).GetStatusAsync();
                    Assert.Equal(wantB.History, status.Info.Config.MaxMsgsPerSubject);
                    Assert.Equal(wantB.MaxAge, status.Info.Config.MaxAge);
                    Assert.Equal(NATS.Client.JetStream.Models.StreamConfigStorage.Memory, status.Info.Config.Storage);
                    break;
                case ResourceKind.ObjectStore:
                    var models = (await js.GetStreamAsync($"OBJ_{r.Name}")).Info.Config;
                    Assert.Equal(NATS.Client.JetStream.Models.StreamConfigStorage.Memory, models.Storage);
                    Assert.Equal(table.ObjectStoreConfig(r.Name).NumberOfReplicas, models.NumReplicas);
                    break;
            }
        }
        Assert.Equal(77, (await js.GetStreamAsync(Subjects.WorkStream("green"))).Info.Config.MaxMsgs);
        Assert.Equal(TimeSpan.FromSeconds(11), (await js.GetConsumerAsync(Judging.SamplesStream, Judging.JudgeConsumer)).Info.Config.AckWait);
    }

    [Fact]
    public async Task Starting_services_in_either_order_gives_the_owners_settings()
    {
        // The worker is told other queue limits and the ingress another AckWait: neither owns those, so neither counts.
        var workerSays = With(Shared, new() { ["Topology:MaxMessages"] = "5", ["Topology:AckWait"] = "00:00:09" });
        var ingressSays = With(Shared, new() { ["Topology:MaxMessages"] = "40", ["Topology:AckWait"] = "00:00:02" });

        var workerFirst = await SettingsAfterAsync(workerFirst: true, workerSays, ingressSays);
        var ingressFirst = await SettingsAfterAsync(workerFirst: false, workerSays, ingressSays);

        Assert.Equal((40L, TimeSpan.FromSeconds(9)), workerFirst);
        Assert.Equal(workerFirst, ingressFirst);
    }

    [Fact]
    public async Task Binding_to_a_resource_nobody_created_names_its_owner()
    {
        await using var server = await NatsServer.StartAsync();
        await using var nats = await Ctl.ConnectAsync(server);
        var js = new NatsJSContext(nats);
        var client = new TopologyClient(js, new NatsKVContext(js), new QwenTopology(new TopologyOptions()),
            Microsoft.Extensions.Logging.Abstractions.NullLogger<TopologyClient>.Instance);
        var bucket = await Assert.ThrowsAsync<TopologyMissingException>(() => client.BucketAsync(Rollouts.Bucket, CancellationToken.None));
        Assert.Contains("created by the promoter", bucket.Message);
        var stream = await Assert.ThrowsAsync<TopologyMissingException>(() => client.StreamAsync(Subjects.WorkStream("blue"), CancellationToken.None));
        Assert.Contains("created by the ingress", stream.Message);
        // A worker cannot create its consumer before the ingress created the stream under it.
        var consumer = await Assert.ThrowsAsync<TopologyMissingException>(() => client.EnsureOwnedAsync(Owners.Worker, "blue", CancellationToken.None));
        Assert.Contains("stream QWEN_WORK_BLUE", consumer.Message);
    }

    private static async Task<(long MaxMessages, TimeSpan AckWait)> SettingsAfterAsync(bool workerFirst, Dictionary<string, string?> workerSays, Dictionary<string, string?> ingressSays)
    {
        await using var server = await NatsServer.StartAsync();
        await using var system = new QwenSystem(server);
        await using var nats = await Ctl.ConnectAsync(server);
        var js = new NatsJSContext(nats);
        if (workerFirst)
        {
            await system.StartWorkerAsync("blue", "v1", extra: workerSays);
            await Task.Delay(1500);
            await system.StartIngressAsync(ingressSays);
        }
        else
        {
            await system.StartIngressAsync(ingressSays);
            await system.StartWorkerAsync("blue", "v1", extra: workerSays);
        }
        var table = new QwenTopology(new TopologyOptions());
        await WaitForAsync(js, new NatsKVContext(js), table.Find(ResourceKind.Consumer, Subjects.WorkConsumer, Subjects.WorkStream("blue")));
        var stream = await js.GetStreamAsync(Subjects.WorkStream("blue"));
        var consumer = await js.GetConsumerAsync(Subjects.WorkStream("blue"), Subjects.WorkConsumer);
        return (stream.Info.Config.MaxMsgs, consumer.Info.Config.AckWait);
    }

    private static async Task WaitForAsync(INatsJSContext js, INatsKVContext kv, TopologyResource r)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (true)
        {
            try
            {
                _ = r.Kind switch
                {
                    ResourceKind.Stream => (object)await js.GetStreamAsync(r.Name, cancellationToken: cts.Token),
                    ResourceKind.Consumer => await js.GetConsumerAsync(r.Stream!, r.Name, cts.Token),
                    ResourceKind.ObjectStore => await js.GetStreamAsync($"OBJ_{r.Name}", cancellationToken: cts.Token),
                    _ => await kv.GetStoreAsync(r.Name, cts.Token),
                };
                return;
            }
            catch (NatsJSApiException)
            {
                await Task.Delay(100, cts.Token);
            }
        }
    }

    private static TopologyOptions Options(Dictionary<string, string?> settings)
    {
        var o = new TopologyOptions();
        new ConfigurationBuilder().AddInMemoryCollection(settings).Build().GetSection(TopologyOptions.Section).Bind(o);
        return o;
    }

    private static Dictionary<string, string?> With(Dictionary<string, string?> a, Dictionary<string, string?> b)
    {
        var merged = new Dictionary<string, string?>(a);
        foreach (var (k, v) in b) merged[k] = v;
        return merged;
    }

    private static async Task<IHost> StartAsync(IHost host)
    {
        await host.StartAsync();
        return host;
    }
}
