using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using NATS.Client.JetStream;
using NATS.Client.JetStream.Models;
using QwenNats.Contracts;

namespace QwenNats.ServiceDefaults;

/// <summary>The <c>WorkQueue</c> section: the bounds of each colour's JetStream work queue.</summary>
public sealed record WorkQueueOptions
{
    public const string Section = "WorkQueue";

    /// <summary>Requests queued or in flight per colour; beyond it publishing fails fast (503), never an unbounded queue.</summary>
    public long MaxMessages { get; init; } = 256;

    /// <summary>Work older than this is dropped by the server (nobody waits that long).</summary>
    public TimeSpan MaxAge { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>How long a worker may hold a request without acking or reporting progress before it is redelivered.</summary>
    public TimeSpan AckWait { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Deliveries per request before it is given up (a poison request must not loop forever).</summary>
    public int MaxDeliver { get; init; } = 3;

    /// <summary>File (survives a server restart) or Memory.</summary>
    public string Storage { get; init; } = "file";

    public int Replicas { get; init; } = 1;

    /// <summary>Upper bound of requests in flight across the whole pool (workers pull only when a slot is free).</summary>
    public int MaxAckPending { get; init; } = 1024;
}

/// <summary>
/// Creates (idempotently) the work-queue stream and the shared pull consumer of a colour.
/// Workers pull only when they have a free slot, which is what makes dispatch load-aware;
/// unacked work of a worker that died is redelivered after <see cref="WorkQueueOptions.AckWait"/>.
/// </summary>
public sealed class WorkQueueTopology(INatsJSContext js, IOptions<WorkQueueOptions> options, ILogger<WorkQueueTopology> logger)
{
    public WorkQueueOptions Options => options.Value;

    public async Task<INatsJSStream> EnsureStreamAsync(string colour, CancellationToken ct)
    {
        var o = options.Value;
        var config = new StreamConfig(Subjects.WorkStream(colour), [Subjects.Infer(colour)])
        {
            Description = $"Pending inference work of the {colour} pool",
            Retention = StreamConfigRetention.Workqueue,
            Discard = StreamConfigDiscard.New,
            MaxMsgs = o.MaxMessages,
            MaxAge = o.MaxAge,
            Storage = string.Equals(o.Storage, "memory", StringComparison.OrdinalIgnoreCase) ? StreamConfigStorage.Memory : StreamConfigStorage.File,
            NumReplicas = o.Replicas,
        };
        var stream = await js.CreateOrUpdateStreamAsync(config, ct);
        logger.LogDebug("Work stream {Stream} ready", config.Name);
        return stream;
    }

    public async Task<INatsJSConsumer> EnsureConsumerAsync(string colour, CancellationToken ct)
    {
        await EnsureStreamAsync(colour, ct);
        var o = options.Value;
        var config = new ConsumerConfig(Subjects.WorkConsumer)
        {
            Description = $"Workers of the {colour} pool",
            AckPolicy = ConsumerConfigAckPolicy.Explicit,
            AckWait = o.AckWait,
            MaxDeliver = o.MaxDeliver,
            MaxAckPending = Math.Max(o.MaxAckPending, 1),
            DeliverPolicy = ConsumerConfigDeliverPolicy.All,
        };
        return await js.CreateOrUpdateConsumerAsync(Subjects.WorkStream(colour), config, ct);
    }
}
