using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using QwenNats.Messaging;
using QwenNats.Messaging.Control;
using QwenNats.Messaging.Internal;

namespace QwenNats.Promoter;

/// <summary>
/// The promoter's loop: holds the leader lease (<see cref="LeaderLease"/>); while it does, it serves the
/// operator API (<see cref="ControlCommands"/>; every promoter's <see cref="ControlEndpoints"/> forwards to the leader),
/// follows the judge's verdicts (<see cref="VerdictFollower"/>), runs the rollout's timers and repairs the
/// audit log (<see cref="RolloutChanges"/>). A standby forwards control requests to the leader and answers
/// <c>no_leader</c> in the moment between a leader's death and its successor's lease. Every change
/// is a compare-and-set on the state's revision, so two promoters can never both apply a transition, and a
/// standby takes over within about one lease lifetime after the leader dies.
/// </summary>
public sealed class PromoterService(
    NatsConnection nats,
    RolloutStore store,
    ReleaseCatalog releases,
    LeaderLease lease,
    RolloutChanges changes,
    ControlCommands commands,
    VerdictFollower verdicts,
    GoldenService golden,
    PromoterSettings settings,
    ILogger<PromoterService> logger) : BackgroundService, IControlHandler
{
    private CancellationTokenSource? _leading;
    private Task _following = Task.CompletedTask;

    public string Id => lease.Holder;
    public bool IsLeader => _leading is { IsCancellationRequested: false };

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await Retry.UntilDoneAsync(logger, "Opening the rollout store", async ct =>
            {
                await nats.ConnectAsync();
                await store.EnsureAsync(ct);
                await releases.EnsureAsync(ct);
            }, stoppingToken);

            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    bool leader;
                    try
                    {
                        leader = await lease.HoldAsync(stoppingToken);
                    }
                    catch (Exception e) when (e is not OperationCanceledException && IsLeader && !lease.SurelyHeld)
                    {
                        // Not renewed for a whole lifetime: a standby may hold the lease by now, so this one stops acting
                        // as the leader until it wins the lease again.
                        await StepDownAsync($"lease not renewed: {e.Message}");
                        throw;
                    }
                    if (leader && !IsLeader) await LeadAsync(stoppingToken);
                    if (!leader && IsLeader) await StepDownAsync("lease lost");
                    if (leader) await TickAsync(stoppingToken);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    PromoterLog.LoopError(logger, e);
                }
                await Task.Delay(settings.Options.TickInterval, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        // The leading token is linked to the stopping one, so IsLeader is already false here: what counts is whether
        // this promoter led, and whether it holds the lease (released, so a standby takes over at once, not a lifetime later).
        if (_leading is not null)
            await StepDownAsync(null);
        if (lease.Held)
            await lease.ReleaseAsync();
    }

    /// <summary>The queue group of the leader's listener: were two promoters to take themselves for the leader for a moment,
    /// each forwarded command still reaches one of them only.</summary>
    private const string LeaderQueue = "leader";

    private async Task LeadAsync(CancellationToken ct)
    {
        _leading = CancellationTokenSource.CreateLinkedTokenSource(ct);
        _following = Task.CompletedTask;
        var token = _leading.Token;
        try
        {
            // A change whose audit record the previous leader could not write is recorded before anything else.
            await changes.RepairAuditAsync(checkState: true, token);
            var sub = await nats.SubscribeCoreAsync<Verdict>(Judging.VerdictSubject, cancellationToken: token);
            _following = verdicts.FollowAsync(sub, token);
            // Only the leader listens here; every promoter's qwen.ctl.<verb> endpoint (ControlEndpoints) answers itself
            // when it leads and forwards here when it does not.
            var control = await nats.SubscribeCoreAsync<byte[]>(Rollouts.LeaderControlWildcard, LeaderQueue, cancellationToken: token);
            _following = Task.WhenAll(_following, ServeLeaderAsync(control, token));
            var (state, _) = await store.GetAsync(ct);
            PromoterLog.Leads(logger, Id, state.Phase, state.Live, state.Candidate ?? "-");
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            // Half a leader (no verdicts followed, or no forwarded commands served) must not stay one: the next tick tries again.
            await StepDownAsync($"could not start leading: {e.Message}");
            throw;
        }
    }

    /// <summary>Commands forwarded to the leader by a standby's endpoint.</summary>
    private async Task ServeLeaderAsync(INatsSub<byte[]> sub, CancellationToken ct)
    {
        await using (sub)
        {
            try
            {
                // Each command on its own, as the leader's own endpoints run them: a long one (a golden run, a comparison)
                // does not hold up a promote or a rollback forwarded behind it. Changes of state are serialized where
                // they are made (RolloutChanges, compare-and-set on the stored state).
                await foreach (var msg in sub.Msgs.ReadAllAsync(ct))
                {
                    if (msg.ReplyTo is { } replyTo)
                        _ = AnswerForwardedAsync(msg.Subject[(Rollouts.LeaderControlWildcard.Length - 1)..], msg.Data, replyTo, ct);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
            }
        }
    }

    private async Task AnswerForwardedAsync(string verb, byte[]? body, string replyTo, CancellationToken ct)
    {
        try
        {
            var reply = await HandleAsync(verb, body, ct);
            await nats.PublishAsync(replyTo, reply, cancellationToken: ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // Leadership ended: the standby's request times out and it answers no_leader.
        }
        catch (Exception e)
        {
            PromoterLog.ControlFailed(logger, verb, e);
        }
    }

    /// <summary>One operator command (the leader's; <see cref="ControlEndpoints"/> forwards a standby's here).</summary>
    public async Task<ControlReply> HandleAsync(string verb, byte[]? body, CancellationToken ct)
    {
        try
        {
            return await commands.HandleAsync(verb, body, ct);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            PromoterLog.ControlFailed(logger, verb, e);
            return ControlReply.Refused("internal_error", "The promoter failed to handle the command; check `status` and `history` for what was applied.");
        }
    }

    /// <summary>A command forwarded by a standby waits for the leader this long (a golden run or a comparison takes longest).</summary>
    public TimeSpan ForwardTimeout(string verb) =>
        Rollouts.Verbs.RunsInference(verb) ? settings.Options.GoldenTimeout + TimeSpan.FromSeconds(5) : TimeSpan.FromSeconds(30);

    /// <param name="why">Why it steps down; null: the promoter is shutting down (not a warning).</param>
    private async Task StepDownAsync(string? why)
    {
        if (why is null)
            PromoterLog.LeadEnds(logger, Id);
        else
            PromoterLog.StepsDown(logger, Id, why);
        changes.StepDown();
        if (_leading is null) return;
        await _leading.CancelAsync();
        try { await _following; } catch (Exception e) when (e is OperationCanceledException or NatsException) { }
        _leading.Dispose();
        _leading = null;
    }

    private async Task TickAsync(CancellationToken ct)
    {
        if (changes.Pending.Count > 0)
            await changes.RepairAuditAsync(checkState: false, ct);
        var (state, _) = await store.GetAsync(ct);
        if (state.Phase is RolloutPhase.Promoted or RolloutPhase.RolledBack)
            await changes.ChangeAsync("finish", r => r.FinishIfDue(), "timer", Id, ct);
        await verdicts.WatchAsync(state, ct);
        if (_leading is { } leading)
            golden.Precompute(settings.Options.Colours, state.Phase is RolloutPhase.Shadow or RolloutPhase.Canary or RolloutPhase.Paused ? state.Candidate : null, leading.Token);
    }
}
