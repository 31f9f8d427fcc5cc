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
}
