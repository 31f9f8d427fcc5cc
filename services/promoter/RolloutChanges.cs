using Microsoft.Extensions.Logging;
using QwenNats.Messaging;
using QwenNats.Messaging.Internal;

namespace QwenNats.Promoter;

/// <summary>What <see cref="RolloutChanges"/> needs of the store: the state (compare-and-set) and the audit log.</summary>
public interface IRolloutLog
{
    Task<(RolloutState State, ulong Revision)> GetAsync(CancellationToken ct);
    Task<bool> TryUpdateAsync(RolloutState state, ulong revision, CancellationToken ct);
    /// <summary>Appends one event; idempotent per (rollout, state version).</summary>
    Task AppendAsync(RolloutEvent e, CancellationToken ct);
    Task<IReadOnlyList<RolloutEvent>> HistoryAsync(int limit, CancellationToken ct);
}

/// <summary>
/// Applies one transition of the rollout machine: compare-and-set of the state on its revision, then the
/// audit record. The state is the truth and is written first; the audit append is retried with the
/// <see cref="Retry"/> pipeline for <see cref="PromoterOptions.AuditAppendTimeout"/>. When it still fails,
/// the change stands, the answer says so (<c>ok</c> true, <c>code</c> <c>audit_pending</c>), and the record
/// stays pending in memory and is appended by <see cref="RepairAuditAsync"/> on a later tick. A promoter
/// that takes over compares the last audit record with the state's version and appends a
/// <c>audit-repair</c> record for a change whose record was lost with the previous leader. Appends are
/// de-duplicated per (rollout, version), so a retry never writes a record twice. See docs/reliability.md.
/// </summary>
public sealed class RolloutChanges(IRolloutLog log, PromoterSettings settings, PromoterMetrics metrics, TimeProvider clock, ILogger<RolloutChanges> logger)
{
    public const string AuditPendingCode = "audit_pending";
    public const string RepairTrigger = "audit-repair";
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly List<RolloutEvent> _pending = [];

    /// <summary>Audit records not yet appended, oldest first.</summary>
    public IReadOnlyList<RolloutEvent> Pending { get { lock (_pending) return [.. _pending]; } }

    /// <summary>Applies <paramref name="act"/> (null: nothing to do) to the current state; refusals change nothing.</summary>
    public async Task<ControlReply> ChangeAsync(string verb, Func<Rollout, RolloutOutcome?> act, string cause, string leader, CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            for (var attempt = 0; attempt < 3; attempt++)
            {
                var (state, revision) = await log.GetAsync(ct);
                var outcome = act(new Rollout(state, settings.Options, clock));
                if (outcome is null)
                    return new ControlReply { Ok = true, State = state, Leader = leader };
                if (!outcome.Ok)
                    return ControlReply.Refused(outcome.Code!, outcome.Error!, state) with { Leader = leader };
                if (!await log.TryUpdateAsync(outcome.State, revision, ct))
                {
                    PromoterLog.StateRaced(logger, verb);
                    continue;
                }
                var e = new RolloutEvent
                {
                    Trigger = verb, From = outcome.From, To = outcome.State.Phase, State = outcome.State,
                    Reason = outcome.State.Reason, Actor = outcome.State.Actor, Cause = cause, At = clock.GetUtcNow(),
                };
                metrics.Transitions.WithLabels(verb, cause).Inc();
                PromoterLog.Transition(logger, verb, e.From, e.To, e.State.Live, e.State.Candidate ?? "-", e.State.Weight, e.Actor, e.Reason);
                var reply = new ControlReply { Ok = true, State = outcome.State, Event = e, Leader = leader };
                // The state changed: whatever happens to the audit record now, the answer says so.
                return await AppendOrKeepAsync(e, ct) ? reply : reply with
                {
                    Code = AuditPendingCode,
                    Error = $"The state changed (version {e.State.Version}), but its audit record could not be written yet; the promoter appends it when the audit stream is back.",
                };
            }
            return ControlReply.Refused("conflict", "The rollout state kept changing; nothing was applied. Retry.");
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task<bool> AppendOrKeepAsync(RolloutEvent e, CancellationToken ct)
    {
        using var allowed = new CancellationTokenSource(settings.Options.AuditAppendTimeout, clock);
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(ct, allowed.Token);
        try
        {
            // The pipeline's jittered back-off may draw a first delay up to its cap; capped at a quarter of the time allowed,
            // the append is tried at least twice (a cap as long as the time allowed could leave a single attempt).
            await Retry.Forever(logger, "Appending the audit record", maxDelay: settings.Options.AuditAppendTimeout / 4, clock)
                .ExecuteAsync(async t =>
                {
                    // Records still pending go first: the log keeps the order of the changes.
                    await AppendPendingAsync(t);
                    await log.AppendAsync(e, t);
                }, bounded.Token);
            return true;
        }
        catch (Exception x) when (!ct.IsCancellationRequested)
        {
            PromoterLog.AuditPending(logger, e.Trigger, e.State.Version, x);
            lock (_pending) _pending.Add(e);
            metrics.AuditPending.Set(Pending.Count);
            return false;
        }
    }

    /// <summary>Appends the pending records, oldest first; the first failure stops it (and is thrown), keeping the order.</summary>
    private async Task AppendPendingAsync(CancellationToken ct)
    {
        while (Pending is [var next, ..])
        {
            await log.AppendAsync(next, ct);
            lock (_pending) _pending.RemoveAt(0);
            metrics.AuditPending.Set(Pending.Count);
            PromoterLog.AuditRepaired(logger, next.Trigger, next.State.Version);
        }
    }

    /// <summary>
    /// Forgets the pending records when this promoter stops leading: the next leader records a change whose record is
    /// missing (<see cref="RepairAuditAsync"/> with <c>checkState</c>), and these, appended whenever this promoter leads
    /// again, would come after records written since.
    /// </summary>
    public void StepDown()
    {
        int dropped;
        lock (_pending)
        {
            dropped = _pending.Count;
            _pending.Clear();
        }
        metrics.AuditPending.Set(0);
        if (dropped > 0)
            PromoterLog.AuditPendingDropped(logger, dropped);
    }

    /// <summary>
    /// Appends the pending audit records, oldest first (stops at the first failure, to keep the order), and,
    /// when <paramref name="checkState"/> (a promoter that just took the lead), a repair record for a state
    /// change whose record is missing from the log although nothing is pending here.
    /// </summary>
    public async Task RepairAuditAsync(bool checkState, CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            await AppendPendingAsync(ct);
            if (!checkState)
                return;
            var (state, _) = await log.GetAsync(ct);
            if (state.Version == 0)
                return;
            // The last transition's record. Access events (pins, testers' colour choices) in between carry the state
            // unchanged and may be many: look further back until a transition or the start of the log.
            RolloutEvent? last = null;
            for (var window = 20; ; window *= 10)
            {
                var history = await log.HistoryAsync(window, ct);
                last = history.LastOrDefault(Rollouts.IsTransition);
                if (last is not null || history.Count < window)
                    break;
            }
            if (last is not null && last.State.Version >= state.Version)
                return;
            // Versions go up by one per transition: several missing ones lost their states, only the latest is kept.
            var firstMissing = last is null ? state.Version : last.State.Version + 1;
            var missing = firstMissing == state.Version
                ? $"audit record of state version {state.Version} was missing"
                : $"audit records of state versions {firstMissing} to {state.Version} were missing ({state.Version - firstMissing + 1} changes; only the latest state is kept)";
            var repair = new RolloutEvent
            {
                Trigger = RepairTrigger, From = last?.To ?? state.Phase, To = state.Phase, State = state,
                Reason = $"{missing}; recorded from the state: {state.Reason}",
                Actor = state.Actor, Cause = "promoter", At = clock.GetUtcNow(),
            };
            await log.AppendAsync(repair, ct);
            PromoterLog.AuditRepaired(logger, repair.Trigger, state.Version);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            PromoterLog.AuditRepairFailed(logger, e);
        }
        finally
        {
            _gate.Release();
        }
    }
}
