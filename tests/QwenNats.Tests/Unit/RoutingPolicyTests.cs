using QwenNats.Messaging;
using QwenNats.Ingress.Routing;

namespace QwenNats.Tests.Unit;

public sealed class RoutingPolicyTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);
    private static RolloutState Stable => new() { Live = "blue" };
    private static RolloutState Canary(int weight) => new() { Phase = RolloutPhase.Canary, Live = "blue", Candidate = "green", Weight = weight, Step = 1 };
    private static SessionPin Pin(string colour) => new() { Colour = colour, PinnedAt = Now };

    [Fact]
    public void A_new_session_in_a_stable_system_goes_live_and_is_pinned()
    {
        var d = RoutingPolicy.Decide(Stable, null, "s1", Now);
        Assert.Equal(new RouteDecision("blue", RouteReason.NewSession, true), d);
    }

    [Fact]
    public void A_pinned_session_follows_its_pin_while_that_colour_serves()
    {
        Assert.Equal(new RouteDecision("green", RouteReason.Pinned, false), RoutingPolicy.Decide(Canary(10), Pin("green"), "s1", Now));
        Assert.Equal(new RouteDecision("blue", RouteReason.Pinned, false), RoutingPolicy.Decide(Canary(100), Pin("blue"), "s1", Now));
    }

    [Fact]
    public void After_a_promotion_old_colour_sessions_finish_there_and_new_ones_go_to_the_new_live()
    {
        var promoted = new RolloutState { Phase = RolloutPhase.Promoted, Live = "green", Standby = "blue", Weight = 100 };
        Assert.Equal("blue", RoutingPolicy.Decide(promoted, Pin("blue"), "s1", Now).Colour);
        Assert.Equal("green", RoutingPolicy.Decide(promoted, null, "s2", Now).Colour);
        var stable = new RolloutState { Live = "green" };
        var after = RoutingPolicy.Decide(stable, Pin("blue"), "s1", Now);
        Assert.Equal(new RouteDecision("green", RouteReason.Repinned, true), after);
    }

    [Fact]
    public void A_pin_to_the_candidates_colour_from_before_the_rollout_moves_to_live_and_the_rollouts_own_pins_stay()
    {
        // Blue was live (or the standby of a bake window) when the session was pinned in rollout r-1; it went quiet, and
        // blue is now the candidate of rollout r-2.
        var old = new SessionPin { Colour = "blue", RolloutId = "r-1", PinnedAt = Now.AddMinutes(-20) };
        var shadow = new RolloutState { Phase = RolloutPhase.Shadow, Live = "green", Candidate = "blue", RolloutId = "r-2" };
        Assert.Equal(new RouteDecision("green", RouteReason.Repinned, true), RoutingPolicy.Decide(shadow, old, "s1", Now));
        var canary = shadow with { Phase = RolloutPhase.Canary, Weight = 10, Step = 1 };
        var paused = canary with { Phase = RolloutPhase.Paused, PausedFrom = RolloutPhase.Canary };
        // A session the hash does not give the candidate (at 10 %): its old pin must not put it there either.
        var session = Enumerable.Range(0, 1000).Select(i => $"s{i}").First(s => RoutingPolicy.Bucket(s) >= 10 * RoutingPolicy.Buckets / 100);
        Assert.Equal("green", RoutingPolicy.Decide(canary, old, session, Now).Colour);
        Assert.Equal("green", RoutingPolicy.Decide(paused, old, session, Now).Colour);
        Assert.Equal("green", RoutingPolicy.Decide(canary, old with { RolloutId = null }, session, Now).Colour);

        // Pinned to the candidate in this rollout (the canary's hash, or a pin written in it): kept.
        var ours = old with { RolloutId = "r-2" };
        Assert.Equal(new RouteDecision("blue", RouteReason.Pinned, false), RoutingPolicy.Decide(canary, ours, session, Now));
        Assert.Equal(new RouteDecision("blue", RouteReason.Pinned, false), RoutingPolicy.Decide(paused, ours, session, Now));
        // Pins to the live colour and to a bake window's standby keep their colour whatever rollout wrote them.
        Assert.Equal(new RouteDecision("green", RouteReason.Pinned, false), RoutingPolicy.Decide(canary, old with { Colour = "green" }, session, Now));
        var promoted = new RolloutState { Phase = RolloutPhase.Promoted, Live = "blue", Standby = "green", RolloutId = "r-2", Weight = 100 };
        Assert.Equal(new RouteDecision("green", RouteReason.Pinned, false), RoutingPolicy.Decide(promoted, old with { Colour = "green" }, session, Now));
        // An operator's pin is the operator's decision, from whichever rollout.
        Assert.Equal(new RouteDecision("blue", RouteReason.OperatorPin, false), RoutingPolicy.Decide(shadow, old with { By = "operator" }, "s1", Now));
    }

    [Fact]
    public void A_session_whose_pin_could_not_be_read_goes_live_never_to_the_canary_by_its_hash()
    {
        // "load-4-0" hashes into bucket 2029: a session known to be new goes to the candidate at weight 50.
        Assert.True(RoutingPolicy.Bucket("load-4-0") < 5000);
        Assert.Equal("green", RoutingPolicy.Decide(Canary(50), null, "load-4-0", Now).Colour);
        // But when its pin is unknown it may be pinned to live already: it stays live, and nothing is written.
        foreach (var state in new[] { Canary(50), Canary(100), Stable, new RolloutState { Phase = RolloutPhase.Shadow, Live = "blue", Candidate = "green" } })
            Assert.Equal(new RouteDecision("blue", RouteReason.NewSession, false), RoutingPolicy.DecideUnknownPin(state));
    }

    [Theory]
    [InlineData(RolloutPhase.RolledBack)]
    [InlineData(RolloutPhase.Stable)]
    public void A_pin_to_a_rolled_back_or_aborted_colour_moves_to_live_at_once(RolloutPhase phase)
    {
        var state = new RolloutState { Phase = phase, Live = "blue", RolledBackColour = "green" };
        Assert.Equal(new RouteDecision("blue", RouteReason.Repinned, true), RoutingPolicy.Decide(state, Pin("green"), "s1", Now));
    }

    [Fact]
    public void Operator_pins_hold_until_they_expire_or_their_colour_is_rolled_back()
    {
        var pin = new SessionPin { Colour = "green", By = "operator", PinnedAt = Now, ExpiresAt = Now.AddMinutes(5) };
        Assert.Equal(RouteReason.OperatorPin, RoutingPolicy.Decide(Stable, pin, "s1", Now).Reason);
        Assert.Equal("green", RoutingPolicy.Decide(Stable, pin, "s1", Now).Colour);
        Assert.Equal("blue", RoutingPolicy.Decide(Stable, pin, "s1", Now.AddMinutes(6)).Colour);
        var rolledBack = new RolloutState { Phase = RolloutPhase.RolledBack, Live = "blue", RolledBackColour = "green" };
        Assert.Equal("blue", RoutingPolicy.Decide(rolledBack, pin, "s1", Now).Colour);
    }

    [Fact]
    public void Shadow_sends_no_new_session_to_the_candidate()
    {
        var shadow = new RolloutState { Phase = RolloutPhase.Shadow, Live = "blue", Candidate = "green" };
        Assert.All(Enumerable.Range(0, 500), i => Assert.Equal("blue", RoutingPolicy.Decide(shadow, null, $"s{i}", Now).Colour));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(10)]
    [InlineData(25)]
    [InlineData(50)]
    [InlineData(100)]
    public void The_canary_share_of_new_sessions_matches_the_weight(int weight)
    {
        const int n = 20_000;
        var green = Enumerable.Range(0, n).Count(i => RoutingPolicy.Decide(Canary(weight), null, Guid.NewGuid().ToString(), Now).Colour == "green");
        var p = weight / 100.0;
        var sd = Math.Sqrt(n * p * (1 - p));
        Assert.InRange(green, n * p - 5 * sd - 1, n * p + 5 * sd + 1);
    }

    [Fact]
    public void The_same_session_always_lands_in_the_same_bucket()
    {
        Assert.Equal(RoutingPolicy.Bucket("session-42"), RoutingPolicy.Bucket("session-42"));
        Assert.InRange(RoutingPolicy.Bucket("x"), 0, RoutingPolicy.Buckets - 1);
    }

    [Fact]
    public void A_paused_canary_keeps_its_weight_for_new_sessions()
    {
        var paused = Canary(100) with { Phase = RolloutPhase.Paused, PausedFrom = RolloutPhase.Canary };
        Assert.Equal("green", RoutingPolicy.Decide(paused, null, "s1", Now).Colour);
    }

    // Implicit pins: a session id the ingress made up carries the state version it was first routed under.
    private static readonly ImplicitPinLimits Limits = new(TimeSpan.FromMinutes(30), TimeSpan.FromMinutes(1));
    private static string MadeUp(long version, DateTimeOffset? at = null) => MadeSessionId.New(version, at ?? Now);
    private static RolloutState StableAt(long version, long? liveVersion, string live = "blue") => new() { Live = live, Version = version, LiveVersion = liveVersion };
    /// <summary>green promoted at version 10: blue is on standby until the bake window closes.</summary>
    private static RolloutState PromotedAt10 => new() { Phase = RolloutPhase.Promoted, Live = "green", Standby = "blue", Weight = 100, Version = 10, LiveVersion = 10 };

    private static RouteDecision Returning(RolloutState state, string session, StoredPin stored = StoredPin.Missing) =>
        RoutingPolicy.DecideKnown(state, stored, null, session, Now, Limits, out _);

    [Fact]
    public void A_made_up_session_going_live_needs_no_pin_in_KV_its_id_carries_it()
    {
        var state = StableAt(5, 0);
        var session = MadeUp(5);
        Assert.Equal(new RouteDecision("blue", RouteReason.NewSession, false), RoutingPolicy.DecideMadeUp(state, session, Now, Limits, implicitPins: true));
        Assert.Equal(ImplicitPinKind.Pinned, RoutingPolicy.ImplicitPin(state, session, Now, Limits, out var pin));
        Assert.Equal("blue", pin!.Colour);
        // Shadow sends no new session to the candidate: nothing to write either.
        var shadow = state with { Phase = RolloutPhase.Shadow, Candidate = "green", Version = 6 };
        Assert.Equal(new RouteDecision("blue", RouteReason.NewSession, false), RoutingPolicy.DecideMadeUp(shadow, MadeUp(6), Now, Limits, implicitPins: true));
        // Turned off (Ingress:ImplicitPins false): pinned in KV as before.
        Assert.Equal(new RouteDecision("blue", RouteReason.NewSession, true), RoutingPolicy.DecideMadeUp(state, session, Now, Limits, implicitPins: false));
    }

    [Fact]
    public void A_made_up_session_the_canary_sends_to_the_candidate_is_pinned_in_KV()
    {
        var canary = Canary(100) with { Version = 7, LiveVersion = 0 };
        Assert.Equal(new RouteDecision("green", RouteReason.NewSession, true), RoutingPolicy.DecideMadeUp(canary, MadeUp(7), Now, Limits, implicitPins: true));
        var paused = canary with { Phase = RolloutPhase.Paused, PausedFrom = RolloutPhase.Canary, Version = 8 };
        Assert.Equal(new RouteDecision("green", RouteReason.NewSession, true), RoutingPolicy.DecideMadeUp(paused, MadeUp(8), Now, Limits, implicitPins: true));
        // At weight 0 it goes live: no pin to write.
        Assert.False(RoutingPolicy.DecideMadeUp(Canary(0) with { Version = 7, LiveVersion = 0 }, MadeUp(7), Now, Limits, implicitPins: true).WritePin);
    }

    [Fact]
    public void A_made_up_id_whose_state_changed_the_live_colour_before_its_first_route_is_pinned_in_KV()
    {
        // Made under version 9 (blue live), routed under the promotion at 10 (green live): its id says blue, the
        // decision says green, so the pin is written.
        Assert.Equal(new RouteDecision("green", RouteReason.NewSession, true), RoutingPolicy.DecideMadeUp(PromotedAt10, MadeUp(9), Now, Limits, implicitPins: true));
    }

    [Fact]
    public void A_returning_made_up_session_follows_the_colour_live_when_it_was_made_even_in_a_canary_at_100()
    {
        var canary = Canary(100) with { Version = 12, LiveVersion = 0 };
        var session = MadeUp(5);
        Assert.Equal(new RouteDecision("blue", RouteReason.Pinned, false), RoutingPolicy.DecideKnown(canary, StoredPin.Missing, null, session, Now, Limits, out var fromId));
        Assert.True(fromId); // the caller writes it to KV now
        // Made at the version the live colour became live, or after it: live.
        Assert.Equal("blue", Returning(StableAt(20, 5), MadeUp(5)).Colour);
        Assert.Equal("green", Returning(PromotedAt10, MadeUp(10)).Colour);
        Assert.Equal("green", Returning(PromotedAt10 with { Version = 11 }, MadeUp(11)).Colour);
    }

    [Fact]
    public void After_a_promotion_a_made_up_session_of_the_old_live_colour_finishes_there_within_the_bake_window()
    {
        Assert.Equal(new RouteDecision("blue", RouteReason.Pinned, false), Returning(PromotedAt10, MadeUp(9)));
        Assert.Equal(new RouteDecision("blue", RouteReason.Pinned, false), Returning(PromotedAt10 with { Version = 11 }, MadeUp(3)));
    }

    [Fact]
    public void After_the_bake_window_a_made_up_session_of_the_old_live_colour_is_repinned_to_live()
    {
        var stable = new RolloutState { Live = "green", Version = 11, LiveVersion = 10 };
        Assert.Equal(new RouteDecision("green", RouteReason.Repinned, true), Returning(stable, MadeUp(9)));
        // And after a rollback of the promotion (blue live again from version 11), one made on green is repinned to blue.
        var rolledBack = new RolloutState { Phase = RolloutPhase.RolledBack, Live = "blue", RolledBackColour = "green", Version = 11, LiveVersion = 11 };
        Assert.Equal(new RouteDecision("blue", RouteReason.Repinned, true), Returning(rolledBack, MadeUp(10)));
    }

    [Fact]
    public void A_made_up_session_older_than_the_idle_ttl_has_no_pin_and_is_decided_as_new()
    {
        var canary = Canary(100) with { Version = 12, LiveVersion = 0 };
        var old = MadeUp(5, Now - Limits.Idle!.Value);
        Assert.Equal(ImplicitPinKind.None, RoutingPolicy.ImplicitPin(canary, old, Now, Limits, out _));
        Assert.Equal(new RouteDecision("green", RouteReason.NewSession, true), Returning(canary, old));
        // From further in the future than the clock skew allows: not made by an ingress.
        Assert.Equal(ImplicitPinKind.None, RoutingPolicy.ImplicitPin(canary, MadeUp(5, Now + TimeSpan.FromMinutes(2)), Now, Limits, out _));
        Assert.Equal(ImplicitPinKind.Pinned, RoutingPolicy.ImplicitPin(canary, MadeUp(5, Now + TimeSpan.FromSeconds(30)), Now, Limits, out _));
    }

    [Fact]
    public void Without_live_version_an_old_promoters_state_there_are_no_implicit_pins()
    {
        var canary = Canary(100) with { Version = 12 };
        Assert.Equal(ImplicitPinKind.None, RoutingPolicy.ImplicitPin(canary, MadeUp(5), Now, Limits, out _));
        Assert.Equal(new RouteDecision("green", RouteReason.NewSession, true), Returning(canary, MadeUp(5)));
        Assert.True(RoutingPolicy.DecideMadeUp(StableAt(5, null), MadeUp(5), Now, Limits, implicitPins: true).WritePin);
    }

    [Fact]
    public void A_deleted_pin_of_a_made_up_session_is_not_brought_back_by_its_id()
    {
        var canary = Canary(100) with { Version = 12, LiveVersion = 0 };
        var session = MadeUp(5);
        Assert.Equal("blue", Returning(canary, session).Colour);
        Assert.Equal(new RouteDecision("green", RouteReason.NewSession, true), RoutingPolicy.DecideKnown(canary, StoredPin.Deleted, null, session, Now, Limits, out var fromId));
        Assert.False(fromId);
    }

    [Fact]
    public void A_stored_pin_wins_over_the_pin_a_made_up_id_carries()
    {
        var canary = Canary(100) with { Version = 12, LiveVersion = 0 };
        Assert.Equal(new RouteDecision("green", RouteReason.Pinned, false), RoutingPolicy.DecideKnown(canary, StoredPin.Pinned, Pin("green"), MadeUp(5), Now, Limits, out var fromId));
        Assert.False(fromId);
    }

    [Fact]
    public void A_made_up_id_from_a_state_this_ingress_has_not_applied_or_before_the_ttl_is_known_is_routed_live_unpinned()
    {
        var canary = Canary(100) with { Version = 12, LiveVersion = 0 };
        Assert.Equal(ImplicitPinKind.Unknown, RoutingPolicy.ImplicitPin(canary, MadeUp(13), Now, Limits, out _));
        Assert.Equal(RoutingPolicy.DecideUnknownPin(canary), Returning(canary, MadeUp(13)));
        Assert.Equal(RoutingPolicy.DecideUnknownPin(canary), RoutingPolicy.DecideKnown(canary, StoredPin.Missing, null, MadeUp(5), Now, Limits with { Idle = null }, out _));
        // Its first request cannot skip the KV write without knowing the TTL.
        Assert.True(RoutingPolicy.DecideMadeUp(StableAt(5, 0), MadeUp(5), Now, Limits with { Idle = null }, implicitPins: true).WritePin);
    }

    [Fact]
    public void A_forged_made_up_id_never_pins_to_the_candidate()
    {
        var states = new[]
        {
            Canary(100) with { Version = 12, LiveVersion = 0 },
            Canary(100) with { Version = 12, LiveVersion = 12 },
            Canary(100) with { Phase = RolloutPhase.Paused, PausedFrom = RolloutPhase.Canary, Version = 12, LiveVersion = 3 },
            new RolloutState { Phase = RolloutPhase.Shadow, Live = "blue", Candidate = "green", Version = 12, LiveVersion = 3 },
            PromotedAt10 with { Version = 12 },
        };
        foreach (var state in states)
            for (var version = 0L; version <= 14; version++)
                if (RoutingPolicy.ImplicitPin(state, MadeUp(version), Now, Limits, out var pin) == ImplicitPinKind.Pinned)
                    Assert.NotEqual(state.Candidate, pin!.Colour);
    }

    [Fact]
    public void A_client_chosen_id_has_no_implicit_pin()
    {
        var canary = Canary(100) with { Version = 12, LiveVersion = 0 };
        Assert.Equal(ImplicitPinKind.None, RoutingPolicy.ImplicitPin(canary, "my-session", Now, Limits, out _));
        Assert.Equal(new RouteDecision("green", RouteReason.NewSession, true), Returning(canary, "my-session"));
    }
}
