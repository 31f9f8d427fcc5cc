using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using NATS.Client.Core;
using NATS.Client.JetStream;
using QwenNats.Messaging;
using QwenNats.Messaging.Topology;
using QwenNats.Judge;
using QwenNats.Promoter;
using QwenNats.Tests.Infrastructure;
using Xunit.Abstractions;

namespace QwenNats.Tests.Integration;

/// <summary>
/// Shadow traffic, the judge and verdict-driven promotion end to end: real nats-server, real workers
/// (green with fault injection where a test wants a bad release), a small-sample policy.
/// </summary>
[Collection(LoadCollection.Name)]
public sealed class AutomatedRolloutTests(ITestOutputHelper output)
{
    private static readonly string PolicyPath = TestPolicies.Write("00:01:00");
    private static readonly string QuickPausePolicyPath = TestPolicies.Write("00:00:02");
    private static readonly string NoVerdictPolicyPath = TestPolicies.Write("00:01:00", noVerdictPauseAfter: "00:00:02");

    private static Task<RolloutRig> StartAsync(Dictionary<string, string?>? greenFaults, bool automatic = true, bool workers = true, string? policy = null, string greenProfile = "v2", bool judge = true) =>
        RolloutRig.StartAsync(new RolloutRigOptions
        {
            GreenFaults = greenFaults, Automatic = automatic, Workers = workers, Policy = policy ?? PolicyPath, GreenProfile = greenProfile, Judge = judge,
        });

    private Task<RolloutState> WaitForPhaseAsync(RolloutRig rig, Func<RolloutState, bool> done, TimeSpan timeout) => rig.WaitForPhaseAsync(output, done, timeout);

    /// <summary>A new profile (v2), and a candidate identical to live (A/A: blue's own profile on green), which must never roll back.</summary>
    [Theory]
    [InlineData("v2")]
    [InlineData("v1")]
    public async Task A_good_candidate_goes_from_shadow_to_stable_by_itself_under_load_with_no_failed_request(string profile)
    {
        await using var rig = await StartAsync(null, greenProfile: profile);
        using var stop = new CancellationTokenSource();
        var load = ClientLoad.RunAsync(rig.Http, stop.Token);
        Assert.True((await Ctl.SendAsync(rig.Operator, "start", $"{{\"candidate\":\"green\",\"reason\":\"profile {profile}\"}}")).Ok);
        var final = await WaitForPhaseAsync(rig, s => s.Phase is RolloutPhase.Stable or RolloutPhase.RolledBack or RolloutPhase.Paused, TimeSpan.FromSeconds(180));
        await stop.CancelAsync();
        var (ok, failed) = await load;

        var history = await rig.HistoryAsync(output);
        Assert.Equal(RolloutPhase.Stable, final.Phase);
        Assert.Equal("green", final.Live);
        Assert.Equal(new[] { "start", "promote", "promote", "finish" }, history.Select(e => e.Trigger));
        Assert.Equal(new[] { "operator", "judge", "judge", "timer" }, history.Select(e => e.Cause));
        Assert.Contains("golden set", history[1].Reason);
        Assert.Contains("judge pass", history[2].Reason);
        Assert.Empty(failed);
        Assert.True(ok > 20, $"{ok} requests");
        var snapshot = JsonDocument.Parse(await rig.Http.GetStringAsync("/api/rollout")).RootElement;
        Assert.True(snapshot.GetProperty("shadow").GetProperty("compared").GetInt64() >= 24);
    }

    /// <summary>
    /// A bad release and the check(s) that may catch it. Errors on 20% of requests can slip through a
    /// small Shadow sample by chance (0.8^12 ≈ 7%); the golden set run before leaving Shadow then catches
    /// them, which is also a named check.
    /// </summary>
    public static TheoryData<string, string, string> BadReleases => new()
    {
        { "flips labels", "{\"Faults:Fraction\":\"1\",\"Faults:FlipLabels\":\"true\"}", "sentiment_disagreement" },
        { "is 3x slower", "{\"Faults:Fraction\":\"1\",\"Faults:Slowdown\":\"3\"}", "compute_ratio" },
        { "truncates", "{\"Faults:Fraction\":\"1\",\"Faults:Truncate\":\"true\"}", "chat_length" },
        { "errors on 20%", "{\"Faults:ErrorRate\":\"0.2\"}", "errors|golden set" },
        { "answers nonsense", "{\"Faults:Fraction\":\"1\",\"Faults:Nonsense\":\"true\"}", "chat_likelihood" },
        { "hangs on 20%", "{\"Faults:HangRate\":\"0.2\"}", "unanswered|golden set" },
    };

    [Theory]
    [MemberData(nameof(BadReleases))]
    public async Task A_bad_candidate_is_rolled_back_automatically_naming_the_failing_check(string what, string faults, string check)
    {
        var extra = JsonSerializer.Deserialize<Dictionary<string, string?>>(faults)!;
        await using var rig = await StartAsync(extra);
        using var stop = new CancellationTokenSource();
        var load = ClientLoad.RunAsync(rig.Http, stop.Token);
        Assert.True((await Ctl.SendAsync(rig.Operator, "start", $"{{\"candidate\":\"green\",\"reason\":\"a candidate that {what}\"}}")).Ok);
        var final = await WaitForPhaseAsync(rig, s => s.Phase is RolloutPhase.Stable or RolloutPhase.RolledBack or RolloutPhase.Paused or RolloutPhase.Promoted, TimeSpan.FromSeconds(180));
        await stop.CancelAsync();
        await load;

        var history = await rig.HistoryAsync(output);
        Assert.Equal(RolloutPhase.RolledBack, final.Phase);
        Assert.Equal("blue", final.Live);
        var rollback = history.Last(e => e.Trigger == "rollback");
        Assert.Equal("judge", rollback.Cause);
        Assert.Contains(check.Split('|'), c => rollback.Reason.Contains(c, StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_candidate_without_traffic_stays_inconclusive_and_is_paused_for_an_operator()
    {
        await using var rig = await StartAsync(null, policy: QuickPausePolicyPath);
        Assert.True((await Ctl.SendAsync(rig.Operator, "start", "{\"candidate\":\"green\"}")).Ok);
        var final = await WaitForPhaseAsync(rig, s => s.Phase != RolloutPhase.Shadow, TimeSpan.FromSeconds(30));
        Assert.Equal(RolloutPhase.Paused, final.Phase);
        Assert.Contains("inconclusive", final.Reason);
        Assert.Contains("too few samples", final.Reason);
        var status = await Ctl.SendAsync(rig.Operator, "status");
        Assert.Equal("inconclusive", status.Verdict!.Outcome);
        Assert.Equal(0, status.Verdict.Samples);
    }

    [Fact]
    public async Task A_rollout_that_gets_no_verdict_is_paused_with_the_reason()
    {
        await using var rig = await StartAsync(null, workers: false, policy: NoVerdictPolicyPath, judge: false);
        Assert.True((await Ctl.SendAsync(rig.Operator, "start", "{\"candidate\":\"green\",\"reason\":\"judge is down\"}")).Ok);
        var final = await WaitForPhaseAsync(rig, s => s.Phase != RolloutPhase.Shadow, TimeSpan.FromSeconds(30));
        Assert.Equal(RolloutPhase.Paused, final.Phase);
        Assert.Contains("no verdict from the judge", final.Reason);
        var history = (await Ctl.SendAsync(rig.Operator, "history", "{\"limit\":5}")).Events!;
        Assert.Equal("timer", history.Last().Cause);
    }

    [Fact]
    public async Task The_golden_set_reports_accuracy_per_colour()
    {
        await using var rig = await StartAsync(null);
        var reply = await Ctl.SendAsync(rig.Operator, "golden", "", timeout: TimeSpan.FromSeconds(90));
        Assert.True(reply.Ok, reply.Error);
        Assert.Equal(64, reply.Golden!.Cases);
        Assert.Equal(new[] { "blue", "green" }, reply.Golden.Scores.Select(s => s.Colour));
        Assert.All(reply.Golden.Scores, s => Assert.Equal(0, s.Errors));
        Assert.All(reply.Golden.Scores, s => Assert.InRange(s.Accuracy, 0, 1));
        Assert.Equal(new[] { "v1", "v2" }, reply.Golden.Scores.Select(s => s.Profile));
        // Each score names the model file (digest) that answered; these workers serve a model from their command line, not a release.
        var sha = await ModelStore.HashFileAsync(Paths.Model, CancellationToken.None);
        Assert.All(reply.Golden.Scores, s => Assert.Equal((sha, (string?)null), (s.ModelSha256, s.Release)));
    }

    private static async Task PublishSamplesAsync(NatsJSContext js, string rolloutId, int from, int count)
    {
        for (var i = from; i < from + count; i++)
        {
            var sample = i % 2 == 0 ? Samples.Agreeing($"syn-{i}", rolloutId) : Samples.AgreeingChat($"syn-{i}", rolloutId);
            (await js.PublishAsync(Judging.Samples(rolloutId), sample)).EnsureSuccess();
        }
    }

    private static async Task<Verdict> VerdictWithAsync(RolloutRig rig, string rolloutId, int samples)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (true)
        {
            var v = (await Ctl.SendAsync(rig.Operator, "status", ct: cts.Token)).Verdict;
            if (v is not null && v.RolloutId == rolloutId && v.Samples >= samples) return v;
            await Task.Delay(100, cts.Token);
        }
    }

    private static async Task StopJudgeAsync(RolloutRig rig)
    {
        var judge = rig.Hosts[1];
        await judge.StopAsync();
        judge.Dispose();
        rig.Hosts.RemoveAt(1);
    }

    [Fact]
    public async Task A_restarted_judge_loses_no_acked_sample_and_reaches_the_same_verdict()
    {
        await using var rig = await StartAsync(null, automatic: false, workers: false);
        var start = await Ctl.SendAsync(rig.Operator, "start", "{\"candidate\":\"green\"}");
        var rolloutId = start.State!.RolloutId!;
        var js = new NatsJSContext(rig.Operator);
        Task PublishAsync(int from, int count) => PublishSamplesAsync(js, rolloutId, from, count);
        Task<Verdict> VerdictWithAsync(int samples) => AutomatedRolloutTests.VerdictWithAsync(rig, rolloutId, samples);

        await PublishAsync(0, 8);
        Assert.Equal("inconclusive", (await VerdictWithAsync(8)).Outcome);
        await StopJudgeAsync(rig);
        await PublishAsync(8, 32);
        rig.Hosts.Add(await RolloutRig.StartJudgeAsync(rig.Server.Url, PolicyPath));

        var verdict = await VerdictWithAsync(40);
        // The step may pass once min_step_duration has gone by since its first sample.
        using (var passing = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
            while (verdict.Outcome != "pass")
            {
                await Task.Delay(250, passing.Token);
                verdict = (await Ctl.SendAsync(rig.Operator, "status", ct: passing.Token)).Verdict!;
            }
        Assert.Equal(40, verdict.Samples);
        Assert.Equal("pass", verdict.Outcome);
        Assert.Contains(verdict.Checks, c => c.Name == "errors" && c.Samples == 40 && c.Decision == "pass");
        Assert.Contains(verdict.Checks, c => c.Name == "sentiment_disagreement" && c.Samples == 20);
        Assert.Contains(verdict.Checks, c => c.Name == "chat_length" && c.Samples == 20);
    }

    [Fact]
    public async Task A_judge_counts_samples_delivered_again_after_newer_ones()
    {
        await using var rig = await StartAsync(null, automatic: false, workers: false);
        var start = await Ctl.SendAsync(rig.Operator, "start", "{\"candidate\":\"green\"}");
        var rolloutId = start.State!.RolloutId!;
        var js = new NatsJSContext(rig.Operator);
        await StopJudgeAsync(rig);
        // The judge's consumer with a short ack wait, as the next judge binds it.
        var ackWait = new Dictionary<string, string?> { ["Topology:JudgeAckWait"] = "00:00:10" };
        var config = (await js.GetConsumerAsync(Judging.SamplesStream, Judging.JudgeConsumer)).Info.Config;
        config.AckWait = TimeSpan.FromSeconds(10);
        await js.CreateOrUpdateConsumerAsync(Judging.SamplesStream, config);

        // A judge that took ten samples and stopped before persisting them: delivered, never acked.
        await PublishSamplesAsync(js, rolloutId, 0, 10);
        var consumer = await js.GetConsumerAsync(Judging.SamplesStream, Judging.JudgeConsumer);
        var taken = 0;
        await foreach (var _ in consumer.FetchAsync<ShadowSample>(new NatsJSFetchOpts { MaxMsgs = 10, Expires = TimeSpan.FromSeconds(2) }))
            taken++;
        Assert.Equal(10, taken);

        // The next judge is delivered the newer samples first and the ten again after the ack wait.
        await PublishSamplesAsync(js, rolloutId, 10, 30);
        rig.Hosts.Insert(1, await RolloutRig.StartJudgeAsync(rig.Server.Url, PolicyPath, ackWait));
        var verdict = await VerdictWithAsync(rig, rolloutId, 30);
        Assert.Equal(30, verdict.Samples); // the newer ones, before the ack wait ran out
        verdict = await VerdictWithAsync(rig, rolloutId, 40);
        Assert.Equal(40, verdict.Samples);
        Assert.Contains(verdict.Checks, c => c.Name == "sentiment_disagreement" && c.Samples == 20);
        Assert.Contains(verdict.Checks, c => c.Name == "chat_length" && c.Samples == 20);
        // The next judge goes on from the stored card.
        await StopJudgeAsync(rig);
        rig.Hosts.Insert(1, await RolloutRig.StartJudgeAsync(rig.Server.Url, PolicyPath, ackWait));
        await PublishSamplesAsync(js, rolloutId, 40, 2);
        Assert.Equal(42, (await VerdictWithAsync(rig, rolloutId, 42)).Samples);
    }
}
