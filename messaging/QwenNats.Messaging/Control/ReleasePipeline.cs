using System.Diagnostics;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.ObjectStore;

namespace QwenNats.Messaging.Control;

/// <summary>How a pipeline run ended; the value is <c>qwenctl rollout</c>'s exit code.</summary>
public enum PipelineOutcome
{
    /// <summary>The candidate was promoted (and, unless told to stop at Promoted, its bake window closed).</summary>
    Promoted = 0,
    /// <summary>NATS or the promoters could not be reached.</summary>
    Unavailable = 1,
    /// <summary>The command line was wrong; nothing was sent.</summary>
    Usage = 2,
    RolledBack = 3,
    Paused = 4,
    /// <summary>A step was refused (release id taken by other content, deploy or start refused, the rollout aborted).</summary>
    Refused = 5,
    /// <summary>A worker of the colour could not load the release (it keeps serving its previous one).</summary>
    DeployFailed = 6,
    /// <summary>The pool was not ready, or the rollout not finished, within the time given.</summary>
    TimedOut = 7,
    /// <summary>Started without waiting for the end (<see cref="PipelineRequest.Wait"/> off).</summary>
    Started = 8,
}

/// <summary>What a pipeline run ships: a release (registered here when a profile is given) to the idle colour.</summary>
public sealed record PipelineRequest
{
    public required string Release { get; init; }
    /// <summary>A GGUF file to upload (skipped when the store has its digest already).</summary>
    public string? ModelPath { get; init; }
    /// <summary>The model's digest when it is already uploaded (instead of <see cref="ModelPath"/>).</summary>
    public string? ModelSha256 { get; init; }
    /// <summary>The prompt profile; with a model it registers the release (an existing release id must have the same content).</summary>
    public PromptProfile? Profile { get; init; }
    public string? Notes { get; init; }
    public FaultOptions? Faults { get; init; }
    /// <summary>The colour to ship to; default: the idle one (not live).</summary>
    public string? Colour { get; init; }
    public string Actor { get; init; } = "pipeline";
    public TimeSpan ReadyTimeout { get; init; } = TimeSpan.FromMinutes(10);
    public TimeSpan RolloutTimeout { get; init; } = TimeSpan.FromMinutes(60);
    /// <summary>Follow the rollout to its end; off: return once it started.</summary>
    public bool Wait { get; init; } = true;
    /// <summary>Stop following at Promoted instead of waiting for the bake window to close.</summary>
    public bool UntilPromoted { get; init; }
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(250);
}

public sealed record PipelineResult(PipelineOutcome Outcome, string Message, RolloutState? State, IReadOnlyList<RolloutEvent> Timeline, Verdict? Verdict, TimeSpan DeployToReady)
{
    public int ExitCode => (int)(Outcome == PipelineOutcome.Started ? PipelineOutcome.Promoted : Outcome);
}

/// <summary>
/// One release from a CI/CD job to live: upload the model (by digest), register the release, deploy it to the idle
/// colour, wait until every worker of that colour serves it, start the rollout and follow it to the end. Each step is a
/// <c>qwen.ctl.*</c> request (the same as an operator's); the outcome says how it ended. <c>qwenctl rollout</c> runs it.
/// </summary>
public sealed class ReleasePipeline(INatsConnection nats, Action<string> progress)
{
    private readonly ControlClient _ctl = new(nats);

    public async Task<PipelineResult> RunAsync(PipelineRequest p, CancellationToken ct = default)
    {
        if (await RegisterAsync(p, ct) is { } refused)
            return refused;
        return await ShipAsync(p, ct);
    }

    /// <summary>Uploads the model (when a file is given) and registers the release (when a profile is given); null when done.</summary>
    public async Task<PipelineResult?> RegisterAsync(PipelineRequest p, CancellationToken ct = default)
    {
        var sha = p.ModelSha256;
        if (p.ModelPath is { } path)
        {
            var clock = Stopwatch.StartNew();
            var store = await new NatsObjContext(new NatsJSContext(nats)).GetObjectStoreAsync(Releases.ModelsBucket, ct);
            var upload = await ModelStore.UploadAsync(store, path, ct);
            sha = upload.Sha256;
            progress(upload.Uploaded
                ? $"uploaded {Path.GetFileName(path)}: sha256 {sha}, {upload.SizeBytes:N0} bytes in {clock.Elapsed.TotalSeconds:F1} s"
                : $"model {Path.GetFileName(path)} already stored: sha256 {sha}");
        }

        if (p.Profile is not null)
        {
            if (sha is null)
                return Fail(PipelineOutcome.Usage, "a release needs a model: give the GGUF file or its sha256");
            var registered = await _ctl.SendAsync(Rollouts.Verbs.Release, new ControlRequest
            {
                Release = p.Release, ModelSha256 = sha, Profile = p.Profile, Notes = p.Notes, Faults = p.Faults, Actor = p.Actor,
            }, ct: ct);
            if (!registered.Ok)
                return Fail(PipelineOutcome.Refused, $"release {p.Release} refused: {registered.Code}: {registered.Error}");
            progress($"release {p.Release}: model {registered.Release!.ModelSha256[..12]}, profile {registered.Release.Profile.Version}");
        }
        return null;

        PipelineResult Fail(PipelineOutcome o, string why) => new(o, why, null, [], null, default);
    }

    /// <summary>Deploys a registered release to the idle colour, waits until it is ready, starts the rollout and follows it.</summary>
    public async Task<PipelineResult> ShipAsync(PipelineRequest p, CancellationToken ct = default)
    {

        var status = await _ctl.StatusAsync(ct);
        if (!status.Ok)
            return Fail(PipelineOutcome.Refused, $"status refused: {status.Code}: {status.Error}");
        var state = status.State!;
        if (state.Phase is RolloutPhase.Shadow or RolloutPhase.Canary or RolloutPhase.Paused or RolloutPhase.Promoted)
            return Fail(PipelineOutcome.Refused, $"rollout {state.RolloutId} is in progress ({state.Phase}); wait for it to end", state);
        var colour = p.Colour ?? status.Pools?.Select(x => x.Colour).FirstOrDefault(c => c != state.Live);
        if (colour is null)
            return Fail(PipelineOutcome.Refused, "there is no idle colour to ship to", state);

        var deployed = await _ctl.SendAsync(Rollouts.Verbs.Deploy, new ControlRequest
        {
            Colour = colour, Release = p.Release, Actor = p.Actor, Reason = $"pipeline: ship {p.Release}",
        }, ct: ct);
        if (!deployed.Ok)
            return Fail(PipelineOutcome.Refused, $"deploy of {p.Release} to {colour} refused: {deployed.Code}: {deployed.Error}", deployed.State);
        progress($"deployed {p.Release} to {colour} ({deployed.Assignment!.DeployId}); waiting for its workers");

        var ready = Stopwatch.StartNew();
        var lastWhy = "";
        while (true)
        {
            if (await PollAsync(ct) is not { } polled)
            {
                if (ready.Elapsed > p.ReadyTimeout)
                    return Fail(PipelineOutcome.TimedOut, $"{colour} not known to be ready after {p.ReadyTimeout.TotalSeconds:0} s: {_pollTrouble}", status.State);
                await Task.Delay(p.PollInterval, ct);
                continue;
            }
            status = polled;
            var pool = status.Pools?.FirstOrDefault(x => x.Colour == colour);
            if (pool is { Ready: true } && pool.Assigned?.DeployId == deployed.Assignment.DeployId)
                break;
            if (pool is { Failed: true })
                return Fail(PipelineOutcome.DeployFailed, $"{colour} cannot serve {p.Release}: {pool.Why}", status.State);
            if (pool?.Why is { Length: > 0 } why && why != lastWhy)
                progress($"  {lastWhy = why}");
            if (ready.Elapsed > p.ReadyTimeout)
                return Fail(PipelineOutcome.TimedOut, $"{colour} not ready after {p.ReadyTimeout.TotalSeconds:0} s: {pool?.Why}", status.State);
            await Task.Delay(p.PollInterval, ct);
        }
        var deployToReady = ready.Elapsed;
        progress($"{colour} serves {p.Release} on every worker ({deployToReady.TotalSeconds:F1} s from deploy to ready)");

        var started = await _ctl.SendAsync(Rollouts.Verbs.Start, new ControlRequest
        {
            Candidate = colour, Release = p.Release, Actor = p.Actor, Reason = $"pipeline: roll out {p.Release}",
        }, ct: ct);
        if (!started.Ok)
            return Fail(PipelineOutcome.Refused, $"start refused: {started.Code}: {started.Error}", started.State, deployToReady);
        var rolloutId = started.State!.RolloutId!;
        progress($"rollout {rolloutId} started: {colour} in Shadow");
        if (!p.Wait)
            return new PipelineResult(PipelineOutcome.Started, $"rollout {rolloutId} of {p.Release} started on {colour}", started.State, [], null, deployToReady);

        var follow = Stopwatch.StartNew();
        var lastPhase = RolloutPhase.Shadow;
        var sawPromoted = false;
        while (true)
        {
            if (await PollAsync(ct) is not { } polled)
            {
                // An election, or a leader busy or away: the rollout goes on without us; ask again until our own timeout.
                if (follow.Elapsed > p.RolloutTimeout)
                    return await EndAsync(PipelineOutcome.TimedOut, $"rollout {rolloutId} not seen to end after {p.RolloutTimeout.TotalSeconds:0} s: {_pollTrouble}", rolloutId, status, deployToReady, ct);
                await Task.Delay(p.PollInterval, ct);
                continue;
            }
            status = polled;
            state = status.State!;
            var ours = state.RolloutId == rolloutId;
            if (ours && state.Phase != lastPhase)
            {
                progress($"  {lastPhase} -> {state.Phase}{(state.Phase == RolloutPhase.Canary ? $" {state.Weight}%" : "")}: {state.Reason}");
                lastPhase = state.Phase;
            }
            sawPromoted |= ours && state.Phase == RolloutPhase.Promoted;
            if (!ours || state.Phase is RolloutPhase.RolledBack or RolloutPhase.Paused || (p.UntilPromoted && state.Phase == RolloutPhase.Promoted))
                break;
            if (follow.Elapsed > p.RolloutTimeout)
                return await EndAsync(PipelineOutcome.TimedOut, $"rollout {rolloutId} still in {state.Phase} after {p.RolloutTimeout.TotalSeconds:0} s", rolloutId, status, deployToReady, ct);
            await Task.Delay(p.PollInterval, ct);
        }

        var timeline = await TimelineAsync(rolloutId, ct);
        var outcome = state.RolloutId == rolloutId
            ? state.Phase switch
            {
                RolloutPhase.RolledBack => PipelineOutcome.RolledBack,
                RolloutPhase.Paused => PipelineOutcome.Paused,
                _ => PipelineOutcome.Promoted,
            }
            // The rollout ended while we looked away: what its audit records say.
            : timeline.Any(e => e.To == RolloutPhase.RolledBack) ? PipelineOutcome.RolledBack
            : (sawPromoted || timeline.Any(e => e.To == RolloutPhase.Promoted)) && state.Live == colour ? PipelineOutcome.Promoted
            : PipelineOutcome.Refused;
        var message = outcome switch
        {
            PipelineOutcome.Promoted => $"{p.Release} is live on {colour}",
            PipelineOutcome.RolledBack => $"{p.Release} was rolled back: {timeline.LastOrDefault(e => e.To == RolloutPhase.RolledBack)?.Reason ?? state.Reason}",
            PipelineOutcome.Paused => $"rollout {rolloutId} is paused: {state.Reason}; resume, promote or roll it back (qwenctl)",
            _ => $"rollout {rolloutId} ended without a promotion: {timeline.LastOrDefault()?.Reason ?? state.Reason}",
        };
        return new PipelineResult(outcome, message, state, timeline, status.Verdict, deployToReady);

        PipelineResult Fail(PipelineOutcome o, string why, RolloutState? s = null, TimeSpan d = default) => new(o, why, s, [], null, d);
    }

    private string? _pollTrouble;

    /// <summary>
    /// The status for a loop that waits, or null when it cannot be had right now: no promoter leads for a moment (an
    /// election: <c>no_leader</c>), the leader failed to answer (<c>internal_error</c>), or no reply came. The loop asks
    /// again until its own timeout; the trouble is reported once each time it changes, and when it clears.
    /// </summary>
    private async Task<ControlReply?> PollAsync(CancellationToken ct)
    {
        string trouble;
        try
        {
            var status = await _ctl.StatusAsync(ct);
            if (status.Ok && status.State is not null)
            {
                if (_pollTrouble is not null)
                    progress($"  the promoters answer again (after: {_pollTrouble})");
                _pollTrouble = null;
                return status;
            }
            trouble = $"{status.Code}: {status.Error}";
        }
        catch (NatsException e) when (!ct.IsCancellationRequested)
        {
            trouble = e is NatsNoRespondersException ? "no promoter answers" : $"no answer from the promoters ({e.Message})";
        }
        if (trouble != _pollTrouble)
            progress($"  waiting: {trouble}");
        _pollTrouble = trouble;
        return null;
    }

    private async Task<PipelineResult> EndAsync(PipelineOutcome outcome, string message, string rolloutId, ControlReply status, TimeSpan deployToReady, CancellationToken ct) =>
        new(outcome, message, status.State, await TimelineAsync(rolloutId, ct), status.Verdict, deployToReady);

    /// <summary>The audit records of one rollout, with the record that closed it (after which the state no longer names it).</summary>
    public async Task<IReadOnlyList<RolloutEvent>> TimelineAsync(string rolloutId, CancellationToken ct)
    {
        ControlReply history;
        try
        {
            history = await _ctl.SendAsync(Rollouts.Verbs.History, new ControlRequest { Limit = 200 }, ct: ct);
        }
        catch (NatsException e) when (!ct.IsCancellationRequested)
        {
            progress($"  no timeline: the audit log could not be read ({e.Message}); qwenctl history shows it");
            return [];
        }
        var events = history.Events ?? [];
        var first = events.ToList().FindIndex(e => e.State.RolloutId == rolloutId);
        if (first < 0) return [];
        var timeline = new List<RolloutEvent>();
        for (var i = first; i < events.Count; i++)
        {
            if (events[i].State.RolloutId != rolloutId && events[i].Trigger == "start") break;
            timeline.Add(events[i]);
            if (events[i].State.RolloutId != rolloutId) break;
        }
        return timeline;
    }

    /// <summary>The timeline as lines: each change with its cause and reason (a judge's reason is its verdict's evidence).</summary>
    public static IEnumerable<string> Format(PipelineResult result)
    {
        foreach (var e in result.Timeline)
            yield return $"  {e.At:HH:mm:ss.fff}  {e.Trigger,-9} {e.From,10} -> {e.To,-10} {e.Cause,-8} {e.Actor,-9} {e.Reason}";
        if (result.Verdict is { } v && result.Timeline.Count > 0 && v.RolloutId == result.Timeline[0].State.RolloutId)
        {
            yield return $"  latest verdict: {v.Outcome} on {v.Samples} samples, candidate {v.CandidateRelease?.ToString() ?? "-"} vs live {v.LiveRelease?.ToString() ?? "-"}";
            foreach (var c in v.Checks)
                yield return $"    {(c.Passed ? "ok  " : "FAIL")} {c.Name,-24} {c.Value?.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture) ?? "-",8} ({c.Threshold}) on {c.Samples}: {c.Detail}";
        }
    }
}
