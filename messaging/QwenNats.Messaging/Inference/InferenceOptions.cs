namespace QwenNats.Messaging;

/// <summary>Settings of the inference client and the worker liveness registry.</summary>
public sealed record InferenceOptions
{
    /// <summary>Unique id of this client; its reply subjects live under it.</summary>
    public required string InstanceId { get; init; }

    /// <summary>A worker that has not sent a heartbeat for this long is considered gone (and forgotten).</summary>
    public TimeSpan WorkerStaleAfter { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>A call in flight ends with <c>bus_unavailable</c> once the client has been disconnected this long.</summary>
    public TimeSpan BusLostGrace { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Offer live requests to a free worker straight away as a core NATS message (<see cref="Subjects.Direct"/>), and
    /// queue them in JetStream only when no worker takes them; false: every request goes through JetStream.
    /// </summary>
    public bool DirectDelivery { get; init; } = true;

    /// <summary>How long a request offered directly waits for a worker's acceptance before it is queued in JetStream
    /// (a lost offer; the late worker's answer is then ignored).</summary>
    public TimeSpan DirectAcceptTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>The service whose topology (see <see cref="Topology.QwenTopology"/>) this client applies before it serves:
    /// the ingress owns the work queues; null (the promoter's golden runner) only binds.</summary>
    public string? TopologyOwner { get; init; }
}

/// <summary>How a live request reached the worker that answers it.</summary>
public enum InferenceDelivery
{
    /// <summary>Through the colour's JetStream work queue (the offer was refused or not made).</summary>
    Queued,

    /// <summary>A worker took the direct offer (<see cref="Subjects.Direct"/>).</summary>
    Direct,

    /// <summary>Offered directly, then queued in JetStream as a later attempt: the worker that took it went away before
    /// answering, or its acceptance did not come in time.</summary>
    Requeued,
}

/// <summary>Which work queue of a colour a request goes to.</summary>
public enum InferenceQueue
{
    /// <summary>Live traffic: refused at once when the pool has no worker; observed (metrics, logs).</summary>
    Live,

    /// <summary>Mirrored copies on the candidate's lower-priority shadow queue.</summary>
    Shadow,

    /// <summary>Short scoring or golden-set work on the live work queue, not observed as live traffic.</summary>
    Scoring,
}

/// <summary>Hooks for what a host does around live calls (metrics, a log line per request).</summary>
public interface IInferenceObserver
{
    /// <summary>A live request could not be started.</summary>
    void Refused(string colour, InferRequest draft, InferenceStart refusal);

    /// <summary>A live request ended with its final reply.</summary>
    void Finished(InferenceCall call, InferReply final, TimeSpan elapsed);
}
