using System.Text.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using NATS.Client.Core;
using NATS.Client.KeyValueStore;
using QwenNats.Messaging;
using QwenNats.Messaging.Control;
using QwenNats.ServiceDefaults;

namespace QwenNats.Promoter;

/// <summary>
/// Holds the leader lease (KV <c>qwen_rollout</c>/<c>leader</c>); while it does, it answers the operator API
/// on <c>qwen.ctl.*</c> and runs the rollout's timers. Every change is a compare-and-set on the state's
/// revision, so two promoters can never both apply a transition, and a standby takes over within about
/// one lease lifetime after the leader dies.
/// </summary>
public sealed class PromoterService(
    NatsConnection nats,
    RolloutStore store,
    GoldenRunner golden,
    ServiceIdentity identity,
    IOptions<PromoterOptions> options,
    TimeProvider clock,
    QwenMetrics metrics,
    ILogger<PromoterService> logger) : BackgroundService, IControlHandler
{
    private readonly Prometheus.Counter _transitions = metrics.Factory.CreateCounter("qwen_rollout_transitions_total", "Rollout phase changes, by trigger and cause (operator, judge, timer).", ["trigger", "cause"]);
    private readonly Prometheus.Gauge _leader = metrics.Factory.CreateGauge("qwen_promoter_leader", "1 while this promoter holds the lease.");
    private readonly Prometheus.Gauge _sinceVerdict = metrics.Factory.CreateGauge("qwen_rollout_seconds_since_verdict",
        "While a rollout is in Shadow or Canary: seconds since the leading promoter last received a verdict for it (0 otherwise).");

    private readonly RolloutPolicy _policy = RolloutPolicy.Load(options.Value.PolicyPath);
    private readonly PromoterOptions _o = string.IsNullOrWhiteSpace(options.Value.PolicyPath)
        ? options.Value
        : options.Value with { CanarySteps = RolloutPolicy.Load(options.Value.PolicyPath).CanarySteps, BakeWindow = RolloutPolicy.Load(options.Value.PolicyPath).BakeWindow };
    private readonly IReadOnlyList<GoldenCase>? _golden = string.IsNullOrWhiteSpace(options.Value.GoldenPath) ? null : GoldenRunner.Load(options.Value.GoldenPath);
    private readonly SemaphoreSlim _gate = new(1, 1);
    private CancellationTokenSource? _leading;
    private Task _serving = Task.CompletedTask;
    private DateTimeOffset _leaseRenewedAt;
    // The last verdict received for a rollout, and when leadership began (the baseline before any verdict).
    private (string? RolloutId, DateTimeOffset At) _lastVerdict;
    private DateTimeOffset _leadingSince;
    private volatile bool _acting;

    public string Id => identity.InstanceId;

    /// <summary>A command forwarded by a standby waits for the leader this long (a golden run takes longest).</summary>
    public TimeSpan ForwardTimeout(string verb) => verb == Rollouts.Verbs.Golden ? _o.GoldenTimeout + TimeSpan.FromSeconds(5) : TimeSpan.FromSeconds(30);
    public bool IsLeader => _leading is { IsCancellationRequested: false };

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await nats.ConnectAsync();
                await store.EnsureAsync(stoppingToken);
                break;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.LogWarning("JetStream not ready ({Reason}); retrying", e.Message);
                await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken);
            }
        }

        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    var leader = await HoldLeaseAsync(stoppingToken);
                    if (leader && !IsLeader) await LeadAsync(stoppingToken);
                    if (!leader && IsLeader) await StepDownAsync("lease lost");
                    if (leader) await TickAsync(stoppingToken);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    logger.LogWarning("Promoter loop error: {Reason}", e.Message);
                }
                await Task.Delay(_o.TickInterval, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        if (IsLeader)
        {
            await StepDownAsync("shutting down");
            await ReleaseLeaseAsync();
        }
    }

    private async Task<bool> HoldLeaseAsync(CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        if (IsLeader && now - _leaseRenewedAt < _o.LeaseTtl / 3)
            return true;
        var lease = new PromoterLease(Id, (now + _o.LeaseTtl).ToUnixTimeMilliseconds());
        var current = await store.Rollout.TryGetEntryAsync<PromoterLease>(Rollouts.LeaseKey, cancellationToken: ct);
        bool won;
        if (!current.Success || current.Value.Value is null)
        {
            won = (await store.Rollout.TryCreateAsync(Rollouts.LeaseKey, lease, cancellationToken: ct)).Success;
            if (!won && current.Success)
                won = (await store.Rollout.TryUpdateAsync(Rollouts.LeaseKey, lease, current.Value.Revision, cancellationToken: ct)).Success;
        }
        else
        {
            var held = current.Value.Value;
            won = (held.Holder == Id || held.ExpiresUnixMs < now.ToUnixTimeMilliseconds())
                  && (await store.Rollout.TryUpdateAsync(Rollouts.LeaseKey, lease, current.Value.Revision, cancellationToken: ct)).Success;
        }
        if (won) _leaseRenewedAt = now;
        _leader.Set(won ? 1 : 0);
        return won;
    }

    private async Task ReleaseLeaseAsync()
    {
        try
        {
            var current = await store.Rollout.TryGetEntryAsync<PromoterLease>(Rollouts.LeaseKey);
            if (current.Success && current.Value.Value?.Holder == Id)
                await store.Rollout.TryUpdateAsync(Rollouts.LeaseKey, new PromoterLease(Id, 0), current.Value.Revision);
        }
        catch (Exception e)
        {
            logger.LogDebug(e, "Lease not released");
        }
    }

    private async Task LeadAsync(CancellationToken ct)
    {
        _leading = CancellationTokenSource.CreateLinkedTokenSource(ct);
        _leadingSince = clock.GetUtcNow();
        var sub = await nats.SubscribeCoreAsync<byte[]>(Rollouts.LeaderControlWildcard, cancellationToken: _leading.Token);
        var token = _leading.Token;
        var verdicts = await nats.SubscribeCoreAsync<Verdict>(Judging.VerdictSubject, cancellationToken: _leading.Token);
        _serving = Task.WhenAll(ServeAsync(sub, token), FollowVerdictsAsync(verdicts, token));
        var (state, _) = await store.GetAsync(ct);
        logger.LogInformation("Promoter {Id} leads: phase {Phase}, live {Live}, candidate {Candidate}", Id, state.Phase, state.Live, state.Candidate ?? "-");
    }

    private async Task StepDownAsync(string why)
    {
        logger.LogWarning("Promoter {Id} steps down: {Why}", Id, why);
        if (_leading is null) return;
        await _leading.CancelAsync();
        try { await _serving; } catch (OperationCanceledException) { }
        _leading.Dispose();
        _leading = null;
    }

    private async Task ServeAsync(INatsSub<byte[]> sub, CancellationToken ct)
    {
        await using (sub)
        {
            try
            {
                await foreach (var msg in sub.Msgs.ReadAllAsync(ct))
                {
                    ControlReply reply;
                    try
                    {
                        reply = await HandleAsync(msg.Subject[(Rollouts.LeaderControlWildcard.Length - 1)..], msg.Data, ct);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        logger.LogError(e, "Control command on {Subject} failed", msg.Subject);
                        reply = ControlReply.Refused("internal_error", "The promoter failed to handle the command; nothing was changed.");
                    }
                    if (msg.ReplyTo is not null)
                        await nats.PublishAsync(msg.ReplyTo, reply, cancellationToken: ct);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
            }
        }
    }

    /// <summary>Verdicts drive the machine: pass advances (after the golden set, when leaving Shadow), fail
    /// rolls back at once, inconclusive holds and, after the policy's timeout, pauses for an operator.</summary>
    private async Task FollowVerdictsAsync(INatsSub<Verdict> sub, CancellationToken ct)
    {
        await using (sub)
        {
            try
            {
                await foreach (var msg in sub.Msgs.ReadAllAsync(ct))
                {
                    if (msg.Data is not { } v) continue;
                    _lastVerdict = (v.RolloutId, clock.GetUtcNow());
                    if (!_o.Automatic) continue;
                    try
                    {
                        // Acting on a verdict can take long (the golden set runs before leaving Shadow); verdicts
                        // queue meanwhile, and the silence watchdog must not count that time as the judge's.
                        _acting = true;
                        await OnVerdictAsync(v, ct);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        logger.LogError(e, "Acting on a verdict failed");
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

    private async Task OnVerdictAsync(Verdict v, CancellationToken ct)
    {
        var (state, _) = await store.GetAsync(ct);
        if (!IsFor(state, v))
            return;
        switch (v.Outcome)
        {
            case Judging.Outcomes.Pass:
                if (state.Phase == RolloutPhase.Shadow && _golden is not null && state.Candidate is { } candidate)
                {
                    var report = await golden.RunAsync(_golden, [state.Live, candidate], _o.GoldenTimeout, ct);
                    var live = report.Scores[0];
                    var cand = report.Scores[1];
                    if (cand.Accuracy < live.Accuracy - _policy.GoldenAccuracyTolerance || cand.Errors > live.Errors)
                    {
                        await ChangeAsync("rollback", r => IsFor(r.State, v) ? r.Rollback(
                            $"golden set: candidate {cand.Accuracy:P1} ({cand.Correct}/{cand.Total}, {cand.Errors} errors) below live {live.Accuracy:P1} ({live.Correct}/{live.Total})", "judge") : null, "judge", ct);
                        return;
                    }
                    v = v with { Reason = $"{v.Reason}; golden set: candidate {cand.Accuracy:P1} vs live {live.Accuracy:P1}" };
                }
                await ChangeAsync("promote", r => IsFor(r.State, v) ? r.Promote(false, $"judge pass: {v.Reason}", "judge") : null, "judge", ct);
                break;
            case Judging.Outcomes.Fail:
                await ChangeAsync("rollback", r => IsFor(r.State, v) ? r.Rollback($"judge fail: {v.Reason}", "judge") : null, "judge", ct);
                break;
            case Judging.Outcomes.Inconclusive when clock.GetUtcNow() - state.Since >= _policy.InconclusivePauseAfter:
                await ChangeAsync("pause", r => IsFor(r.State, v) ? r.Pause($"inconclusive for {_policy.InconclusivePauseAfter}: {v.Reason}", "judge") : null, "judge", ct);
                break;
        }
    }

    private static bool IsFor(RolloutState s, Verdict v) =>
        s.RolloutId == v.RolloutId && s.Step == v.Step && s.Phase == v.Phase && s.Phase is RolloutPhase.Shadow or RolloutPhase.Canary;

    /// <summary>One operator command; refusals change nothing.</summary>
    public async Task<ControlReply> HandleAsync(string verb, byte[]? body, CancellationToken ct)
    {
        ControlRequest request;
        try
        {
            request = body is { Length: > 0 } && !IsBlank(body)
                ? JsonSerializer.Deserialize(body, QwenJsonContext.Default.ControlRequest) ?? new ControlRequest()
                : new ControlRequest();
        }
        catch (JsonException e)
        {
            return ControlReply.Refused("invalid_json", $"The request is not valid JSON for {verb}: {e.Message.Split(". ")[0]}.");
        }

        if (TextProblem(request) is { } problem)
            return ControlReply.Refused("invalid_request", problem);
        var reason = Trim(request.Reason) ?? "";
        var actor = Trim(request.Actor) ?? "operator";
        switch (verb)
        {
            case Rollouts.Verbs.Status:
                return new ControlReply { Ok = true, State = (await store.GetAsync(ct)).State, Verdict = await store.LatestVerdictAsync(ct), Leader = Id };
            case Rollouts.Verbs.Golden:
                if (_golden is null)
                    return ControlReply.Refused("not_configured", "No golden set is configured (Promoter:GoldenPath).");
                var colours = request.Colour is { } one ? [one] : _o.Colours;
                if (colours.Any(c => !_o.Colours.Contains(c, StringComparer.Ordinal)))
                    return ControlReply.Refused("unknown_colour", $"'colour' must be one of: {string.Join(", ", _o.Colours)}.");
                return new ControlReply { Ok = true, Golden = await golden.RunAsync(_golden, colours, _o.GoldenTimeout, ct), Leader = Id };
            case Rollouts.Verbs.History:
                var limit = Math.Clamp(request.Limit ?? _o.HistoryDefault, 1, _o.HistoryMax);
                return new ControlReply { Ok = true, Events = await store.HistoryAsync(limit, ct), Leader = Id };
            case Rollouts.Verbs.Pin:
                return await PinAsync(request, ct);
            case Rollouts.Verbs.Start:
                return await ChangeAsync(verb, r => r.Start(Trim(request.Candidate), reason, actor), "operator", ct);
            case Rollouts.Verbs.Promote:
                return await ChangeAsync(verb, r => r.Promote(request.Full == true, reason, actor), "operator", ct);
            case Rollouts.Verbs.SetWeight:
                return await ChangeAsync(verb, r => r.SetWeight(request.Weight, reason, actor), "operator", ct);
            case Rollouts.Verbs.Pause:
                return await ChangeAsync(verb, r => r.Pause(reason, actor), "operator", ct);
            case Rollouts.Verbs.Resume:
                return await ChangeAsync(verb, r => r.Resume(reason, actor), "operator", ct);
            case Rollouts.Verbs.Rollback:
                return await ChangeAsync(verb, r => r.Rollback(reason, actor), "operator", ct);
            case Rollouts.Verbs.Abort:
                return await ChangeAsync(verb, r => r.Abort(reason, actor), "operator", ct);
            default:
                return ControlReply.Refused("unknown_verb", $"Unknown command '{(verb.Length > 32 ? verb[..32] : verb)}'; known: {string.Join(", ", Rollouts.Verbs.All)}.");
        }
    }

    private async Task TickAsync(CancellationToken ct)
    {
        var (state, _) = await store.GetAsync(ct);
        if (state.Phase is RolloutPhase.Promoted or RolloutPhase.RolledBack)
            await ChangeAsync("finish", r => r.FinishIfDue(), "timer", ct);
        await WatchVerdictsAsync(state, ct);
    }

    /// <summary>
    /// The judge publishes a verdict every evaluation interval while a rollout is judged. When none has
    /// arrived for the policy's <c>no_verdict_pause_after</c> (judge down, partitioned, stuck), an automatic
    /// rollout is paused with that reason rather than left running unjudged; the gauge lets an alert fire.
    /// </summary>
    private async Task WatchVerdictsAsync(RolloutState state, CancellationToken ct)
    {
        if (state.Phase is not (RolloutPhase.Shadow or RolloutPhase.Canary) || state.RolloutId is null || _acting)
        {
            _sinceVerdict.Set(0);
            return;
        }
        var now = clock.GetUtcNow();
        var heard = _lastVerdict.RolloutId == state.RolloutId ? _lastVerdict.At : DateTimeOffset.MinValue;
        var since = new[] { heard, state.Since, _leadingSince }.Max();
        var silent = now - since;
        _sinceVerdict.Set(Math.Round(silent.TotalSeconds, 1));
        if (_o.Automatic && silent >= _policy.NoVerdictPauseAfter)
        {
            var reason = $"no verdict from the judge for {_policy.NoVerdictPauseAfter} (is the judge running and connected?); paused rather than left unjudged";
            await ChangeAsync("pause", r => r.State.RolloutId == state.RolloutId && r.State.Phase == state.Phase && r.State.Step == state.Step
                ? r.Pause(reason, "promoter") : null, "timer", ct);
        }
    }

    private async Task<ControlReply> ChangeAsync(string verb, Func<Rollout, RolloutOutcome?> act, string cause, CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            for (var attempt = 0; attempt < 3; attempt++)
            {
                var (state, revision) = await store.GetAsync(ct);
                var outcome = act(new Rollout(state, _o, clock));
                if (outcome is null)
                    return new ControlReply { Ok = true, State = state, Leader = Id };
                if (!outcome.Ok)
                    return ControlReply.Refused(outcome.Code!, outcome.Error!, state) with { Leader = Id };
                if (!await store.TryUpdateAsync(outcome.State, revision, ct))
                {
                    logger.LogWarning("The rollout state changed while applying {Verb}; re-reading", verb);
                    continue;
                }
                var e = new RolloutEvent
                {
                    Trigger = verb, From = outcome.From, To = outcome.State.Phase, State = outcome.State,
                    Reason = outcome.State.Reason, Actor = outcome.State.Actor, Cause = cause, At = clock.GetUtcNow(),
                };
                await store.AppendAsync(e, ct);
                _transitions.WithLabels(verb, cause).Inc();
                logger.LogInformation("Rollout {Verb}: {From} -> {To} (live {Live}, candidate {Candidate}, weight {Weight}%) by {Actor}: {Reason}",
                    verb, e.From, e.To, e.State.Live, e.State.Candidate ?? "-", e.State.Weight, e.Actor, e.Reason);
                return new ControlReply { Ok = true, State = outcome.State, Event = e, Leader = Id };
            }
            return ControlReply.Refused("conflict", "The rollout state kept changing; nothing was applied. Retry.");
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task<ControlReply> PinAsync(ControlRequest request, CancellationToken ct)
    {
        var session = Trim(request.Session);
        var colour = Trim(request.Colour);
        if (session is null || session.Length > 128)
            return ControlReply.Refused("invalid_request", "'session' is required (at most 128 characters).");
        if (colour is null || !_o.Colours.Contains(colour, StringComparer.Ordinal))
            return ControlReply.Refused("unknown_colour", $"'colour' must be one of: {string.Join(", ", _o.Colours)}.");
        var ttl = request.TtlSeconds is { } s ? TimeSpan.FromSeconds(s) : TimeSpan.FromMinutes(30);
        if (ttl <= TimeSpan.Zero || ttl > _o.MaxPinTtl)
            return ControlReply.Refused("invalid_request", $"'ttl_seconds' must be between 1 and {(int)_o.MaxPinTtl.TotalSeconds}.");
        var now = clock.GetUtcNow();
        var pin = new SessionPin { Colour = colour, PinnedAt = now, By = "operator", ExpiresAt = now + ttl };
        await store.Sessions.PutAsync(SessionKeys.For(session), pin, cancellationToken: ct);
        logger.LogInformation("Operator pinned a session to {Colour} for {Ttl}", colour, ttl);
        return new ControlReply { Ok = true, Pin = pin, Leader = Id };
    }

    /// <summary>Free-text fields end up in the audit log: bounded, and without control characters.</summary>
    private string? TextProblem(ControlRequest r)
    {
        foreach (var (name, value) in new[] { ("reason", r.Reason), ("actor", r.Actor), ("candidate", r.Candidate), ("session", r.Session), ("colour", r.Colour) })
        {
            if (value is null) continue;
            if (value.Length > _o.MaxTextChars)
                return $"'{name}' is longer than {_o.MaxTextChars} characters.";
            if (value.Any(char.IsControl))
                return $"'{name}' contains control characters.";
        }
        return null;
    }

    private static string? Trim(string? s) => string.IsNullOrWhiteSpace(s) ? null : s.Trim();

    private static bool IsBlank(byte[] body) => body.All(b => b is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t') || body is [(byte)'\'', (byte)'\''];
}
