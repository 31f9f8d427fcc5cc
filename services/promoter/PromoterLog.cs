using Microsoft.Extensions.Logging;
using QwenNats.Messaging;

namespace QwenNats.Promoter;

/// <summary>Source-generated log messages of the promoter (event ids 5000-5999).</summary>
internal static partial class PromoterLog
{
    [LoggerMessage(EventId = 5000, Level = LogLevel.Information, Message = "Promoter {Id} leads: phase {Phase}, live {Live}, candidate {Candidate}")]
    public static partial void Leads(ILogger logger, string id, RolloutPhase phase, string live, string candidate);

    [LoggerMessage(EventId = 5001, Level = LogLevel.Warning, Message = "Promoter {Id} steps down: {Why}")]
    public static partial void StepsDown(ILogger logger, string id, string why);

    [LoggerMessage(EventId = 5005, Level = LogLevel.Information, Message = "Promoter {Id} stops leading: shutting down (the lease is released for a standby)")]
    public static partial void LeadEnds(ILogger logger, string id);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Warning, Message = "Promoter loop error")]
    public static partial void LoopError(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 5003, Level = LogLevel.Debug, Message = "Lease not released")]
    public static partial void LeaseNotReleased(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 5010, Level = LogLevel.Warning, Message = "The rollout state changed while applying {Verb}; re-reading")]
    public static partial void StateRaced(ILogger logger, string verb);

    [LoggerMessage(EventId = 5011, Level = LogLevel.Information, Message = "Rollout {Verb}: {From} -> {To} (live {Live}, candidate {Candidate}, weight {Weight}%) by {Actor}: {Reason}")]
    public static partial void Transition(ILogger logger, string verb, RolloutPhase from, RolloutPhase to, string live, string candidate, int weight, string actor, string reason);

    [LoggerMessage(EventId = 5012, Level = LogLevel.Error, Message = "Rollout {Verb} changed the state to version {Version}, but its audit record could not be appended; it stays pending and is appended when the audit stream takes it")]
    public static partial void AuditPending(ILogger logger, string verb, long version, Exception exception);

    [LoggerMessage(EventId = 5013, Level = LogLevel.Information, Message = "Audit log repaired: appended the record of {Trigger} (state version {Version})")]
    public static partial void AuditRepaired(ILogger logger, string trigger, long version);

    [LoggerMessage(EventId = 5014, Level = LogLevel.Warning, Message = "Audit log repair failed; retrying on the next tick")]
    public static partial void AuditRepairFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 5015, Level = LogLevel.Warning, Message = "Stopped leading with {Count} audit records not yet appended; the next leader records the missing change from the state (audit-repair)")]
    public static partial void AuditPendingDropped(ILogger logger, int count);

    [LoggerMessage(EventId = 5020, Level = LogLevel.Information, Message = "Operator pinned a session to {Colour} for {Ttl}")]
    public static partial void Pinned(ILogger logger, string colour, TimeSpan ttl);

    [LoggerMessage(EventId = 5034, Level = LogLevel.Error, Message = "Acting on a verdict failed")]
    public static partial void VerdictFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 5032, Level = LogLevel.Warning, Message = "Rollout {RolloutId} stays in Shadow: {Reason}")]
    public static partial void GoldenInconclusive(ILogger logger, string rolloutId, string reason);

    [LoggerMessage(EventId = 5033, Level = LogLevel.Warning, Message = "Rollout {RolloutId} stays in Shadow: the golden set passed, but the judge's verdict for the step is now {Outcome} ({Reason})")]
    public static partial void PassWithdrawn(ILogger logger, string rolloutId, string outcome, string reason);

    [LoggerMessage(EventId = 5004, Level = LogLevel.Error, Message = "Control command {Verb} failed")]
    public static partial void ControlFailed(ILogger logger, string verb, Exception exception);

    [LoggerMessage(EventId = 5030, Level = LogLevel.Information, Message = "Release {Release} (model {Sha}) registered by {Actor}")]
    public static partial void Registered(ILogger logger, string release, string sha, string actor);

    [LoggerMessage(EventId = 5031, Level = LogLevel.Information, Message = "Release {Release} deployed to {Colour} by {Actor}")]
    public static partial void Deployed(ILogger logger, string release, string colour, string actor);
}
