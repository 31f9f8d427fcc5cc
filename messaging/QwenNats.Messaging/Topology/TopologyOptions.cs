using System.ComponentModel.DataAnnotations;

namespace QwenNats.Messaging.Topology;

/// <summary>
/// The <c>Topology</c> section: the one place where the settings of every stream, consumer and bucket live.
/// Only the owning service of a resource (see <see cref="QwenTopology"/>) applies them; the others bind.
/// </summary>
public sealed class TopologyOptions
{
    public const string Section = "Topology";

    /// <summary>The colours whose work queues exist (one pool of workers each); empty means
    /// <see cref="Messaging.Colours.Default"/>. Read <see cref="ColourList"/>.</summary>
    public List<string> Colours { get; set; } = [];

    /// <summary>The configured colours, or the default pair, without repeats.</summary>
    public IReadOnlyList<string> ColourList => Colours.Count > 0 ? Colours.Distinct(StringComparer.Ordinal).ToArray() : Messaging.Colours.Default;

    /// <summary>File (survives a server restart) or Memory, for every stream and bucket.</summary>
    [RegularExpression("^([Ff][Ii][Ll][Ee]|[Mm][Ee][Mm][Oo][Rr][Yy])$", ErrorMessage = "Topology:Storage must be file or memory.")]
    public string Storage { get; set; } = "file";

    /// <summary>Copies of every stream and bucket in a NATS cluster (1 on a single server).</summary>
    [Range(1, 5)]
    public int Replicas { get; set; } = 1;

    /// <summary>Requests queued or in flight per colour; beyond it publishing fails fast (503), never an unbounded queue.</summary>
    [Range(1, long.MaxValue)]
    public long MaxMessages { get; set; } = 256;

    /// <summary>Work older than this is dropped by the server (nobody waits that long).</summary>
    public TimeSpan MaxAge { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How long a worker may hold a request without acking or reporting progress before it is
    /// redelivered. Workers report progress every third of it on a timer while a job runs, so this bounds how
    /// long the work of a dead worker waits before another worker takes it.</summary>
    public TimeSpan AckWait { get; set; } = TimeSpan.FromSeconds(6);

    /// <summary>Deliveries per request before it is given up (a poison request must not loop forever).</summary>
    [Range(1, 100)]
    public int MaxDeliver { get; set; } = 3;

    /// <summary>Upper bound of requests in flight across the whole pool (workers pull only when a slot is free).</summary>
    [Range(1, int.MaxValue)]
    public int MaxAckPending { get; set; } = 1024;

    /// <summary>Mirrored (shadow) requests queued per colour; when full, new mirrors are dropped, never live work.</summary>
    [Range(1, long.MaxValue)]
    public long ShadowMaxMessages { get; set; } = 16;

    /// <summary>How long paired samples are kept for the judge.</summary>
    public TimeSpan SamplesMaxAge { get; set; } = TimeSpan.FromDays(1);

    /// <summary>Largest size of the samples stream (oldest samples go first).</summary>
    [Range(1024, long.MaxValue)]
    public long SamplesMaxBytes { get; set; } = 256L * 1024 * 1024;

    /// <summary>How long a sample handed to the judge may stay unacked before it is delivered again.</summary>
    public TimeSpan JudgeAckWait { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long the audit log (rollout events) is kept.</summary>
    public TimeSpan EventsMaxAge { get; set; } = TimeSpan.FromDays(90);

    /// <summary>Idle time after which a session's pin expires (the TTL of the session bucket).</summary>
    public TimeSpan SessionIdle { get; set; } = TimeSpan.FromMinutes(30);

    /// <summary>Revisions of the rollout state kept in its bucket (for inspection).</summary>
    [Range(1, 64)]
    public int RolloutHistory { get; set; } = 16;

    /// <summary>Revisions kept per key of the releases bucket (each colour's assignment history).</summary>
    [Range(1, 64)]
    public int ReleasesHistory { get; set; } = 32;

    /// <summary>Largest total size of the model object store in bytes (-1: no limit but the server's).</summary>
    [Range(-1, long.MaxValue)]
    public long ModelsMaxBytes { get; set; } = -1;

    internal bool InMemory => string.Equals(Storage, "memory", StringComparison.OrdinalIgnoreCase);

    /// <summary>The checks data annotations cannot express; empty when the options are valid.</summary>
    public IEnumerable<string> Problems()
    {
        foreach (var c in Colours)
            if (!Messaging.Colours.IsWellFormed(c))
                yield return $"Topology:Colours: '{c}' is not a colour (lowercase letters, digits and '-', at most 32).";
        foreach (var (name, value) in new[] { ("MaxAge", MaxAge), ("AckWait", AckWait), ("SamplesMaxAge", SamplesMaxAge), ("JudgeAckWait", JudgeAckWait), ("EventsMaxAge", EventsMaxAge), ("SessionIdle", SessionIdle) })
            if (value <= TimeSpan.Zero)
                yield return $"Topology:{name} must be positive.";
    }
}
