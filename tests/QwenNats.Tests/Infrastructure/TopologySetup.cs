using Microsoft.Extensions.Logging.Abstractions;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using QwenNats.Messaging.Topology;

namespace QwenNats.Tests.Infrastructure;

/// <summary>For tests that play a service's part themselves (publishing samples as an ingress would).</summary>
public static class TopologySetup
{
    public static async Task EnsureAsync(NatsServer server, string owner, string storage)
    {
        await using var nats = await Ctl.ConnectAsync(server);
        var js = new NatsJSContext(nats);
        var client = new TopologyClient(js, new NatsKVContext(js), new QwenTopology(new TopologyOptions { Storage = storage }), NullLogger<TopologyClient>.Instance);
        await client.EnsureOwnedAsync(owner, null, CancellationToken.None);
    }
}
