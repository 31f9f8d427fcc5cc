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
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await using var nats = await Ctl.ConnectAsync(server);
        var js = new NatsJSContext(nats);
        var client = new TopologyClient(js, new NatsKVContext(js), new QwenTopology(new TopologyOptions { Storage = storage }), NullLogger<TopologyClient>.Instance);
        try
        {
            await client.EnsureOwnedAsync(owner, null, CancellationToken.None);
        }
        catch (Exception e)
        {
            // What nats-server said meanwhile (slow internal subscriptions, read loops, JetStream warnings) and the state
            // of this process's thread pool tell a server that did not answer from a client that did not read the answer.
            throw new InvalidOperationException(
                $"Applying the {owner}'s topology ({storage}) failed after {clock.ElapsedMilliseconds} ms; this process's thread pool: "
                + $"{ThreadPool.ThreadCount} threads, {ThreadPool.PendingWorkItemCount} items waiting, {ThreadPool.CompletedWorkItemCount} done; "
                + $"nats-server's log:\n{string.Join('\n', server.Log.TakeLast(40))}", e);
        }
    }
}

/// <summary>
/// For control-plane tests without an ingress: a real blue and green worker (tiny model, in-process) so the promoter's
/// readiness gates (start, promote and rollback need a serving pool) see both pools.
/// </summary>
public static class Pools
{
    public static async Task<QwenSystem> StartWorkersAsync(NatsServer server, string storage = "memory")
    {
        // Workers bind to the ingress's work queues: create them as the ingress would.
        await TopologySetup.EnsureAsync(server, QwenNats.Messaging.Topology.Owners.Ingress, storage);
        var system = new QwenSystem(server);
        var extra = new Dictionary<string, string?> { ["Topology:Storage"] = storage };
        await system.StartWorkerAsync("blue", "v1", extra: extra);
        await system.StartWorkerAsync("green", "v2", extra: extra);
        return system;
    }

    /// <summary>Until the leading promoter sees a serving worker in every pool.</summary>
    public static async Task WaitReadyAsync(NATS.Client.Core.NatsConnection op, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(30));
        while (true)
        {
            var status = await Ctl.SendAsync(op, "status", ct: cts.Token);
            if (status.Ok && status.Pools is { Count: > 0 } pools && pools.All(p => p.Ready))
                return;
            await Task.Delay(100, cts.Token);
        }
    }
}
