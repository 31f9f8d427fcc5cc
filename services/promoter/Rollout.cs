using QwenNats.Messaging;
using Stateless;
using Stateless.Graph;

namespace QwenNats.Promoter;

public enum RolloutTrigger
{
    Start,
    Promote,
    PromoteFull,
    SetWeight,
    Pause,
    Resume,
    Rollback,
    Abort,
    Finish,
}

/// <summary>The outcome of a command: the new state, or why it was refused (and nothing changed).</summary>
public sealed record RolloutOutcome(bool Ok, RolloutState State, RolloutPhase From, string? Code = null, string? Error = null);

/// <summary>
/// The rollout as a Stateless machine over a <see cref="RolloutState"/> kept outside it (accessor/mutator),
/// so the state lives in the KV bucket and a restarted promoter resumes exactly where it was.
/// One instance per handled command; methods are named for the operator's actions.
/// </summary>
public sealed class Rollout
{
    private readonly StateMachine<RolloutPhase, RolloutTrigger> _machine;
    private readonly StateMachine<RolloutPhase, RolloutTrigger>.TriggerWithParameters<string, ReleaseRef?, ReleaseRef?> _start;
    private readonly StateMachine<RolloutPhase, RolloutTrigger>.TriggerWithParameters<int> _setWeight;
    private readonly PromoterOptions _options;
    private readonly TimeProvider _clock;
    private RolloutState _state;

    public Rollout(RolloutState state, PromoterOptions options, TimeProvider clock)
    {
        _state = state;
        _options = options;
        _clock = clock;
        _machine = new StateMachine<RolloutPhase, RolloutTrigger>(() => _state.Phase, p => _state = _state with { Phase = p });
        _start = _machine.SetTriggerParameters<string, ReleaseRef?, ReleaseRef?>(RolloutTrigger.Start);
        _setWeight = _machine.SetTriggerParameters<int>(RolloutTrigger.SetWeight);
        Configure();
    }

    public RolloutState State => _state;

    private int Steps => _options.CanarySteps.Count;

    private void Configure()
    {
        _machine.Configure(RolloutPhase.Stable)
            .OnEntry(() => _state = _state with
            {
                Candidate = null, Standby = null, Weight = 0, Step = 0, PausedFrom = null, BakeUntil = null, RolloutId = null,
                LiveRelease = null, CandidateRelease = null,
            })
            .Permit(RolloutTrigger.Start, RolloutPhase.Shadow);

        _machine.Configure(RolloutPhase.RolledBack)
            .OnEntry(t => _state = _state with
            {
                RolledBackColour = t.Source == RolloutPhase.Promoted ? _state.Live : _state.Candidate,
                Live = t.Source == RolloutPhase.Promoted ? _state.Standby ?? _state.Live : _state.Live,
                Candidate = null, Standby = null, Weight = 0, Step = 0, PausedFrom = null, BakeUntil = null,
            })
            .Permit(RolloutTrigger.Start, RolloutPhase.Shadow)
            .Permit(RolloutTrigger.Finish, RolloutPhase.Stable);

        _machine.Configure(RolloutPhase.Shadow)
            .OnEntryFrom(_start, (candidate, candidateRelease, liveRelease) => _state = _state with
            {
                Candidate = candidate, Standby = null, Weight = 0, Step = 0, RolledBackColour = null,
                CandidateRelease = candidateRelease, LiveRelease = liveRelease,
                RolloutId = $"r-{_clock.GetUtcNow():yyyyMMddHHmmss}-{Guid.NewGuid().ToString("N")[..6]}",
            }, "take the candidate")
            .Permit(RolloutTrigger.Promote, RolloutPhase.Canary)
            .Permit(RolloutTrigger.PromoteFull, RolloutPhase.Promoted)
            .Permit(RolloutTrigger.SetWeight, RolloutPhase.Canary)
            .Permit(RolloutTrigger.Pause, RolloutPhase.Paused)
            .Permit(RolloutTrigger.Rollback, RolloutPhase.RolledBack)
            .Permit(RolloutTrigger.Abort, RolloutPhase.Stable);

        _machine.Configure(RolloutPhase.Canary)
            .OnEntryFrom(RolloutTrigger.Promote, () => _state = _state with { Step = _state.Step + 1, Weight = Math.Max(_state.Weight, _options.CanarySteps[_state.Step]) }, "next canary step")
            .OnEntryFrom(_setWeight, weight => _state = _state with { Weight = weight }, "set the weight")
            .PermitReentryIf(RolloutTrigger.Promote, () => _state.Step < Steps, "more canary steps")
            .PermitIf(RolloutTrigger.Promote, RolloutPhase.Promoted, () => _state.Step >= Steps, "last canary step")
            .Permit(RolloutTrigger.PromoteFull, RolloutPhase.Promoted)
            .InternalTransition(_setWeight, (weight, _) => _state = _state with { Weight = weight })
            .Permit(RolloutTrigger.Pause, RolloutPhase.Paused)
            .Permit(RolloutTrigger.Rollback, RolloutPhase.RolledBack)
            .Permit(RolloutTrigger.Abort, RolloutPhase.Stable);

        _machine.Configure(RolloutPhase.Paused)
            .OnEntry(t => _state = _state with { PausedFrom = t.Source })
            .OnExit(() => _state = _state with { PausedFrom = null })
            .PermitDynamic(RolloutTrigger.Resume, () => _state.PausedFrom ?? RolloutPhase.Shadow, "the phase it was paused in")
            .Permit(RolloutTrigger.Rollback, RolloutPhase.RolledBack)
            .Permit(RolloutTrigger.Abort, RolloutPhase.Stable);

        _machine.Configure(RolloutPhase.Promoted)
            .OnEntry(() => _state = _state with
            {
                Standby = _state.Live, Live = _state.Candidate ?? _state.Live, Candidate = null, Weight = 100,
                BakeUntil = _clock.GetUtcNow() + _options.BakeWindow,
            })
            .Permit(RolloutTrigger.Finish, RolloutPhase.Stable)
            .Permit(RolloutTrigger.Promote, RolloutPhase.Stable)
            .Permit(RolloutTrigger.Rollback, RolloutPhase.RolledBack);
    }

    /// <summary>
    /// Starts a rollout of <paramref name="candidate"/>. With a <paramref name="pool"/> (the promoter always gives one) it is
    /// refused unless the pool is ready: at least one worker, every worker serving the colour's assigned release.
    /// </summary>
    public RolloutOutcome Start(string? candidate, string reason, string actor, PoolStatus? pool = null, ReleaseRef? liveRelease = null)
    {
        if (string.IsNullOrWhiteSpace(candidate))
            return Refuse("invalid_request", "'candidate' is required.");
        if (!_options.Colours.Contains(candidate, StringComparer.Ordinal))
            return Refuse("unknown_colour", $"Unknown colour '{Shorten(candidate)}'; known colours: {string.Join(", ", _options.Colours)}.");
        if (_state.Phase is not (RolloutPhase.Stable or RolloutPhase.RolledBack))
            return Refuse("rollout_in_progress", $"A rollout of '{_state.Candidate ?? _state.Live}' is already in phase {_state.Phase}; finish, roll back or abort it first.");
        if (candidate == _state.Live)
            return Refuse("already_live", $"'{candidate}' is already the live colour.");
        if (pool is { Ready: false })
            return Refuse(pool.Failed ? "release_failed" : "pool_not_ready", $"The candidate is not ready: {pool.Why}.");
        return Fire(RolloutTrigger.Start, reason, actor, () => _machine.Fire(_start, candidate, pool?.Assigned?.Ref, liveRelease));
    }

    public RolloutOutcome Promote(bool full, string reason, string actor)
    {
        if (_state.Phase == RolloutPhase.Paused)
            return Refuse("paused", "The rollout is paused; resume it before promoting.");
        if (_state.Phase is RolloutPhase.Stable or RolloutPhase.RolledBack)
            return Refuse("no_rollout", "There is no rollout to promote; start one first.");
        var trigger = full && _state.Phase != RolloutPhase.Promoted ? RolloutTrigger.PromoteFull : RolloutTrigger.Promote;
        return Fire(trigger, reason, actor);
    }

    public RolloutOutcome SetWeight(int? weight, string reason, string actor)
    {
        if (weight is not { } w || w < 0 || w > 100)
            return Refuse("invalid_request", "'weight' must be an integer from 0 to 100.");
        if (_state.Phase is not (RolloutPhase.Shadow or RolloutPhase.Canary))
            return Refuse("invalid_phase", $"The canary weight can be set in Shadow or Canary, not in {_state.Phase}.");
        return Fire(RolloutTrigger.SetWeight, reason, actor, () => _machine.Fire(_setWeight, w));
    }

    public RolloutOutcome Pause(string reason, string actor) => Guarded(RolloutTrigger.Pause, reason, actor, "Only a rollout in Shadow or Canary can be paused.");

    public RolloutOutcome Resume(string reason, string actor) => Guarded(RolloutTrigger.Resume, reason, actor, "Only a paused rollout can be resumed.");

    public RolloutOutcome Rollback(string reason, string actor) => Guarded(RolloutTrigger.Rollback, reason, actor, "There is nothing to roll back.");

    public RolloutOutcome Abort(string reason, string actor) =>
        Guarded(RolloutTrigger.Abort, reason, actor, _state.Phase == RolloutPhase.Promoted
            ? "The candidate is already live; use rollback to return to the previous colour."
            : "There is no rollout to abort.");

    /// <summary>Closes a bake window or a rollback hold when its time has come (the promoter's timer).</summary>
    public RolloutOutcome? FinishIfDue()
    {
        var now = _clock.GetUtcNow();
        var due = _state.Phase switch
        {
            RolloutPhase.Promoted => _state.BakeUntil is { } until && now >= until,
            RolloutPhase.RolledBack => now >= _state.Since + _options.RolledBackHold,
            _ => false,
        };
        if (!due) return null;
        var reason = _state.Phase == RolloutPhase.Promoted ? "bake window closed" : "rollback complete";
        return Fire(RolloutTrigger.Finish, reason, "promoter");
    }

    private RolloutOutcome Guarded(RolloutTrigger trigger, string reason, string actor, string refusal) =>
        _machine.CanFire(trigger) ? Fire(trigger, reason, actor) : Refuse("invalid_phase", $"{refusal} (phase is {_state.Phase}).");

    private RolloutOutcome Fire(RolloutTrigger trigger, string reason, string actor, Action? fire = null)
    {
        var from = _state.Phase;
        var live = _state.Live;
        if (!_machine.CanFire(trigger))
            return Refuse("invalid_phase", $"'{trigger}' is not allowed in phase {from}.");
        (fire ?? (() => _machine.Fire(trigger)))();
        var version = _state.Version + 1;
        // LiveVersion: the version at which the live colour became live (a promotion, a rollback of a promotion);
        // ingresses derive the implicit pins of the sessions they made up from it.
        _state = _state with
        {
            Reason = reason, Actor = actor, Since = _clock.GetUtcNow(), Version = version,
            LiveVersion = _state.Live != live ? version : _state.LiveVersion,
        };
        return new RolloutOutcome(true, _state, from);
    }

    private RolloutOutcome Refuse(string code, string error) => new(false, _state, _state.Phase, code, error);

    private static string Shorten(string s) => s.Length <= 32 ? s : s[..32] + "…";

    /// <summary>The machine's graph as Mermaid, for docs/rollout-states.md.</summary>
    public static string MermaidGraphText() =>
        MermaidGraph.Format(new Rollout(new RolloutState { Live = Colours.Blue }, new PromoterOptions(), TimeProvider.System)._machine.GetInfo());
}
