using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using NATS.Client.JetStream;
using NATS.Client.JetStream.Models;
using QwenNats.Messaging;

namespace QwenNats.Messaging;

/// <summary>The <c>WorkQueue</c> section: the bounds of each colour's JetStream work queue.</summary>
public sealed record WorkQueueOptions
{
    public const string Section = "WorkQueue";

    /// <summary>Requests queued or in flight per colour; beyond it publishing fails fast (503), never an unbounded queue.</summary>
    public long MaxMessages { get; init; } = 256;

    /// <summary>Work older than this is dropped by the server (nobody waits that long).</summary>
    public TimeSpan MaxAge { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>How long a worker may hold a request without acking or reporting progress before it is
    /// redelivered. Workers report progress every third of it on a timer while a job runs, so this bounds how
    /// long the work of a dead worker waits before another worker takes it.</summary>
    public TimeSpan AckWait { get; init; } = TimeSpan.FromSeconds(6);

    /// <summary>Deliveries per request before it is given up (a poison request must not loop forever).</summary>
    public int MaxDeliver { get; init; } = 3;

    /// <summary>File (survives a server restart) or Memory.</summary>
    public string Storage { get; init; } = "file";

    public int Replicas { get; init; } = 1;

    /// <summary>Mirrored (shadow) requests queued per colour; when full, new mirrors are dropped, never live work.</summary>
    public long ShadowMaxMessages { get; init; } = 16;

    /// <summary>How long paired samples are kept for the judge.</summary>
    public TimeSpan SamplesMaxAge { get; init; } = TimeSpan.FromDays(1);

    /// <summary>Largest size of the samples stream (oldest samples go first).</summary>
    public long SamplesMaxBytes { get; init; } = 256L * 1024 * 1024;

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
        await js.CreateOrUpdateStreamAsync(config with
        {
            Name = Judging.ShadowStream(colour),
            Subjects = [Subjects.Shadow(colour)],
            Description = $"Mirrored (shadow) work for the {colour} pool",
            MaxMsgs = o.ShadowMaxMessages,
        }, ct);
        logger.LogDebug("Work streams of {Colour} ready", colour);
        return stream;
    }

    /// <summary>The stream of paired samples for the judge (bounded by age and size).</summary>
    public Task<INatsJSStream> EnsureSamplesStreamAsync(CancellationToken ct) =>
        js.CreateOrUpdateStreamAsync(new StreamConfig(Judging.SamplesStream, [Judging.SamplesSubjects])
        {
            Description = "Live and candidate answers to the same requests, for the judge",
            MaxAge = options.Value.SamplesMaxAge,
            MaxBytes = options.Value.SamplesMaxBytes,
            Storage = string.Equals(options.Value.Storage, "memory", StringComparison.OrdinalIgnoreCase) ? StreamConfigStorage.Memory : StreamConfigStorage.File,
            NumReplicas = options.Value.Replicas,
        }, ct).AsTask();

    /// <summary>The pool's consumers of live work and of mirrored work.</summary>
    public async Task<(INatsJSConsumer Live, INatsJSConsumer Shadow)> EnsureConsumersAsync(string colour, CancellationToken ct)
    {
        await EnsureStreamAsync(colour, ct);
        return (await EnsureConsumerAsync(Subjects.WorkStream(colour), colour, ct), await EnsureConsumerAsync(Judging.ShadowStream(colour), colour, ct));
    }

    private async Task<INatsJSConsumer> EnsureConsumerAsync(string stream, string colour, CancellationToken ct)
    {
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
        return await js.CreateOrUpdateConsumerAsync(stream, config, ct);
    }
}
