namespace QwenNats.Promoter;

/// <summary>The <c>Promoter</c> section.</summary>
public sealed record PromoterOptions
{
    public const string Section = "Promoter";

    /// <summary>The live colour written when no rollout state exists yet.</summary>
    public string InitialLive { get; init; } = Messaging.Colours.Blue;

    /// <summary>Colours a rollout may name: those of the topology (<c>Topology:Colours</c>), set when the options are built.</summary>
    public IReadOnlyList<string> Colours { get; internal set; } = Messaging.Colours.Default;

    /// <summary>Canary weights (percent of new sessions), one per step.</summary>
    public IReadOnlyList<int> CanarySteps { get; init; } = [10, 25, 50];

    /// <summary>After a promotion, how long the old colour stays warm and its pinned sessions finish there.</summary>
    public TimeSpan BakeWindow { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>How long a rollback stays visible as <c>RolledBack</c> before the phase returns to <c>Stable</c>.</summary>
    public TimeSpan RolledBackHold { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The leader lease's lifetime; a standby promoter takes over within about this long after the leader dies.</summary>
    public TimeSpan LeaseTtl { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>How often the leader checks timers (bake window, rollback hold).</summary>
    public TimeSpan TickInterval { get; init; } = TimeSpan.FromMilliseconds(250);

    public int HistoryDefault { get; init; } = 20;
    public int HistoryMax { get; init; } = 500;

    /// <summary>Longest free-text field (reason, actor, colour, session) of an operator command.</summary>
    public int MaxTextChars { get; init; } = 500;

    /// <summary>Longest operator pin.</summary>
    public TimeSpan MaxPinTtl { get; init; } = TimeSpan.FromHours(24);

    /// <summary>deploy/rollout-policy.json: when set, its canary steps and bake window replace the ones above,
    /// and its inconclusive timeout and golden tolerance apply.</summary>
    public string PolicyPath { get; init; } = "";

    /// <summary>deploy/golden/sentiment.jsonl: run against both colours before a rollout leaves Shadow (empty = skip).</summary>
    public string GoldenPath { get; init; } = "";

    /// <summary>deploy/golden/chat.jsonl: everyday chat prompts, run with the sentiment set (empty = sentiment only).</summary>
    public string GoldenChatPath { get; init; } = "";

    /// <summary>How long a golden run (or a comparison) may take; both colours run at once, on their low-priority queues.</summary>
    public TimeSpan GoldenTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>While leading, compute in the background (low priority) the golden result of every colour whose release has none stored,
    /// so the gate finds both stored; off: results are computed by the gate and by <c>golden</c> only.</summary>
    public bool GoldenPrecompute { get; init; } = true;

    /// <summary>Golden chat answers are cut at this many tokens unless a prompt says otherwise (its <c>max_tokens</c>).</summary>
    public int GoldenChatMaxTokens { get; init; } = 48;

    /// <summary>Golden or comparison inputs in flight per colour (its shadow queue is small and shared with mirrored traffic).</summary>
    public int GoldenInFlight { get; init; } = 4;

    /// <summary>Stored golden results keep each chat answer's first this many characters (the checks read the whole answer).</summary>
    public int GoldenStoredTextChars { get; init; } = 1000;

    /// <summary>At most this many inputs per <c>compare</c> request.</summary>
    public int CompareMaxInputs { get; init; } = 200;

    /// <summary>Longest input text a <c>compare</c> request may send.</summary>
    public int CompareMaxInputChars { get; init; } = 4000;

    /// <summary>A <c>compare</c> reply is kept under this many bytes (below the server's <c>max_payload</c>, 1 MB by default) by cutting texts.</summary>
    public int CompareMaxReplyBytes { get; init; } = 512 * 1024;

    /// <summary>Answer texts in a <c>compare</c> reply are cut to this many characters (fewer when the reply would be too big).</summary>
    public int CompareMaxAnswerChars { get; init; } = 600;

    /// <summary>Let the judge's verdicts drive the rollout (operators can always override).</summary>
    public bool Automatic { get; init; } = true;

    /// <summary>How long a state change retries appending its audit record before answering <c>audit_pending</c> (the record is appended later).</summary>
    public TimeSpan AuditAppendTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long a command that depends on which pools have serving workers (promote, rollback, set-weight, a deploy to
    /// the live colour) waits for this promoter to have heard every worker once (one worker stale window after it
    /// started listening, or after a reconnect) before it answers <c>workers_unknown</c>. Keep it under the callers'
    /// request timeout (5 s for qwenctl).
    /// </summary>
    public TimeSpan PoolsSettleWait { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>How long an operator's pin (<c>qwen.ctl.pin</c>) lasts when the request gives no <c>ttl_seconds</c>.</summary>
    public TimeSpan DefaultPinTtl { get; init; } = TimeSpan.FromMinutes(30);
}
