using QwenNats.Messaging;
using QwenNats.Worker;

namespace QwenNats.Tests.Unit;

/// <summary>When a worker's colour counts as "only a candidate" (its decode threads then run at a lower priority).</summary>
public sealed class CandidateRoleTests
{
    [Theory]
    [InlineData(RolloutPhase.Shadow, null, "green", true)]
    [InlineData(RolloutPhase.Paused, RolloutPhase.Shadow, "green", true)]
    [InlineData(RolloutPhase.Paused, RolloutPhase.Canary, "green", false)]
    [InlineData(RolloutPhase.Canary, null, "green", false)]
    [InlineData(RolloutPhase.Promoted, null, "green", false)]
    [InlineData(RolloutPhase.Stable, null, "green", false)]
    [InlineData(RolloutPhase.Shadow, null, "blue", false)]
    public void Only_the_candidate_of_a_rollout_in_Shadow_is_only_a_candidate(RolloutPhase phase, RolloutPhase? pausedFrom, string colour, bool expected)
    {
        var state = new RolloutState { Phase = phase, PausedFrom = pausedFrom, Live = "blue", Candidate = phase == RolloutPhase.Stable ? null : "green", RolloutId = "r1" };
        Assert.Equal(expected, WorkerService.OnlyCandidate(state, colour));
    }
}
