using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using NATS.Client.Core;
using NATS.Client.JetStream;
using QwenNats.Messaging;
using QwenNats.Messaging.Control;
using QwenNats.Messaging.Topology;
using QwenNats.Promoter;
using QwenNats.Tests.Infrastructure;
using Xunit.Abstractions;

namespace QwenNats.Tests.Integration;

/// <summary>
/// The golden sets on real workers: <c>compare</c> sends them to both colours on the low-priority queues and
/// answers both sides with every check, and the gate before leaving Shadow reuses the live colour's stored result.
/// </summary>
[Collection(LoadCollection.Name)]
public sealed class GoldenCompareTests(ITestOutputHelper output)
{
    private static readonly string PolicyPath = TestPolicies.Write("00:01:00");
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(120);
    private const int GoldenInputs = 64 + 24;

    private sealed class Rig : IAsyncDisposable
    {
        public required NatsServer Server { get; init; }
        public required QwenSystem System { get; init; }
        public required IHost Promoter { get; init; }
        public required NatsConnection Operator { get; init; }

        public async Task<ulong> PublishedAsync(string stream) =>
            (await new NatsJSContext(Operator).GetStreamAsync(stream)).Info.State.LastSeq;

        public async ValueTask DisposeAsync()
        {
            await Promoter.StopAsync();
            Promoter.Dispose();
            await Operator.DisposeAsync();
            await System.DisposeAsync();
            await Server.DisposeAsync();
        }
    }

    private static async Task<Rig> StartAsync(bool precompute = false, string greenProfile = "v2")
    {
        var server = await NatsServer.StartAsync();
        var settings = RolloutFixture.PromoterSettings(server.Url);
        settings["Promoter:PolicyPath"] = PolicyPath;
        settings["Promoter:GoldenPath"] = Path.Combine(Paths.RepoRoot, "deploy", "golden", "sentiment.jsonl");
        settings["Promoter:GoldenChatPath"] = Path.Combine(Paths.RepoRoot, "deploy", "golden", "chat.jsonl");
        settings["Promoter:GoldenChatMaxTokens"] = "16";
        settings["Promoter:GoldenTimeout"] = "00:01:30";
        settings["Promoter:GoldenPrecompute"] = precompute ? "true" : "false";
        var promoter = PromoterHost.Build([], c => c.AddInMemoryCollection(settings));
        await promoter.StartAsync();
        // No ingress: create its work and shadow queues as it would.
        await TopologySetup.EnsureAsync(server, Owners.Ingress, "memory");
        var system = new QwenSystem(server);
        await system.StartWorkerAsync("blue", "v1", slots: 2);
        await system.StartWorkerAsync("green", greenProfile, slots: 2);
        var op = await Ctl.ConnectAsync(server);
        await Ctl.WaitForLeaderAsync(op);
        await Pools.WaitReadyAsync(op);
        return new Rig { Server = server, System = system, Promoter = promoter, Operator = op };
    }

    [Fact]
    public async Task Compare_sends_the_golden_sets_to_both_colours_on_the_low_priority_queues_and_reports_every_check()
    {
        await using var rig = await StartAsync();
        var reply = await Ctl.SendAsync(rig.Operator, "compare", "", timeout: Long);
        Assert.True(reply.Ok, reply.Error);
        var report = reply.Compare!;
        foreach (var line in Comparison.Format(report).Take(12).Concat(Comparison.Format(report).SkipWhile(l => l != "summary:")))
            output.WriteLine(line);

        Assert.Equal(new[] { "blue", "green" }, report.Colours);
        Assert.Equal(GoldenInputs, report.Pairs.Count);
        Assert.All(report.Pairs, p => Assert.True(p.First is { Answered: true } && p.Second is { Answered: true }, $"{p.Input.Id}: {p.First?.Error} | {p.Second?.Error}"));
        var sentiment = report.Pairs.Where(p => p.Input.Task == InferTasks.Sentiment).ToArray();
        var chat = report.Pairs.Where(p => p.Input.Task == InferTasks.Chat).ToArray();
        Assert.Equal((64, 24), (sentiment.Length, chat.Length));
        Assert.All(sentiment, p => Assert.Equal(new[] { "errors", "label", "expected", "confidence_drift" }, p.Checks.Select(c => c.Name)));
        Assert.All(chat, p => Assert.Equal(new[] { "errors", "new_defects", "tone", "wrong_language", "length_ratio", "similarity" }, p.Checks.Select(c => c.Name)));
        Assert.All(chat, p => Assert.True(p.First!.TextChars > 0 && p.Second!.TextChars > 0));
        // The tiny test model writes English stories: every Chinese prompt is answered in the wrong language, on both colours.
        Assert.All(chat.Where(p => p.Input.Lang == "zh"), p => Assert.Contains(TextChecks.Names.WrongLanguage, p.First!.Defects));
        Assert.Equal(new[] { (64, 24, 0), (64, 24, 0) }, report.Scores.Select(s => (s.Total, s.ChatTotal, s.NotRun)));
        Assert.Equal(new[] { "v1", "v2" }, report.Scores.Select(s => s.Profile));
        Assert.Matches("^(pass|fail): golden set: ", report.Gate);
        Assert.Contains("summary:", Comparison.Format(report));

        // Golden work went to the shadow queues only, never the live work queues.
        foreach (var colour in new[] { "blue", "green" })
        {
            Assert.Equal(0UL, await rig.PublishedAsync(Subjects.WorkStream(colour)));
            Assert.True(await rig.PublishedAsync(Judging.ShadowStream(colour)) >= GoldenInputs);
        }

        // Given inputs, one task only.
        var given = await Ctl.SendAsync(rig.Operator, "compare", """
            {"task":"chat","inputs":[{"id":"a","task":"chat","text":"Hello there, how are you?"},{"id":"b","task":"sentiment","text":"What a lovely day","label":"positive"}]}
            """, timeout: Long);
        Assert.True(given.Ok, given.Error);
        Assert.Equal("a", Assert.Single(given.Compare!.Pairs).Input.Id);
        Assert.Null(given.Compare.Gate);

        // Bad input gets a clear refusal.
        var unknown = await Ctl.SendAsync(rig.Operator, "compare", "{\"colour\":\"purple\"}");
        Assert.Equal("unknown_colour", unknown.Code);
        Assert.Equal("invalid_request", (await Ctl.SendAsync(rig.Operator, "compare", "{\"colour\":\"blue\"}")).Code);
        Assert.Equal("invalid_inputs", (await Ctl.SendAsync(rig.Operator, "compare", "{\"inputs\":[]}")).Code);
        var poem = await Ctl.SendAsync(rig.Operator, "compare", "{\"inputs\":[{\"id\":\"a\",\"task\":\"poem\",\"text\":\"x\"}]}");
        Assert.Equal("invalid_inputs", poem.Code);
        Assert.Contains("'task' must be sentiment or chat", poem.Error);
        Assert.Equal("invalid_json", (await Ctl.SendAsync(rig.Operator, "compare", "{\"inputs\":[{\"text\":\"no id or task\"}]}")).Code);
    }

    [Fact]
    public async Task The_gate_reuses_the_live_colours_stored_result_and_sends_it_no_golden_work()
    {
        await using var rig = await StartAsync();
        // Blue's result is computed once (as when blue's release was itself the candidate) and stored.
        var golden = await Ctl.SendAsync(rig.Operator, "golden", "{\"colour\":\"blue\"}", timeout: Long);
        Assert.True(golden.Ok, golden.Error);
        var blue = Assert.Single(golden.Golden!.Scores);
        Assert.Equal((64, 24, 0, false), (golden.Golden.Cases, golden.Golden.ChatCases, blue.NotRun, blue.Stored));
        var blueWork = await rig.PublishedAsync(Judging.ShadowStream("blue"));
        var greenWork = await rig.PublishedAsync(Judging.ShadowStream("green"));

        var start = await Ctl.SendAsync(rig.Operator, "start", "{\"candidate\":\"green\",\"reason\":\"golden reuse\"}");
        Assert.True(start.Ok, start.Error);
        var state = start.State!;
        // The judge's pass for Shadow (published here, as the judge would): the promoter runs the golden gate before leaving Shadow.
        await rig.Operator.PublishAsync(Judging.VerdictSubject, new Verdict
        {
            RolloutId = state.RolloutId!, Step = state.Step, Phase = RolloutPhase.Shadow, Outcome = Judging.Outcomes.Pass,
            Reason = "all checks pass (test)", Samples = 50, At = DateTimeOffset.UtcNow,
        });

        using var cts = new CancellationTokenSource(Long);
        var decided = await DecidedByJudgeAsync(rig, cts.Token);
        output.WriteLine($"{decided.Trigger}: {decided.Reason}");
        Assert.Contains("golden set", decided.Reason);
        Assert.Contains("live blue: stored result of", decided.Reason);
        Assert.Contains("candidate green: run now on its low-priority queue", decided.Reason);
        // No golden work for the live colour; the candidate ran the whole set on its shadow queue.
        Assert.Equal(blueWork, await rig.PublishedAsync(Judging.ShadowStream("blue")));
        Assert.True(await rig.PublishedAsync(Judging.ShadowStream("green")) >= greenWork + GoldenInputs);
        Assert.Equal(0UL, await rig.PublishedAsync(Subjects.WorkStream("blue")));
    }

    [Fact]
    public async Task A_command_forwarded_to_the_leader_behind_a_golden_run_is_answered_while_that_run_goes_on()
    {
        await using var rig = await StartAsync();
        // As a standby promoter forwards them: a golden run of blue (every input, seconds), then a status.
        var golden = rig.Operator.RequestAsync<byte[], byte[]>(Rollouts.LeaderControl("golden"), "{\"colour\":\"blue\"}"u8.ToArray(),
            replyOpts: new NatsSubOpts { Timeout = Long }).AsTask();
        var status = await rig.Operator.RequestAsync<byte[], byte[]>(Rollouts.LeaderControl("status"), [],
            replyOpts: new NatsSubOpts { Timeout = Long });
        Assert.False(golden.IsCompleted, "the status was answered only after the golden run");
        Assert.True(ControlClient.Parse(status.Data).Ok);
        var run = ControlClient.Parse((await golden).Data);
        Assert.True(run.Ok, run.Error);
        Assert.Equal(GoldenInputs - 24, run.Golden!.Cases);
    }

    [Fact]
    public async Task A_fail_the_judge_sends_while_the_golden_gate_runs_rolls_back_instead_of_the_earlier_pass_promoting()
    {
        // Green is blue's twin, so the golden gate itself passes.
        await using var rig = await StartAsync(greenProfile: "v1");
        var start = await Ctl.SendAsync(rig.Operator, "start", "{\"candidate\":\"green\",\"reason\":\"late fail\"}");
        Assert.True(start.Ok, start.Error);
        var state = start.State!;
        // A pass starts the golden gate (both colours run the whole set: nothing is stored); the judge's next verdict
        // for the same step, a fail, arrives while it runs, as a late fault would.
        foreach (var (outcome, reason) in new[] { (Judging.Outcomes.Pass, "all checks pass (test)"), (Judging.Outcomes.Fail, "errors: 4 of 60 (test)") })
            await rig.Operator.PublishAsync(Judging.VerdictSubject, new Verdict
            {
                RolloutId = state.RolloutId!, Step = state.Step, Phase = RolloutPhase.Shadow, Outcome = outcome,
                Reason = reason, Samples = 60, At = DateTimeOffset.UtcNow,
            });

        using var cts = new CancellationTokenSource(Long);
        var decided = await DecidedByJudgeAsync(rig, cts.Token);
        output.WriteLine($"{decided.Trigger}: {decided.Reason}");
        Assert.Equal("rollback", decided.Trigger);
        Assert.Contains("errors: 4 of 60 (test)", decided.Reason);
        var status = await Ctl.SendAsync(rig.Operator, "status");
        Assert.NotEqual(RolloutPhase.Canary, status.State!.Phase);
    }

    [Fact]
    public async Task The_leading_promoter_computes_and_stores_each_colours_result_in_the_background()
    {
        await using var rig = await StartAsync(precompute: true);
        var bucket = await new NATS.Client.KeyValueStore.NatsKVContext(new NatsJSContext(rig.Operator)).GetStoreAsync(Releases.Bucket);
        using var cts = new CancellationTokenSource(Long);
        var keys = new List<string>();
        while (keys.Count < 2)
        {
            await Task.Delay(500, cts.Token);
            keys.Clear();
            try
            {
                await foreach (var key in bucket.GetKeysAsync([GoldenKeys.Prefix + ">"], cancellationToken: cts.Token))
                    keys.Add(key);
            }
            catch (NATS.Client.KeyValueStore.NatsKVException)
            {
                // No key yet.
            }
        }
        var stored = new List<GoldenResult>();
        foreach (var key in keys)
            stored.Add((await bucket.GetEntryAsync<GoldenResult>(key, cancellationToken: cts.Token)).Value!);
        Assert.Equal(new[] { "v1", "v2" }, stored.Select(r => r.Profile).Order());
        Assert.All(stored, r => Assert.True(r.IsComplete(GoldenInputs) && r.Fingerprint is not null));
        Assert.Equal(0UL, await rig.PublishedAsync(Subjects.WorkStream("blue")));

        // The gate (and a start) now finds both stored: no golden work for either colour.
        var work = (await rig.PublishedAsync(Judging.ShadowStream("blue")), await rig.PublishedAsync(Judging.ShadowStream("green")));
        var start = await Ctl.SendAsync(rig.Operator, "start", "{\"candidate\":\"green\"}");
        Assert.True(start.Ok, start.Error);
        await rig.Operator.PublishAsync(Judging.VerdictSubject, new Verdict
        {
            RolloutId = start.State!.RolloutId!, Step = start.State.Step, Phase = RolloutPhase.Shadow, Outcome = Judging.Outcomes.Pass,
            Reason = "all checks pass (test)", Samples = 50, At = DateTimeOffset.UtcNow,
        });
        var decided = await DecidedByJudgeAsync(rig, cts.Token);
        output.WriteLine($"{decided.Trigger}: {decided.Reason}");
        Assert.Contains("live blue: stored result of", decided.Reason);
        Assert.Contains("candidate green: stored result of", decided.Reason);
        Assert.Equal(work, (await rig.PublishedAsync(Judging.ShadowStream("blue")), await rig.PublishedAsync(Judging.ShadowStream("green"))));
    }

    /// <summary>The judge's promote or rollback, once the promoter has recorded it.</summary>
    private static async Task<RolloutEvent> DecidedByJudgeAsync(Rig rig, CancellationToken ct)
    {
        while (true)
        {
            await Task.Delay(250, ct);
            var history = (await Ctl.SendAsync(rig.Operator, "history", "{\"limit\":5}", ct)).Events!;
            if (history.LastOrDefault(e => e.Trigger is "promote" or "rollback" && e.Cause == "judge") is { } decided)
                return decided;
        }
    }
}
