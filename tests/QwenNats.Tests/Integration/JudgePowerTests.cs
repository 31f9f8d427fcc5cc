using System.Text.Json;
using QwenNats.Messaging;
using QwenNats.Tests.Infrastructure;
using Xunit.Abstractions;

namespace QwenNats.Tests.Integration;

/// <summary>
/// Subtly bad releases against the shipped policy's checks (deploy/rollout-policy.json: its α, β, p0 and p1
/// unchanged; only the step length, the canary steps and the bake shortened): each is rolled back by the check
/// built for it, on real workers under client load. The gross faults are in <see cref="AutomatedRolloutTests"/>.
/// </summary>
[Collection(LoadCollection.Name)]
public sealed class JudgePowerTests(ITestOutputHelper output)
{
    private static readonly string ShippedPolicy = TestPolicies.Shipped(new()
    {
        ["min_step_duration"] = "\"00:00:22\"", ["canary_steps"] = "[50]", ["bake_window"] = "\"00:00:01\"",
        ["inconclusive_pause_after"] = "\"00:03:00\"",
    });

    /// <summary>
    /// A subtle fault, the load that exercises it (clients; every k-th request chat, the rest sentiment) and the
    /// check that must catch it. Sentiment-heavy load gives the label and error checks their pairs sooner.
    /// </summary>
    public static TheoryData<string, string, int, string> SubtleReleases => new()
    {
        { "flips a tenth of labels", "{\"Faults:Fraction\":\"0.1\",\"Faults:FlipLabels\":\"true\"}", 1000, "sentiment_disagreement" },
        { "is 2x slower", "{\"Faults:Fraction\":\"1\",\"Faults:Slowdown\":\"2\"}", 2, "compute_ratio" },
        { "errors on 5%", "{\"Faults:ErrorRate\":\"0.05\"}", 4, "errors" },
        { "hangs on 5%", "{\"Faults:HangRate\":\"0.05\"}", 4, "unanswered" },
    };

    [Theory]
    [MemberData(nameof(SubtleReleases))]
    public async Task A_subtly_bad_candidate_is_rolled_back_by_the_shipped_checks_naming_the_check(string what, string faults, int chatEvery, string check)
    {
        var extra = JsonSerializer.Deserialize<Dictionary<string, string?>>(faults)!;
        await using var rig = await RolloutRig.StartAsync(new RolloutRigOptions { GreenFaults = extra, Policy = ShippedPolicy });
        using var stop = new CancellationTokenSource();
        var load = ClientLoad.RunAsync(rig.Http, stop.Token, clients: 6, chatEvery: chatEvery);
        Assert.True((await Ctl.SendAsync(rig.Operator, "start", $"{{\"candidate\":\"green\",\"reason\":\"a candidate that {what}\"}}")).Ok);
        var final = await rig.WaitForPhaseAsync(output, s => s.Phase is RolloutPhase.Stable or RolloutPhase.RolledBack or RolloutPhase.Paused, TimeSpan.FromSeconds(240));
        await stop.CancelAsync();
        var (ok, failed) = await load;
        output.WriteLine($"client requests: {ok} ok, {failed.Count} failed");

        var history = await rig.HistoryAsync(output);
        Assert.Equal(RolloutPhase.RolledBack, final.Phase);
        Assert.Equal("blue", final.Live);
        var rollback = history.Last(e => e.Trigger == "rollback");
        Assert.Equal("judge", rollback.Cause);
        Assert.Contains(check, rollback.Reason, StringComparison.Ordinal);
        // While the candidate only shadows, live traffic never notices its faults.
        if (rollback.From == RolloutPhase.Shadow)
            Assert.Empty(failed);
    }
}
