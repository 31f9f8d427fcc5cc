using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using NATS.Client.Core;
using QwenNats.Messaging;

namespace QwenNats.Tests.Unit;

public sealed class WorkerRegistryTests
{
    private static WorkerHeartbeat Beat(string id, string colour = "blue", bool leaving = false) => new()
    {
        WorkerId = id, Colour = colour, ModelId = "m", ModelSha256 = "0", ProfileVersion = "v1", Slots = 1, Leaving = leaving,
    };

    [Fact]
    public async Task A_worker_whose_heartbeats_stopped_is_forgotten_not_kept_forever()
    {
        await using var nats = new NatsConnection();
        var registry = new WorkerRegistry(nats, Options.Create(new InferenceOptions { InstanceId = "t", WorkerStaleAfter = TimeSpan.FromSeconds(3) }), NullLogger<WorkerRegistry>.Instance);
        var start = DateTimeOffset.UtcNow.AddMinutes(-10);
        for (var i = 0; i < 100; i++)
            registry.Record(Beat($"crashed{i}"), start);
        Assert.Equal(100, registry.Tracked);

        // A live worker's heartbeat, ten minutes later: the crashed ones have been silent far beyond the stale time.
        registry.Record(Beat("alive", "green"), DateTimeOffset.UtcNow);

        Assert.Equal(1, registry.Tracked);
        Assert.False(registry.HasWorkers("blue"));
        Assert.True(registry.HasWorkers("green"));
        Assert.True(registry.IsGone("crashed0"));
        Assert.False(registry.IsGone("alive"));
    }

    [Fact]
    public async Task A_colour_is_offered_requests_directly_only_while_a_serving_fresh_worker_of_it_listens()
    {
        await using var nats = new NatsConnection();
        var registry = new WorkerRegistry(nats, Options.Create(new InferenceOptions { InstanceId = "t", WorkerStaleAfter = TimeSpan.FromSeconds(3) }), NullLogger<WorkerRegistry>.Instance);
        Assert.Equal((false, false), registry.Pool("blue"));

        registry.Record(Beat("one-slot"), DateTimeOffset.UtcNow);
        Assert.Equal((true, false), registry.Pool("blue"));

        // A listening worker that is draining, or of another colour, or silent too long, does not count.
        registry.Record(Beat("draining") with { TakesOffers = true, Serving = false }, DateTimeOffset.UtcNow);
        registry.Record(Beat("green", "green") with { TakesOffers = true }, DateTimeOffset.UtcNow);
        registry.Record(Beat("silent") with { TakesOffers = true }, DateTimeOffset.UtcNow.AddSeconds(-4));
        Assert.Equal((true, false), registry.Pool("blue"));
        Assert.Equal((true, true), registry.Pool("green"));

        registry.Record(Beat("two-slots") with { TakesOffers = true }, DateTimeOffset.UtcNow);
        Assert.Equal((true, true), registry.Pool("blue"));
        registry.Record(Beat("two-slots", leaving: true), DateTimeOffset.UtcNow);
        Assert.Equal((true, false), registry.Pool("blue"));
        Assert.True(registry.HasWorkers("blue"));
    }

    [Fact]
    public async Task A_worker_that_says_it_is_leaving_is_removed_at_once()
    {
        await using var nats = new NatsConnection();
        var registry = new WorkerRegistry(nats, Options.Create(new InferenceOptions { InstanceId = "t" }), NullLogger<WorkerRegistry>.Instance);
        registry.Record(Beat("w1"), DateTimeOffset.UtcNow);
        Assert.True(registry.HasWorkers("blue"));
        registry.Record(Beat("w1", leaving: true), DateTimeOffset.UtcNow);
        Assert.Equal(0, registry.Tracked);
        Assert.False(registry.HasWorkers("blue"));
    }

    [Fact]
    public async Task Prune_keeps_workers_heard_from_within_the_stale_time()
    {
        await using var nats = new NatsConnection();
        var registry = new WorkerRegistry(nats, Options.Create(new InferenceOptions { InstanceId = "t", WorkerStaleAfter = TimeSpan.FromSeconds(3) }), NullLogger<WorkerRegistry>.Instance);
        var now = DateTimeOffset.UtcNow;
        registry.Record(Beat("recent"), now.AddSeconds(-1));
        registry.Record(Beat("old"), now.AddSeconds(-30));
        Assert.Equal(1, registry.Prune(now));
        Assert.Equal(1, registry.Tracked);
    }

    [Fact]
    public async Task Time_the_registry_could_not_hear_does_not_make_a_worker_silent()
    {
        await using var nats = new NatsConnection();
        var registry = new WorkerRegistry(nats, Options.Create(new InferenceOptions { InstanceId = "t", WorkerStaleAfter = TimeSpan.FromSeconds(3) }), NullLogger<WorkerRegistry>.Instance);
        var now = DateTimeOffset.UtcNow;
        // Both beat ten seconds ago; then this process's connection was down for eight and a half seconds.
        registry.Record(Beat("streaming") with { Serving = true }, now.AddSeconds(-10));
        registry.Record(Beat("died-before", "green") with { Serving = true }, now.AddSeconds(-10));
        registry.Deafened(now.AddSeconds(-9));
        // While it is down, nobody grows silent (the bus being down is the client's own answer).
        Assert.False(registry.IsGone("streaming"));
        registry.Heard(now.AddSeconds(-0.5));

        // Heard for 1.5 s of the last 10: the worker streaming an answer is not taken for gone, its pool still serves.
        Assert.False(registry.IsGone("streaming"));
        Assert.True(registry.HasWorkers("blue"));
        Assert.Equal(2, registry.Tracked);

        // A worker that was silent for longer than the stale time while the registry could hear is gone all the same.
        registry.Record(Beat("silent-while-heard", "red"), now.AddSeconds(-13));
        Assert.True(registry.IsGone("silent-while-heard"));
        Assert.False(registry.HasWorkers("red"));
    }
}
