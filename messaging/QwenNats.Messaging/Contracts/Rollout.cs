using System.Text.Json.Serialization;

namespace QwenNats.Messaging;

/// <summary>Names of the rollout control plane: KV buckets, the audit stream and operator subjects.</summary>
public static class Rollouts
{
    /// <summary>KV bucket holding the rollout state (key <see cref="StateKey"/>) and the promoter lease (<see cref="LeaseKey"/>).</summary>
    public const string Bucket = "qwen_rollout";
    public const string StateKey = "state";
    public const string LeaseKey = "leader";

    /// <summary>KV bucket of session pins; its TTL is the session idle timeout.</summary>
    public const string SessionsBucket = "qwen_sessions";

    /// <summary>KV bucket of WebSocket conversations (history, turn count, the last turn's answer), keyed by session;
    /// the same idle TTL as the session pins, so a client that reconnects to any ingress continues.</summary>
    public const string ConversationsBucket = "qwen_conversations";

    /// <summary>The audit log: every phase change with its cause and actor.</summary>
    public const string EventsStream = "QWEN_EVENTS";
    public const string EventsSubjects = "qwen.events.>";
    public static string Event(string trigger) => $"qwen.events.rollout.{trigger}";

    /// <summary>Triggers of access events in the audit log (a pin set or removed, a tester's colour choice): they
    /// record the rollout's state unchanged, beside the transitions, and are not transitions themselves.</summary>
    public static readonly IReadOnlyList<string> AccessTriggers = [Verbs.Pin, Verbs.Unpin, "colour-choice"];

    /// <summary>Whether an audit event is a transition of the rollout (not an access event).</summary>
    public static bool IsTransition(RolloutEvent e) => !AccessTriggers.Contains(e.Trigger);

    /// <summary>Operator request/reply subjects: <c>qwen.ctl.&lt;verb&gt;</c>.</summary>
    public static string Control(string verb) => $"qwen.ctl.{verb}";
    public const string ControlWildcard = "qwen.ctl.>";

    /// <summary>Where only the leading promoter listens; any promoter's <c>qwen.ctl.&lt;verb&gt;</c> endpoint forwards here
    /// (outside <c>qwen.ctl.&gt;</c>, so the operator API's own subscriptions never answer or swallow it).</summary>
    public static string LeaderControl(string verb) => $"qwen.promoter.leader.{verb}";
    public const string LeaderControlWildcard = "qwen.promoter.leader.>";

    public static class Verbs
    {
        public const string Status = "status";
        public const string Start = "start";
        public const string Promote = "promote";
        public const string Rollback = "rollback";
        public const string Pause = "pause";
        public const string Resume = "resume";
        public const string Abort = "abort";
        public const string SetWeight = "set-weight";
        public const string History = "history";
        public const string Pin = "pin";
        public const string Unpin = "unpin";
        public const string Golden = "golden";
        public const string Release = "release";
        public const string Releases = "releases";
        public const string Deploy = "deploy";
        public const string Compare = "compare";

        public static readonly IReadOnlyList<string> All = [Status, Start, Promote, Rollback, Pause, Resume, Abort, SetWeight, History, Pin, Unpin, Golden, Compare, Release, Releases, Deploy];

        /// <summary>Verbs that run inference on both colours (the golden set, a comparison) and so take longer to answer.</summary>
        public static bool RunsInference(string verb) => verb is Golden or Compare;
    }
}

[JsonConverter(typeof(JsonStringEnumConverter<RolloutPhase>))]
public enum RolloutPhase
{
    Stable,
    Shadow,
    Canary,
    Promoted,
    RolledBack,
    Paused,
}

/// <summary>The rollout state every ingress follows; written by the promoter with compare-and-set.</summary>
public sealed record RolloutState
{
    public RolloutPhase Phase { get; init; } = RolloutPhase.Stable;
    /// <summary>The colour new sessions go to (unless the canary weight sends them to the candidate).</summary>
    public required string Live { get; init; }
    /// <summary>The colour being rolled out (Shadow, Canary, Paused).</summary>
    public string? Candidate { get; init; }
    /// <summary>After a promotion: the previous live colour, kept warm for an instant rollback during the bake window.</summary>
    public string? Standby { get; init; }
    /// <summary>Percent of new sessions pinned to the candidate (Canary).</summary>
    public int Weight { get; init; }
    /// <summary>Canary step, 1-based; 0 before the first step.</summary>
    public int Step { get; init; }
    public string? RolloutId { get; init; }
    public string Reason { get; init; } = "";
    public string Actor { get; init; } = "";
    public DateTimeOffset Since { get; init; }
    /// <summary>The phase a paused rollout resumes to.</summary>
    public RolloutPhase? PausedFrom { get; init; }
    /// <summary>When a promotion's bake window closes.</summary>
    public DateTimeOffset? BakeUntil { get; init; }
    /// <summary>The colour a rollback took out of service.</summary>
    public string? RolledBackColour { get; init; }
    /// <summary>The release the live colour served when the rollout started (and, after a promotion, the candidate's).</summary>
    public ReleaseRef? LiveRelease { get; init; }
    /// <summary>The release of the candidate colour, checked ready when the rollout started.</summary>
    public ReleaseRef? CandidateRelease { get; init; }
    /// <summary>Counts every change; events carry it so the audit log orders with the state.</summary>
    public long Version { get; init; }
    /// <summary>
    /// The <see cref="Version"/> at which the current <see cref="Live"/> colour became live (the initial state, a
    /// promotion, a rollback of a promotion); unchanged by every other change. Null in states written by a promoter
    /// older than the field: ingresses then pin every session in KV (no implicit pins).
    /// </summary>
    public long? LiveVersion { get; init; }
}

/// <summary>One entry of the audit log.</summary>
public sealed record RolloutEvent
{
    public required string Trigger { get; init; }
    public RolloutPhase From { get; init; }
    public RolloutPhase To { get; init; }
    public required RolloutState State { get; init; }
    public string Reason { get; init; } = "";
    public string Actor { get; init; } = "";
    /// <summary><c>operator</c>, <c>timer</c> or <c>judge</c>.</summary>
    public string Cause { get; init; } = "operator";
    public DateTimeOffset At { get; init; }
}

/// <summary>The body of every <c>qwen.ctl.*</c> request; each verb reads the fields it needs. Unknown
/// fields are refused, so a typo never silently does something else.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record ControlRequest
{
    public string? Candidate { get; init; }
    public string? Reason { get; init; }
    public string? Actor { get; init; }
    public bool? Full { get; init; }
    public int? Weight { get; init; }
    public int? Limit { get; init; }
    public string? Session { get; init; }
    public string? Colour { get; init; }
    public int? TtlSeconds { get; init; }
    /// <summary>A release id (release, deploy; start: the release the candidate must serve).</summary>
    public string? Release { get; init; }
    /// <summary>release: the model's SHA-256, already uploaded to the models object store.</summary>
    public string? ModelSha256 { get; init; }
    public PromptProfile? Profile { get; init; }
    public string? Notes { get; init; }
    /// <summary>release: a drill release's injected faults.</summary>
    public FaultOptions? Faults { get; init; }
    /// <summary>deploy: only when the colour has no release yet (a first start); a colour that has one keeps it, and the answer says which.</summary>
    public bool? Bootstrap { get; init; }
    /// <summary>compare: the inputs to send to both colours (default: the golden sets).</summary>
    public IReadOnlyList<GoldenInput>? Inputs { get; init; }
    /// <summary>golden, compare: only this task's inputs (<c>sentiment</c> or <c>chat</c>).</summary>
    public string? Task { get; init; }
    /// <summary>
    /// start, promote, set-weight, pause, resume, rollback, abort: apply only if the rollout state is still at this version
    /// (the one the operator looked at); otherwise refused with <c>version_changed</c>. Without it a promote meant for a
    /// canary step could land after the judge's own promote and skip the next step or close the bake window.
    /// </summary>
    public long? IfVersion { get; init; }
}

/// <summary>The answer of every <c>qwen.ctl.*</c> request.</summary>
public sealed record ControlReply
{
    public bool Ok { get; init; }
    public RolloutState? State { get; init; }
    public RolloutEvent? Event { get; init; }
    public IReadOnlyList<RolloutEvent>? Events { get; init; }
    public SessionPin? Pin { get; init; }
    /// <summary>The judge's latest verdict (status).</summary>
    public Verdict? Verdict { get; init; }
    public GoldenReport? Golden { get; init; }
    /// <summary>compare: both colours' answers side by side with every check.</summary>
    public CompareReport? Compare { get; init; }
    public string? Leader { get; init; }
    /// <summary>release: the release registered (or the one already registered under that id).</summary>
    public Release? Release { get; init; }
    public IReadOnlyList<ReleaseListing>? Releases { get; init; }
    /// <summary>deploy: the assignment written.</summary>
    public Assignment? Assignment { get; init; }
    /// <summary>status, deploy: each colour's pool (assignment, workers, readiness).</summary>
    public IReadOnlyList<PoolStatus>? Pools { get; init; }
    public string? Error { get; init; }
    public string? Code { get; init; }

    public static ControlReply Refused(string code, string error, RolloutState? state = null) => new() { Ok = false, Code = code, Error = error, State = state };
}

/// <summary>A session's colour, shared by every ingress through <see cref="Rollouts.SessionsBucket"/>.</summary>
public sealed record SessionPin
{
    public required string Colour { get; init; }
    public string? RolloutId { get; init; }
    public DateTimeOffset PinnedAt { get; init; }
    /// <summary><c>router</c> (first request of the session) or <c>operator</c> (qwen.ctl.pin).</summary>
    public string By { get; init; } = "router";
    /// <summary>Operator pins end at this time even while the session is active.</summary>
    public DateTimeOffset? ExpiresAt { get; init; }
}

/// <summary>The promoter's lease: only the holder acts.</summary>
public sealed record PromoterLease(string Holder, long ExpiresUnixMs);

/// <summary>Session ids are free text; KV keys are not. A session's key is a hash of its id.</summary>
public static class SessionKeys
{
    public static string For(string sessionId) =>
        "s_" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(sessionId)))[..32];
}
