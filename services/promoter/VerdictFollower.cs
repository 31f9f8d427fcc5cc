using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using QwenNats.Messaging;

namespace QwenNats.Promoter;

/// <summary>
/// While this promoter leads: verdicts drive the machine (pass advances, after the golden set when leaving
/// Shadow; fail rolls back at once; inconclusive holds and, after the policy's timeout, pauses for an
/// operator), and the silence watchdog pauses an automatic rollout the judge stopped judging.
/// </summary>
public sealed class VerdictFollower(RolloutStore store, RolloutChanges changes, GoldenService golden, LeaderLease lease, PromoterSettings settings,
    PromoterMetrics metrics, TimeProvider clock, ILogger<VerdictFollower> logger)
{
    // The last verdict received for a rollout, and when leadership began (the baseline before any verdict).
    private (string? RolloutId, DateTimeOffset At) _lastVerdict;
    private DateTimeOffset _leadingSince;
    // When the golden gate of a rollout last made progress (fewer inputs not run) while inconclusive: it holds the
    // rollout in Shadow while attempts make progress, and pauses it once they have made none for the policy's timeout.
    private (string? RolloutId, DateTimeOffset At, int NotRun) _goldenInconclusive;
    private volatile bool _acting;

    private PromoterOptions O => settings.Options;

    /// <summary>Follows verdicts until <paramref name="ct"/> (the end of leadership).</summary>
    public async Task FollowAsync(INatsSub<Verdict> sub, CancellationToken ct)
    {
        _leadingSince = clock.GetUtcNow();
        await using (sub)
        {
            try
            {
                await foreach (var msg in sub.Msgs.ReadAllAsync(ct))
                {
                    if (msg.Data is not { } v) continue;
                    _lastVerdict = (v.RolloutId, clock.GetUtcNow());
                    if (!O.Automatic) continue;
                    try
                    {
                        // Acting on a verdict can take long (the golden set runs before leaving Shadow); verdicts
                        // queue meanwhile, and the silence watchdog must not count that time as the judge's.
                        _acting = true;
                        await OnVerdictAsync(v, sub.Msgs, ct);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        PromoterLog.VerdictFailed(logger, e);
                    }
                    finally
                    {
                        _acting = false;
                        _lastVerdict = (v.RolloutId, clock.GetUtcNow());
                    }
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
            }
        }
    }

    private Task<ControlReply> ChangeAsync(string verb, Func<Rollout, RolloutOutcome?> act, string cause, CancellationToken ct) =>
        changes.ChangeAsync(verb, act, cause, lease.Holder, ct);

    private async Task OnVerdictAsync(Verdict v, System.Threading.Channels.ChannelReader<NatsMsg<Verdict>> queued, CancellationToken ct)
    {
        var (state, _) = await store.GetAsync(ct);
        if (!IsFor(state, v))
            return;
        var policy = settings.Policy;
        switch (v.Outcome)
        {
            case Judging.Outcomes.Pass:
                if (state.Phase == RolloutPhase.Shadow && settings.Golden is { Count: > 0 } inputs && state.Candidate is { } candidate)
                {
                    var gate = await golden.GateAsync(inputs, state.Live, candidate, ct);
                    if (gate.Failed)
                    {
                        await ChangeAsync("rollback", r => IsFor(r.State, v) ? r.Rollback(gate.Reason, "judge") : null, "judge", ct);
                        return;
                    }
                    if (!gate.Passed)
                    {
                        // Never a silent pass: hold in Shadow (the next pass verdict tries again, keeping the answers
                        // already collected) and, once attempts have made no progress for the policy's inconclusive
                        // timeout, pause for an operator.
                        var now = clock.GetUtcNow();
                        if (_goldenInconclusive.RolloutId != state.RolloutId || gate.NotRun < _goldenInconclusive.NotRun)
                            _goldenInconclusive = (state.RolloutId, now, gate.NotRun);
                        PromoterLog.GoldenInconclusive(logger, state.RolloutId!, gate.Reason);
                        if (now - _goldenInconclusive.At >= policy.InconclusivePauseAfter)
                            await ChangeAsync("pause", r => IsFor(r.State, v)
                                ? r.Pause($"inconclusive, no progress for {policy.InconclusivePauseAfter}: {gate.Reason}", "judge") : null, "judge", ct);
                        return;
                    }
                    // The gate took a while, and the judge went on meanwhile. A pass is provisional: a fail it sent since
                    // for this step rolls back, and a step no longer passing is not promoted on the old pass.
                    var latest = v;
                    while (queued.TryRead(out var next))
                    {
                        if (next.Data is not { } n) continue;
                        _lastVerdict = (n.RolloutId, clock.GetUtcNow());
                        if (n.RolloutId != v.RolloutId || n.Phase != v.Phase || n.Step != v.Step) continue;
                        if (n.Outcome == Judging.Outcomes.Fail)
                        {
                            await ChangeAsync("rollback", r => IsFor(r.State, n) ? r.Rollback($"judge fail: {n.Reason}", "judge") : null, "judge", ct);
                            return;
                        }
                        latest = n;
                    }
                    if (latest.Outcome != Judging.Outcomes.Pass)
                    {
                        PromoterLog.PassWithdrawn(logger, state.RolloutId!, latest.Outcome, latest.Reason);
                        return;
                    }
                    v = latest with { Reason = $"{latest.Reason}; {gate.Reason}" };
                }
                await ChangeAsync("promote", r => IsFor(r.State, v) ? r.Promote(false, $"judge pass: {v.Reason}", "judge") : null, "judge", ct);
                break;
            case Judging.Outcomes.Fail:
                await ChangeAsync("rollback", r => IsFor(r.State, v) ? r.Rollback($"judge fail: {v.Reason}", "judge") : null, "judge", ct);
                break;
            case Judging.Outcomes.Inconclusive when clock.GetUtcNow() - state.Since >= policy.InconclusivePauseAfter:
                await ChangeAsync("pause", r => IsFor(r.State, v) ? r.Pause($"inconclusive for {policy.InconclusivePauseAfter}: {v.Reason}", "judge") : null, "judge", ct);
                break;
        }
    }

    private static bool IsFor(RolloutState s, Verdict v) =>
        s.RolloutId == v.RolloutId && s.Step == v.Step && s.Phase == v.Phase && s.Phase is RolloutPhase.Shadow or RolloutPhase.Canary;

    /// <summary>
    /// The judge publishes a verdict every evaluation interval while a rollout is judged. When none has
    /// arrived for the policy's <c>no_verdict_pause_after</c> (judge down, partitioned, stuck), an automatic
    /// rollout is paused with that reason rather than left running unjudged; the gauge lets an alert fire.
    /// </summary>
    public async Task WatchAsync(RolloutState state, CancellationToken ct)
    {
        if (state.Phase is not (RolloutPhase.Shadow or RolloutPhase.Canary) || state.RolloutId is null || _acting)
        {
            metrics.SinceVerdict.Set(0);
            return;
        }
        var now = clock.GetUtcNow();
        var heard = _lastVerdict.RolloutId == state.RolloutId ? _lastVerdict.At : DateTimeOffset.MinValue;
        var since = new[] { heard, state.Since, _leadingSince }.Max();
        var silent = now - since;
        metrics.SinceVerdict.Set(Math.Round(silent.TotalSeconds, 1));
        var policy = settings.Policy;
        if (O.Automatic && silent >= policy.NoVerdictPauseAfter)
        {
            var reason = $"no verdict from the judge for {policy.NoVerdictPauseAfter} (is the judge running and connected?); paused rather than left unjudged";
            await ChangeAsync("pause", r => r.State.RolloutId == state.RolloutId && r.State.Phase == state.Phase && r.State.Step == state.Step
                ? r.Pause(reason, "promoter") : null, "timer", ct);
        }
    }
}
