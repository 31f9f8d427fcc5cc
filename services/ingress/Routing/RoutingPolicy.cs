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

/// <summary>
/// Where a session goes, from the rollout state and its pin: pure, so it is unit-tested without NATS.
/// A pinned session stays on its colour while that colour serves (live, the running candidate, or the
/// standby colour during a promotion's bake window); a pin to a colour that no longer serves — rolled
/// back, aborted, or out of its bake window — moves to live at once. A new session is sent to the
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
            if (Serves(state, pin.Colour))
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

    /// <summary>Whether sessions already pinned to this colour may keep it.</summary>
    public static bool Serves(RolloutState state, string colour) =>
        colour == state.Live
        || (colour == state.Candidate && state.Phase is RolloutPhase.Shadow or RolloutPhase.Canary or RolloutPhase.Paused)
        || (colour == state.Standby && state.Phase == RolloutPhase.Promoted);

    private static bool CanaryTakes(RolloutState state, string sessionId)
    {
        var canary = state.Phase == RolloutPhase.Canary || (state.Phase == RolloutPhase.Paused && state.PausedFrom == RolloutPhase.Canary);
        return canary && state.Candidate is not null && Bucket(sessionId) < state.Weight * (Buckets / 100);
    }
}
