using QwenNats.Messaging;

namespace QwenNats.Ingress.Routing;

/// <summary>Why a request went where it went (logged, and returned in <c>X-Qwen-Route</c>).</summary>
public enum RouteReason
{
    Explicit,
    Pinned,
    OperatorPin,
    NewSession,
    Repinned,
}

public sealed record RouteDecision(string Colour, RouteReason Reason, bool WritePin);

/// <summary>What the pins bucket holds for a session: its pin, nothing ever written (or expired), or a delete (an
/// operator's unpin): a deleted key must not bring back the pin a made-up id carries.</summary>
public enum StoredPin
{
    Pinned,
    Missing,
    Deleted,
}

/// <summary>The limits of the pins made-up session ids carry.</summary>
/// <param name="Idle">The pins bucket's idle TTL (its max age; <see cref="TimeSpan.MaxValue"/> when it has none), or
/// null while this ingress does not know it yet.</param>
/// <param name="MaxClockSkew">How far in the future a made-up id's time may be (ingresses' clocks differ).</param>
public sealed record ImplicitPinLimits(TimeSpan? Idle, TimeSpan MaxClockSkew);

/// <summary>Whether a session has a pin carried by its made-up id.</summary>
public enum ImplicitPinKind
{
    /// <summary>None: not a made-up id, too old, from the future, or the state predates <see cref="RolloutState.LiveVersion"/>.</summary>
    None,
    /// <summary>A pin (possibly to a colour that no longer serves, which <see cref="RoutingPolicy.Decide"/> moves to live).</summary>
    Pinned,
    /// <summary>The id was made under a state version this ingress has not applied yet, or the TTL is not known yet:
    /// its pin cannot be told; route as for a pin that could not be read.</summary>
    Unknown,
}

/// <summary>
/// Where a session goes, from the rollout state and its pin: pure, so it is unit-tested without NATS.
/// A pinned session stays on its colour while that colour serves (live, the running candidate, or the
/// standby colour during a promotion's bake window); a pin to a colour that no longer serves — rolled
/// back, aborted, or out of its bake window — moves to live at once, and so does a pin to the candidate's colour
/// written before the running rollout began. A new session is sent to the
/// candidate when the hash of its id falls under the canary weight.
/// </summary>
public static class RoutingPolicy
{
    public const int Buckets = 10_000;

    /// <summary>A stable bucket in [0, 10000) from the session id (FNV-1a).</summary>
    public static int Bucket(string sessionId)
    {
        var hash = 2166136261u;
        foreach (var b in System.Text.Encoding.UTF8.GetBytes(sessionId))
        {
            hash ^= b;
            hash *= 16777619u;
        }
        return (int)(hash % Buckets);
    }

    public static RouteDecision Decide(RolloutState state, SessionPin? pin, string sessionId, DateTimeOffset now)
    {
        if (pin is { ExpiresAt: { } expires } && expires <= now)
            pin = null;
        if (pin is not null)
        {
            if (pin.By == "operator" && !(state.Phase == RolloutPhase.RolledBack && state.RolledBackColour == pin.Colour))
                return new RouteDecision(pin.Colour, RouteReason.OperatorPin, false);
            if (Serves(state, pin.Colour) && !FromAnotherRollout(state, pin))
                return new RouteDecision(pin.Colour, RouteReason.Pinned, false);
        }
        var colour = CanaryTakes(state, sessionId) ? state.Candidate! : state.Live;
        return new RouteDecision(colour, pin is null ? RouteReason.NewSession : RouteReason.Repinned, true);
    }

    /// <summary>
    /// Where a session goes when its pin could not be read (the pins bucket is not available, or reading
    /// the pin failed): the live colour, with no pin written. Unlike a session known to be new, it must
    /// never be sent to the candidate by the hash of its id: it may already be pinned to live, and the
    /// canary hash would move it to the candidate mid-conversation.
    /// </summary>
    public static RouteDecision DecideUnknownPin(RolloutState state) => new(state.Live, RouteReason.NewSession, false);

    /// <summary>
    /// The pin a session id made up by an ingress (<see cref="MadeSessionId"/>) carries while the pins bucket holds none
    /// for it (the key was never written: a deleted key has no implicit pin). It is the colour that was live when the
    /// session was made: <see cref="RolloutState.Live"/> when the id's version is at least
    /// <see cref="RolloutState.LiveVersion"/>; before that, the previous live colour, which is
    /// <see cref="RolloutState.Standby"/> while the phase is Promoted (the bake window); in any other case a colour that
    /// no longer serves, which <see cref="Decide"/> moves to live like any such pin. Only while the id's time is within
    /// the bucket's idle TTL (a KV pin would have expired too), and only when the state has a
    /// <see cref="RolloutState.LiveVersion"/> (a promoter older than it: no implicit pins).
    /// </summary>
    /// <remarks>
    /// Forgery is harmless by construction: the implicit pin's colour is derived from the rollout state, never read from
    /// the id, so a client that fakes such an id can only be pinned to the live colour or, during a bake window, to the
    /// previous live colour (which still serves its old sessions) — never to the candidate, which only the canary hash
    /// of a new or repinned session (what any client gets by naming a fresh session) or an operator pin hands out. A
    /// fake version beyond the state's is <see cref="ImplicitPinKind.Unknown"/> (live, no pin written); a fake time
    /// beyond the TTL or the clock skew is no pin at all.
    /// </remarks>
    public static ImplicitPinKind ImplicitPin(RolloutState state, string sessionId, DateTimeOffset now, ImplicitPinLimits limits, out SessionPin? pin)
    {
        pin = null;
        if (state.LiveVersion is not { } liveVersion || !MadeSessionId.TryParse(sessionId, out var made))
            return ImplicitPinKind.None;
        if (limits.Idle is not { } idle)
            return ImplicitPinKind.Unknown;
        if (!made.IsFresh(now, idle, limits.MaxClockSkew))
            return ImplicitPinKind.None;
        if (made.Version > state.Version)
            return ImplicitPinKind.Unknown;
        var colour = made.Version >= liveVersion ? state.Live
            : state.Phase == RolloutPhase.Promoted && state.Standby is { } previous ? previous
            : NoLongerServes;
        pin = new SessionPin { Colour = colour, RolloutId = state.RolloutId, PinnedAt = made.MadeAt };
        return ImplicitPinKind.Pinned;
    }

    /// <summary>
    /// The first request of a session this ingress made up: decided as any new session (<see cref="Decide"/> without a
    /// pin), but with no pin to write when the decision is the colour the id's implicit pin gives (the live colour: the
    /// id carries the version of this state). A session the canary hash sends to the candidate is pinned in KV as
    /// before. <paramref name="implicitPins"/> false (<c>Ingress:ImplicitPins</c>) pins every new session in KV.
    /// </summary>
    public static RouteDecision DecideMadeUp(RolloutState state, string sessionId, DateTimeOffset now, ImplicitPinLimits limits, bool implicitPins)
    {
        var decision = Decide(state, null, sessionId, now);
        if (implicitPins && ImplicitPin(state, sessionId, now, limits, out var pin) == ImplicitPinKind.Pinned && pin!.Colour == decision.Colour)
            return decision with { WritePin = false };
        return decision;
    }

    /// <summary>
    /// A session whose pin was read (from the watched copy or KV): a stored pin is applied as it is; with none, the pin
    /// its made-up id carries is (<see cref="ImplicitPin"/>, never for a deleted key). <paramref name="fromId"/> tells
    /// the caller the decision followed such a pin, which it then writes to KV: from its second request on, a made-up
    /// session is an ordinary KV pin.
    /// </summary>
    public static RouteDecision DecideKnown(RolloutState state, StoredPin stored, SessionPin? pin, string sessionId, DateTimeOffset now, ImplicitPinLimits limits, out bool fromId)
    {
        fromId = false;
        if (stored == StoredPin.Pinned)
            return Decide(state, pin, sessionId, now);
        if (stored == StoredPin.Missing)
        {
            switch (ImplicitPin(state, sessionId, now, limits, out var carried))
            {
                case ImplicitPinKind.Unknown:
                    return DecideUnknownPin(state);
                case ImplicitPinKind.Pinned:
                    fromId = true;
                    return Decide(state, carried, sessionId, now);
            }
        }
        return Decide(state, null, sessionId, now);
    }

    /// <summary>The colour of an implicit pin whose colour no longer serves: no state serves it.</summary>
    private const string NoLongerServes = "";

    /// <summary>Whether sessions already pinned to this colour may keep it.</summary>
    public static bool Serves(RolloutState state, string colour) =>
        colour == state.Live
        || (colour == state.Candidate && state.Phase is RolloutPhase.Shadow or RolloutPhase.Canary or RolloutPhase.Paused)
        || (colour == state.Standby && state.Phase == RolloutPhase.Promoted);

    /// <summary>
    /// A pin to the running candidate's colour written before this rollout: the session was on that colour when it was
    /// live or a standby (or the candidate of a rollout since rolled back) and went quiet; its colour now serves a release
    /// under test. Following it would hand an unvetted release live traffic in Shadow, bypass the canary weight in
    /// Canary, and switch the conversation's version mid-way; it moves to live like a pin to a colour that no longer serves.
    /// </summary>
    private static bool FromAnotherRollout(RolloutState state, SessionPin pin) =>
        pin.Colour == state.Candidate && pin.Colour != state.Live && pin.RolloutId != state.RolloutId;

    private static bool CanaryTakes(RolloutState state, string sessionId)
    {
        var canary = state.Phase == RolloutPhase.Canary || (state.Phase == RolloutPhase.Paused && state.PausedFrom == RolloutPhase.Canary);
        return canary && state.Candidate is not null && Bucket(sessionId) < state.Weight * (Buckets / 100);
    }
}
