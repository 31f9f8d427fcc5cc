using Microsoft.Extensions.Time.Testing;
using QwenNats.Messaging;
using QwenNats.Promoter;

namespace QwenNats.Tests.Unit;

public sealed class RolloutMachineTests
{
    private readonly FakeTimeProvider _clock = new(new DateTimeOffset(2026, 11, 25, 12, 0, 0, TimeSpan.Zero));
    private readonly PromoterOptions _options = new() { CanarySteps = [10, 25, 50], BakeWindow = TimeSpan.FromMinutes(5), RolledBackHold = TimeSpan.FromSeconds(30) };

    private Rollout At(RolloutState s) => new(s, _options, _clock);
    private static RolloutState Stable => new() { Live = "blue" };

    private RolloutState Started() => At(Stable).Start("green", "try v2", "ops").State;

    [Fact]
    public void Start_moves_a_stable_system_to_shadow_with_the_candidate()
    {
        var o = At(Stable).Start("green", "new profile", "alice");
        Assert.True(o.Ok);
        Assert.Equal(RolloutPhase.Stable, o.From);
        Assert.Equal(RolloutPhase.Shadow, o.State.Phase);
        Assert.Equal("green", o.State.Candidate);
        Assert.Equal("blue", o.State.Live);
        Assert.Equal(0, o.State.Weight);
        Assert.StartsWith("r-", o.State.RolloutId);
        Assert.Equal("new profile", o.State.Reason);
        Assert.Equal("alice", o.State.Actor);
        Assert.Equal(_clock.GetUtcNow(), o.State.Since);
        Assert.Equal(1, o.State.Version);
    }

    [Theory]
    [InlineData(null, "invalid_request")]
    [InlineData("purple", "unknown_colour")]
    [InlineData("blue", "already_live")]
    public void Start_with_a_bad_candidate_is_refused_and_changes_nothing(string? candidate, string code)
    {
        var o = At(Stable).Start(candidate, "", "ops");
        Assert.False(o.Ok);
        Assert.Equal(code, o.Code);
        Assert.Equal(Stable, o.State);
    }

    [Fact]
    public void Start_while_a_rollout_runs_is_refused()
    {
        var shadow = Started();
        var o = At(shadow).Start("green", "", "ops");
        Assert.False(o.Ok);
        Assert.Equal("rollout_in_progress", o.Code);
        Assert.Equal(shadow, o.State);
    }

    [Fact]
    public void Promote_walks_the_canary_steps_then_promotes_and_the_bake_window_returns_to_stable()
    {
        var s = Started();
        var weights = new List<int>();
        for (var i = 0; i < 3; i++)
        {
            s = At(s).Promote(false, "ok", "ops").State;
            Assert.Equal(RolloutPhase.Canary, s.Phase);
            Assert.Equal(i + 1, s.Step);
            weights.Add(s.Weight);
        }
        Assert.Equal(new[] { 10, 25, 50 }, weights);
        s = At(s).Promote(false, "ok", "ops").State;
        Assert.Equal(RolloutPhase.Promoted, s.Phase);
        Assert.Equal("green", s.Live);
        Assert.Equal("blue", s.Standby);
        Assert.Null(s.Candidate);
        Assert.Equal(_clock.GetUtcNow() + _options.BakeWindow, s.BakeUntil);

        Assert.Null(At(s).FinishIfDue());
        _clock.Advance(_options.BakeWindow);
        var done = At(s).FinishIfDue()!;
        Assert.True(done.Ok);
        Assert.Equal(RolloutPhase.Stable, done.State.Phase);
        Assert.Equal("green", done.State.Live);
        Assert.Null(done.State.Standby);
        Assert.Equal("promoter", done.State.Actor);
    }

    [Fact]
    public void Promote_full_skips_to_promoted_from_shadow_or_canary()
    {
        Assert.Equal(RolloutPhase.Promoted, At(Started()).Promote(true, "", "ops").State.Phase);
        var canary = At(Started()).Promote(false, "", "ops").State;
        var full = At(canary).Promote(true, "", "ops").State;
        Assert.Equal(RolloutPhase.Promoted, full.Phase);
        Assert.Equal("green", full.Live);
    }

    [Fact]
    public void Promote_in_promoted_closes_the_bake_window_early()
    {
        var promoted = At(Started()).Promote(true, "", "ops").State;
        var s = At(promoted).Promote(false, "looks good", "ops").State;
        Assert.Equal(RolloutPhase.Stable, s.Phase);
        Assert.Equal("green", s.Live);
    }

    [Theory]
    [InlineData(RolloutPhase.Stable)]
    [InlineData(RolloutPhase.RolledBack)]
    public void Promote_without_a_rollout_is_refused(RolloutPhase phase)
    {
        var o = At(Stable with { Phase = phase }).Promote(false, "", "ops");
        Assert.False(o.Ok);
        Assert.Equal("no_rollout", o.Code);
    }

    [Fact]
    public void Set_weight_enters_canary_from_shadow_and_adjusts_it_in_canary()
    {
        var s = At(Started()).SetWeight(30, "", "ops").State;
        Assert.Equal(RolloutPhase.Canary, s.Phase);
        Assert.Equal(30, s.Weight);
        s = At(s).SetWeight(5, "", "ops").State;
        Assert.Equal(RolloutPhase.Canary, s.Phase);
        Assert.Equal(5, s.Weight);
        Assert.Equal(0, s.Step);
        var next = At(s with { Weight = 40 }).Promote(false, "", "ops").State;
        Assert.Equal(40, next.Weight);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(101)]
    [InlineData(null)]
    public void Set_weight_out_of_range_is_refused(int? weight)
    {
        var shadow = Started();
        var o = At(shadow).SetWeight(weight, "", "ops");
        Assert.False(o.Ok);
        Assert.Equal("invalid_request", o.Code);
        Assert.Equal(shadow, o.State);
    }

    [Fact]
    public void Set_weight_outside_a_rollout_is_refused()
    {
        Assert.Equal("invalid_phase", At(Stable).SetWeight(10, "", "ops").Code);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Pause_holds_and_resume_returns_to_the_same_phase(bool inCanary)
    {
        var s = Started();
        if (inCanary) s = At(s).Promote(false, "", "ops").State;
        var before = s.Phase;
        var paused = At(s).Pause("look closer", "ops").State;
        Assert.Equal(RolloutPhase.Paused, paused.Phase);
        Assert.Equal(before, paused.PausedFrom);
        Assert.Equal("paused", At(paused).Promote(false, "", "ops").Code);
        Assert.Equal("invalid_phase", At(paused).Pause("", "ops").Code);
        var resumed = At(paused).Resume("", "ops").State;
        Assert.Equal(before, resumed.Phase);
        Assert.Null(resumed.PausedFrom);
        Assert.Equal(s.Weight, resumed.Weight);
        Assert.Equal(s.Step, resumed.Step);
    }

    [Fact]
    public void Resume_when_not_paused_is_refused()
    {
        Assert.Equal("invalid_phase", At(Started()).Resume("", "ops").Code);
        Assert.Equal("invalid_phase", At(Stable).Resume("", "ops").Code);
    }

    [Theory]
    [InlineData("shadow")]
    [InlineData("canary")]
    [InlineData("paused")]
    public void Rollback_before_promotion_keeps_live_and_records_the_rolled_back_colour(string where)
    {
        var s = Started();
        if (where != "shadow") s = At(s).Promote(false, "", "ops").State;
        if (where == "paused") s = At(s).Pause("", "ops").State;
        var rb = At(s).Rollback("bad answers", "bob").State;
        Assert.Equal(RolloutPhase.RolledBack, rb.Phase);
        Assert.Equal("blue", rb.Live);
        Assert.Equal("green", rb.RolledBackColour);
        Assert.Null(rb.Candidate);
        Assert.Equal(0, rb.Weight);
        Assert.Equal("bad answers", rb.Reason);
        Assert.Equal("bob", rb.Actor);
    }

    [Fact]
    public void Rollback_after_promotion_returns_live_to_the_standby_colour()
    {
        var promoted = At(Started()).Promote(true, "", "ops").State;
        var rb = At(promoted).Rollback("regression", "ops").State;
        Assert.Equal("blue", rb.Live);
        Assert.Equal("green", rb.RolledBackColour);
        Assert.Null(rb.Standby);
    }

    [Fact]
    public void Rolled_back_returns_to_stable_after_the_hold_or_starts_again()
    {
        var rb = At(Started()).Rollback("", "ops").State;
        Assert.Null(At(rb).FinishIfDue());
        _clock.Advance(_options.RolledBackHold);
        Assert.Equal(RolloutPhase.Stable, At(rb).FinishIfDue()!.State.Phase);
        Assert.Equal(RolloutPhase.Shadow, At(rb).Start("green", "again", "ops").State.Phase);
    }

    [Fact]
    public void Rollback_with_nothing_to_roll_back_is_refused()
    {
        Assert.Equal("invalid_phase", At(Stable).Rollback("", "ops").Code);
    }

    [Fact]
    public void Abort_cancels_a_rollout_but_not_a_promotion()
    {
        var aborted = At(Started()).Abort("changed my mind", "ops").State;
        Assert.Equal(RolloutPhase.Stable, aborted.Phase);
        Assert.Equal("blue", aborted.Live);
        Assert.Null(aborted.Candidate);
        var promoted = At(Started()).Promote(true, "", "ops").State;
        var o = At(promoted).Abort("", "ops");
        Assert.False(o.Ok);
        Assert.Contains("rollback", o.Error);
        Assert.Equal("invalid_phase", At(Stable).Abort("", "ops").Code);
    }

    [Fact]
    public void Every_change_increments_the_version_and_refusals_do_not()
    {
        var s = Started();
        var v = s.Version;
        s = At(s).Promote(false, "", "ops").State;
        Assert.Equal(v + 1, s.Version);
        var refused = At(s).Start("green", "", "ops");
        Assert.Equal(v + 1, refused.State.Version);
    }

    [Fact]
    public void Live_version_is_the_version_at_which_the_live_colour_became_live_and_moves_only_when_live_changes()
    {
        var s = Stable with { LiveVersion = 0 };
        s = At(s).Start("green", "", "ops").State;
        Assert.Equal(0, s.LiveVersion);
        s = At(s).SetWeight(50, "", "ops").State;
        s = At(s).Pause("", "ops").State;
        s = At(s).Resume("", "ops").State;
        Assert.Equal(0, s.LiveVersion);

        // A promotion: green is live from this version on.
        var promoted = At(s).Promote(true, "", "ops").State;
        Assert.Equal("green", promoted.Live);
        Assert.Equal(promoted.Version, promoted.LiveVersion);
        // The bake window closing (or an early close) does not change the live colour.
        var closed = At(promoted).Promote(false, "", "ops").State;
        Assert.Equal(RolloutPhase.Stable, closed.Phase);
        Assert.Equal(promoted.Version, closed.LiveVersion);
        _clock.Advance(_options.BakeWindow);
        Assert.Equal(promoted.Version, At(promoted).FinishIfDue()!.State.LiveVersion);

        // A rollback of the promotion: blue is live again, from the rollback's version.
        var back = At(promoted).Rollback("regression", "ops").State;
        Assert.Equal("blue", back.Live);
        Assert.Equal(back.Version, back.LiveVersion);
        _clock.Advance(_options.RolledBackHold);
        Assert.Equal(back.Version, At(back).FinishIfDue()!.State.LiveVersion);
    }

    [Theory]
    [InlineData("rollback")]
    [InlineData("abort")]
    public void Live_version_stays_when_a_rollout_ends_without_a_promotion(string how)
    {
        var canary = At(At(Stable with { LiveVersion = 0 }).Start("green", "", "ops").State).Promote(false, "", "ops").State;
        var end = how == "rollback" ? At(canary).Rollback("", "ops").State : At(canary).Abort("", "ops").State;
        Assert.Equal("blue", end.Live);
        Assert.Equal(0, end.LiveVersion);
    }

    [Fact]
    public void A_state_written_before_live_version_existed_keeps_it_null_until_the_live_colour_changes()
    {
        var s = At(Stable).Start("green", "", "ops").State;
        Assert.Null(s.LiveVersion);
        s = At(s).Promote(false, "", "ops").State;
        Assert.Null(s.LiveVersion);
        s = At(s).Promote(true, "", "ops").State;
        Assert.Equal(s.Version, s.LiveVersion);
    }

    [Fact]
    public void The_committed_state_graph_matches_the_code()
    {
        var path = Path.Combine(Paths.RepoRoot, "docs", "rollout-states.md");
        var doc = File.ReadAllText(path).ReplaceLineEndings("\n");
        var graph = Rollout.MermaidGraphText().ReplaceLineEndings("\n").Trim();
        Assert.True(doc.Contains(graph, StringComparison.Ordinal),
            $"docs/rollout-states.md is out of date; replace its mermaid block with:\n{graph}");
    }
}
