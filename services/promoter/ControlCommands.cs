using System.Text.Json;
using Microsoft.Extensions.Logging;
using QwenNats.Messaging;

namespace QwenNats.Promoter;

/// <summary>
/// The operator API's verbs (served on <c>qwen.ctl.&lt;verb&gt;</c> by <see cref="Messaging.Control.ControlEndpoints"/>
/// while this promoter leads): validates the request and applies it; refusals change nothing.
/// </summary>
public sealed class ControlCommands(RolloutStore store, RolloutChanges changes, GoldenService golden, GoldenRunner runner, LeaderLease lease, PromoterSettings settings,
    ReleaseCatalog releases, WorkerRegistry workers, TimeProvider clock, ILogger<ControlCommands> logger)
{
    private PromoterOptions O => settings.Options;

    // deploy checks the rollout state and then writes a colour's assignment; start reads the candidate's assignment and
    // then changes the state. One at a time, so a start cannot begin on a release a deploy is replacing meanwhile.
    private readonly SemaphoreSlim _assignments = new(1, 1);

    private async Task<ControlReply> OneAtATimeAsync(Func<Task<ControlReply>> command, CancellationToken ct)
    {
        await _assignments.WaitAsync(ct);
        try
        {
            return await command();
        }
        finally
        {
            _assignments.Release();
        }
    }

    /// <summary>One operator command, its body exactly as sent.</summary>
    public async Task<ControlReply> HandleAsync(string verb, byte[]? body, CancellationToken ct)
    {
        var id = lease.Holder;
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
                return new ControlReply
                {
                    Ok = true, State = (await store.GetAsync(ct)).State, Verdict = await store.LatestVerdictAsync(ct), Leader = id,
                    Pools = await releases.PoolsAsync(O.Colours, ct),
                };
            case Rollouts.Verbs.Release:
                var registered = await releases.RegisterAsync(request, actor, ct);
                if (registered.Ok) PromoterLog.Registered(logger, registered.Release!.Id, registered.Release.ModelSha256[..12], actor);
                return registered with { Leader = id };
            case Rollouts.Verbs.Releases:
                return new ControlReply { Ok = true, Releases = await releases.ListAsync(O.Colours, ct), Pools = await releases.PoolsAsync(O.Colours, ct), Leader = id };
            case Rollouts.Verbs.Deploy:
                return await OneAtATimeAsync(() => DeployAsync(request, actor, reason, ct), ct);
            case Rollouts.Verbs.Golden:
                return await GoldenAsync(request, ct);
            case Rollouts.Verbs.Compare:
                return await CompareAsync(request, ct);
            case Rollouts.Verbs.History:
                var limit = Math.Clamp(request.Limit ?? O.HistoryDefault, 1, O.HistoryMax);
                return new ControlReply { Ok = true, Events = await store.HistoryAsync(limit, ct), Leader = id };
            case Rollouts.Verbs.Pin:
                return await PinAsync(request, reason, actor, ct);
            case Rollouts.Verbs.Unpin:
                return await UnpinAsync(request, reason, actor, ct);
            case Rollouts.Verbs.Start:
                return await OneAtATimeAsync(() => StartAsync(request, reason, actor, ct), ct);
            case Rollouts.Verbs.Promote or Rollouts.Verbs.Rollback or Rollouts.Verbs.SetWeight when await PoolsUnknownAsync(ct) is { } unknown:
                return unknown with { Leader = id };
            case Rollouts.Verbs.Promote:
                return await changes.ChangeAsync(verb, r => Moved(request, r.State) ?? EmptyPool(verb, r.State) ?? r.Promote(request.Full == true, reason, actor), "operator", id, ct);
            case Rollouts.Verbs.SetWeight:
                // A weight above 0 sends new sessions to the candidate, as a promote does: not to a pool with nobody serving.
                return await changes.ChangeAsync(verb, r => Moved(request, r.State) ?? (request.Weight > 0 ? EmptyPool(Rollouts.Verbs.Promote, r.State, verb) : null)
                    ?? r.SetWeight(request.Weight, reason, actor), "operator", id, ct);
            case Rollouts.Verbs.Pause:
                return await changes.ChangeAsync(verb, r => Moved(request, r.State) ?? r.Pause(reason, actor), "operator", id, ct);
            case Rollouts.Verbs.Resume:
                return await changes.ChangeAsync(verb, r => Moved(request, r.State) ?? r.Resume(reason, actor), "operator", id, ct);
            case Rollouts.Verbs.Rollback:
                return await changes.ChangeAsync(verb, r => Moved(request, r.State) ?? EmptyPool(verb, r.State) ?? r.Rollback(reason, actor), "operator", id, ct);
            case Rollouts.Verbs.Abort:
                return await changes.ChangeAsync(verb, r => Moved(request, r.State) ?? r.Abort(reason, actor), "operator", id, ct);
            default:
                return ControlReply.Refused("unknown_verb", $"Unknown command '{(verb.Length > 32 ? verb[..32] : verb)}'; known: {string.Join(", ", Rollouts.Verbs.All)}.");
        }
    }

    /// <summary>Runs the golden sets now on the colours (low-priority queues) and stores each complete result for the gate.</summary>
    private async Task<ControlReply> GoldenAsync(ControlRequest request, CancellationToken ct)
    {
        if (settings.Golden is not { Count: > 0 } all)
            return ControlReply.Refused("not_configured", "No golden set is configured (Promoter:GoldenPath, Promoter:GoldenChatPath).");
        var one = Trim(request.Colour);
        if (one is not null && !O.Colours.Contains(one, StringComparer.Ordinal))
            return ControlReply.Refused("unknown_colour", $"'colour' must be one of: {string.Join(", ", O.Colours)}.");
        if (OfTask(all, request.Task) is not { } inputs)
            return ControlReply.Refused("invalid_request", $"'task' must be {InferTasks.Sentiment} or {InferTasks.Chat}, and the golden set must have inputs of it.");
        IReadOnlyList<string> colours = one is null ? O.Colours : [one];
        var results = await Task.WhenAll(colours.Select(c => golden.ResultAsync(c, inputs, useStored: false, ct)));
        var report = new GoldenReport(inputs.Count(i => i.Task == InferTasks.Sentiment), results.Select(o => GoldenGate.Score(o.Result, inputs, o.Stored)).ToArray(), clock.GetUtcNow())
        {
            ChatCases = inputs.Count(i => i.Task == InferTasks.Chat),
        };
        return new ControlReply { Ok = true, Golden = report, Leader = lease.Holder };
    }

    /// <summary>
    /// Sends the golden sets (or the request's inputs) to the live colour and another colour on their low-priority
    /// queues and answers both sides per input with every check, a summary and, for the golden sets, the gate's decision.
    /// </summary>
    private async Task<ControlReply> CompareAsync(ControlRequest request, CancellationToken ct)
    {
        var state = (await store.GetAsync(ct)).State;
        var first = state.Live;
        var second = Trim(request.Colour) ?? state.Candidate ?? O.Colours.FirstOrDefault(c => c != first);
        if (second is null || !O.Colours.Contains(second, StringComparer.Ordinal))
            return ControlReply.Refused("unknown_colour", $"'colour' (the colour compared with live {first}) must be one of: {string.Join(", ", O.Colours)}.");
        if (second == first)
            return ControlReply.Refused("invalid_request", $"{first} is the live colour; 'colour' names the other colour to compare it with.");
        var given = request.Inputs;
        if (given is not null && GoldenInputs.Problem(given, O.CompareMaxInputs, O.CompareMaxInputChars) is { } problem)
            return ControlReply.Refused("invalid_inputs", problem);
        var all = given ?? settings.Golden;
        if (all is not { Count: > 0 })
            return ControlReply.Refused("not_configured", "No golden set is configured (Promoter:GoldenPath, Promoter:GoldenChatPath); send 'inputs' to compare.");
        if (OfTask(all, request.Task) is not { } inputs)
            return ControlReply.Refused("invalid_request", $"'task' must be {InferTasks.Sentiment} or {InferTasks.Chat}, and the inputs must include some of it.");
        GoldenResult a, b;
        string? gate = null;
        if (given is null)
        {
            var both = await Task.WhenAll(golden.ResultAsync(first, inputs, useStored: false, ct), golden.ResultAsync(second, inputs, useStored: false, ct));
            (a, b) = (both[0].Result, both[1].Result);
            if (request.Task is null)
            {
                var decision = GoldenGate.Decide(a, b, inputs, settings.Policy);
                gate = $"{decision.Outcome}: {decision.Reason}";
            }
        }
        else
        {
            var both = await Task.WhenAll(runner.RunAsync(first, inputs, null, O.GoldenTimeout, ct), runner.RunAsync(second, inputs, null, O.GoldenTimeout, ct));
            (a, b) = (both[0], both[1]);
        }
        var report = Comparison.Build([first, second], inputs, a, b, settings.Policy, clock.GetUtcNow(), gate);
        return new ControlReply { Ok = true, Compare = Comparison.Fit(report, O.CompareMaxReplyBytes, O.CompareMaxAnswerChars), Leader = lease.Holder };
    }

    private static IReadOnlyList<GoldenInput>? OfTask(IReadOnlyList<GoldenInput> inputs, string? task)
    {
        var t = Trim(task);
        if (t is null) return inputs;
        if (t is not (InferTasks.Sentiment or InferTasks.Chat)) return null;
        var some = inputs.Where(i => i.Task == t).ToArray();
        return some.Length == 0 ? null : some;
    }

    /// <summary>Start, gated on the candidate pool: at least one worker, all serving the colour's assigned release.</summary>
    private async Task<ControlReply> StartAsync(ControlRequest request, string reason, string actor, CancellationToken ct)
    {
        var candidate = Trim(request.Candidate);
        PoolStatus? pool = null;
        ReleaseRef? live = null;
        if (candidate is not null && O.Colours.Contains(candidate, StringComparer.Ordinal))
        {
            var assigned = await releases.AssignmentAsync(candidate, ct);
            if (Trim(request.Release) is { } wanted && assigned?.Release != wanted)
                return ControlReply.Refused("release_mismatch",
                    $"The {candidate} pool is assigned release {assigned?.Release ?? "(none)"}, not {wanted}; deploy it first (qwen.ctl.deploy).");
            pool = releases.Pool(candidate, assigned);
            var state = (await store.GetAsync(ct)).State;
            live = (await releases.AssignmentAsync(state.Live, ct))?.Ref;
        }
        var reply = await changes.ChangeAsync(Rollouts.Verbs.Start, r => Moved(request, r.State) ?? r.Start(candidate, reason, actor, pool, live), "operator", lease.Holder, ct);
        return reply.Ok || pool is null ? reply : reply with { Pools = [pool] };
    }

    /// <summary>
    /// A refusal when this promoter cannot tell yet which pools have serving workers (it started, or reconnected, less
    /// than a worker stale window ago, and that did not change within <see cref="PromoterOptions.PoolsSettleWait"/>):
    /// an empty-looking pool may only not have been heard from yet, and a live pool taken for empty would take a deploy.
    /// </summary>
    private async Task<ControlReply?> PoolsUnknownAsync(CancellationToken ct) =>
        await workers.WaitSettledAsync(O.PoolsSettleWait, ct)
            ? null
            : ControlReply.Refused("workers_unknown", "This promoter has not heard every worker's heartbeat yet (it started or reconnected moments ago), so it cannot tell which pools serve; retry in a few seconds.");

    /// <summary>A refusal when the request names the state version it was meant for (<c>if_version</c>) and the state has
    /// moved on since (checked on the state the change is compared-and-set against).</summary>
    private static RolloutOutcome? Moved(ControlRequest request, RolloutState state) =>
        request.IfVersion is { } expected && expected != state.Version
            ? new RolloutOutcome(false, state, state.Phase, "version_changed",
                $"The rollout state is at version {state.Version} ({state.Phase}{(state.Phase == RolloutPhase.Canary ? $", step {state.Step}" : "")}), not {expected}: it changed since you looked (the judge or another operator moved it). Nothing was applied; check the status and send the command again.")
            : null;

    /// <summary>
    /// promote and rollback never move traffic to a pool with no worker serving. Checked on the state the change
    /// is compared-and-set against (no read of its own, so nothing between the check and the write).
    /// </summary>
    private RolloutOutcome? EmptyPool(string verb, RolloutState state, string? shownAs = null)
    {
        var target = verb == Rollouts.Verbs.Promote
            ? state.Phase is RolloutPhase.Shadow or RolloutPhase.Canary ? state.Candidate : null
            : state.Phase == RolloutPhase.Promoted ? state.Standby : state.Phase is RolloutPhase.Shadow or RolloutPhase.Canary or RolloutPhase.Paused ? state.Live : null;
        if (target is null || workers.HasWorkers(target))
            return null;
        return new RolloutOutcome(false, state, state.Phase, "empty_pool", $"No worker of the {target} pool is serving: {shownAs ?? verb} would send traffic to nobody. Start or deploy workers for {target} first.");
    }

    /// <summary>
    /// Assigns a release to a colour. Refused for the live colour once it serves (ship to the idle colour and roll out),
    /// for the candidate of a rollout in progress, and for the previous colour during a bake window (it is the instant rollback).
    /// </summary>
    private async Task<ControlReply> DeployAsync(ControlRequest request, string actor, string reason, CancellationToken ct)
    {
        var colour = Trim(request.Colour);
        var id = Trim(request.Release);
        if (colour is null || !O.Colours.Contains(colour, StringComparer.Ordinal))
            return ControlReply.Refused("unknown_colour", $"'colour' must be one of: {string.Join(", ", O.Colours)}.");
        if (id is null)
            return ControlReply.Refused("invalid_request", "'release' (a registered release id) is required.");
        if (!Releases.IsWellFormedId(id) || await releases.GetAsync(id, ct) is not { } release)
            return ControlReply.Refused("unknown_release", $"No release '{(id.Length > 64 ? id[..64] : id)}' is registered (qwen.ctl.releases lists them; qwen.ctl.release registers one).");
        var state = (await store.GetAsync(ct)).State;
        if (request.Bootstrap == true && await releases.AssignmentAsync(colour, ct) is { } kept)
            return new ControlReply { Ok = true, Assignment = kept, State = state, Pools = [releases.Pool(colour, kept)], Leader = lease.Holder };
        if (state.Phase is RolloutPhase.Shadow or RolloutPhase.Canary or RolloutPhase.Paused && state.Candidate == colour)
            return ControlReply.Refused("rollout_in_progress", $"{colour} is the candidate of rollout {state.RolloutId} ({state.Phase}); finish, roll back or abort it before deploying to it.", state);
        if (state.Phase == RolloutPhase.Promoted && state.Standby == colour)
            return ControlReply.Refused("bake_window", $"{colour} is kept serving for an instant rollback until the bake window closes ({state.BakeUntil:u}); deploy after it, or close it with promote.", state);
        if (colour == state.Live && await PoolsUnknownAsync(ct) is { } unknown)
            return unknown with { State = state };
        if (colour == state.Live && workers.HasWorkers(colour))
            return ControlReply.Refused("live_colour", $"{colour} is the live colour and serves traffic; deploy to the idle colour and roll it out (qwenctl rollout).", state);
        // Workers (re)starting on the live colour load its release to serve live traffic with it: replacing it under them
        // would change the live release with no rollout.
        if (colour == state.Live && workers.Known(colour).FirstOrDefault(w => w.Loading is not null && !w.Draining) is { } loading)
            return ControlReply.Refused("live_colour", $"{colour} is the live colour and its worker {loading.WorkerId} is loading release {loading.Loading} to serve it; deploy to the idle colour and roll it out (qwenctl rollout).", state);
        var assignment = await releases.AssignAsync(colour, release, actor, reason, ct);
        PromoterLog.Deployed(logger, release.Id, colour, actor);
        return new ControlReply { Ok = true, Assignment = assignment, Release = release, State = state, Pools = [releases.Pool(colour, assignment)], Leader = lease.Holder };
    }

    private async Task<ControlReply> PinAsync(ControlRequest request, string reason, string actor, CancellationToken ct)
    {
        var session = Trim(request.Session);
        var colour = Trim(request.Colour);
        if (session is null || session.Length > 128)
            return ControlReply.Refused("invalid_request", "'session' is required (at most 128 characters).");
        if (colour is null || !O.Colours.Contains(colour, StringComparer.Ordinal))
            return ControlReply.Refused("unknown_colour", $"'colour' must be one of: {string.Join(", ", O.Colours)}.");
        var ttl = request.TtlSeconds is { } s ? TimeSpan.FromSeconds(s) : O.DefaultPinTtl;
        if (ttl <= TimeSpan.Zero || ttl > O.MaxPinTtl)
            return ControlReply.Refused("invalid_request", $"'ttl_seconds' must be between 1 and {(int)O.MaxPinTtl.TotalSeconds}.");
        var now = clock.GetUtcNow();
        var pin = new SessionPin { Colour = colour, PinnedAt = now, By = "operator", ExpiresAt = now + ttl }; // who: the audit record
        await store.Sessions.PutAsync(SessionKeys.For(session), pin, cancellationToken: ct);
        PromoterLog.Pinned(logger, colour, ttl);
        await store.RecordAccessAsync(Rollouts.Verbs.Pin, $"session {session} pinned to {colour} for {(int)ttl.TotalSeconds} s{(reason.Length > 0 ? ": " + reason : "")}", actor, ct);
        return new ControlReply { Ok = true, Pin = pin, Leader = lease.Holder };
    }

    private async Task<ControlReply> UnpinAsync(ControlRequest request, string reason, string actor, CancellationToken ct)
    {
        var session = Trim(request.Session);
        if (session is null || session.Length > 128)
            return ControlReply.Refused("invalid_request", "'session' is required (at most 128 characters).");
        var key = SessionKeys.For(session);
        var had = await store.Sessions.TryGetEntryAsync<SessionPin>(key, cancellationToken: ct) is { Success: true } entry && entry.Value.Value is not null;
        if (!had)
            return ControlReply.Refused("not_pinned", $"Session '{session}' has no pin.");
        await store.Sessions.DeleteAsync(key, cancellationToken: ct);
        await store.RecordAccessAsync(Rollouts.Verbs.Unpin, $"pin of session {session} removed{(reason.Length > 0 ? ": " + reason : "")}", actor, ct);
        return new ControlReply { Ok = true, Leader = lease.Holder };
    }

    /// <summary>Free-text fields end up in the audit log: bounded, and without control characters.</summary>
    private string? TextProblem(ControlRequest r)
    {
        foreach (var (name, value) in new[] { ("reason", r.Reason), ("actor", r.Actor), ("candidate", r.Candidate), ("session", r.Session), ("colour", r.Colour), ("release", r.Release), ("model_sha256", r.ModelSha256), ("notes", r.Notes), ("task", r.Task) })
        {
            if (value is null) continue;
            if (value.Length > O.MaxTextChars)
                return $"'{name}' is longer than {O.MaxTextChars} characters.";
            if (value.Any(char.IsControl))
                return $"'{name}' contains control characters.";
        }
        return null;
    }

    private static string? Trim(string? s) => string.IsNullOrWhiteSpace(s) ? null : s.Trim();

    private static bool IsBlank(byte[] body) => body.All(b => b is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t') || body is [(byte)'\'', (byte)'\''];
}
