using QwenNats.Contracts;
using QwenNats.Judge;

namespace QwenNats.Tests.Unit;

public sealed class JudgeTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);
    private static readonly RolloutPolicy Policy = new() { MinSamples = 20, MinTaskSamples = 10 };

    private static ShadowSample Sentiment(int i, string liveLabel = "positive", string? candLabel = null, double liveMs = 100, double candMs = 100, string? candError = null) => new()
    {
        Id = $"s{i}", RolloutId = "r1", Phase = RolloutPhase.Shadow, Step = 0, Task = InferTasks.Sentiment, At = Now,
        Live = new SampleSide { Colour = "blue", Label = liveLabel, Confidence = 0.9, TotalMs = liveMs, TimeToFirstTokenMs = liveMs / 2 },
        Candidate = candError is null
            ? new SampleSide { Colour = "green", Label = candLabel ?? liveLabel, Confidence = 0.88, TotalMs = candMs, TimeToFirstTokenMs = candMs / 2 }
            : new SampleSide { Colour = "green", Error = candError },
    };

    private static ShadowSample Chat(int i, string live, string cand, string liveFinish = "stop", string candFinish = "stop") => new()
    {
        Id = $"c{i}", RolloutId = "r1", Phase = RolloutPhase.Shadow, Step = 0, Task = InferTasks.Chat, At = Now,
        Live = new SampleSide { Colour = "blue", Text = live, FinishReason = liveFinish, TotalMs = 200, TimeToFirstTokenMs = 20 },
        Candidate = new SampleSide { Colour = "green", Text = cand, FinishReason = candFinish, TotalMs = 210, TimeToFirstTokenMs = 21 },
    };

    private static Verdict Judge(IEnumerable<ShadowSample> samples, RolloutPolicy? policy = null)
    {
        var card = new Scorecard { RolloutId = "r1" };
        ulong seq = 0;
        foreach (var s in samples) card.Add(s, ++seq);
        return Evaluator.Evaluate(card, policy ?? Policy, Now);
    }

    [Fact]
    public void Too_few_samples_is_inconclusive_never_pass()
    {
        var v = Judge(Enumerable.Range(0, 19).Select(i => Sentiment(i)));
        Assert.Equal("inconclusive", v.Outcome);
        Assert.Contains("19 of 20", v.Reason);
        Assert.Equal(19, v.Samples);
    }

    [Fact]
    public void Samples_whose_live_side_all_errored_are_inconclusive()
    {
        var errored = Enumerable.Range(0, 30).Select(i => Sentiment(i) with { Live = new SampleSide { Colour = "blue", Error = "overloaded" } });
        Assert.Equal("inconclusive", Judge(errored).Outcome);
    }

    [Fact]
    public void An_agreeing_equally_fast_candidate_passes_with_the_evidence()
    {
        var samples = Enumerable.Range(0, 25).Select(i => Sentiment(i, candMs: 105))
            .Concat(Enumerable.Range(0, 15).Select(i => Chat(i, "Once upon a time there was a cat.", "Once upon a time there was a dog.")));
        var v = Judge(samples);
        Assert.True(v.Outcome == "pass", v.Reason);
        Assert.Equal(40, v.Samples);
        Assert.Contains(v.Checks, c => c.Name == "sentiment_agreement" && c.Passed && c.Samples == 25);
        Assert.Contains(v.Checks, c => c.Name == "latency_p50_ratio" && c.Value is > 1 and < 1.1);
        Assert.All(v.Checks, c => Assert.False(string.IsNullOrEmpty(c.Threshold)));
    }

    [Fact]
    public void Flipped_labels_fail_the_agreement_check()
    {
        var v = Judge(Enumerable.Range(0, 30).Select(i => Sentiment(i, candLabel: "negative")));
        Assert.Equal("fail", v.Outcome);
        Assert.Contains("sentiment_agreement", v.Reason);
    }

    [Fact]
    public void A_three_times_slower_candidate_fails_the_latency_ratio()
    {
        var v = Judge(Enumerable.Range(0, 30).Select(i => Sentiment(i, liveMs: 100 + i, candMs: 300 + 3 * i)));
        Assert.Equal("fail", v.Outcome);
        Assert.Contains("latency_p50_ratio", v.Reason);
    }

    [Fact]
    public void Errors_on_a_fifth_of_requests_fail_the_error_rate()
    {
        var v = Judge(Enumerable.Range(0, 30).Select(i => i % 5 == 0 ? Sentiment(i, candError: "injected_fault") : Sentiment(i)));
        Assert.Equal("fail", v.Outcome);
        Assert.Contains("error_rate_increase", v.Reason);
    }

    [Fact]
    public void Truncated_chat_answers_fail_the_length_ratio()
    {
        const string full = "Once upon a time there was a little girl named Lily who loved to play in the park.";
        var v = Judge(Enumerable.Range(0, 30).Select(i => Chat(i, full, full[..(full.Length / 3)], candFinish: "length")));
        Assert.Equal("fail", v.Outcome);
        Assert.Contains("chat_length_ratio", v.Reason);
        Assert.Contains("chat_truncated", v.Reason);
    }

    [Fact]
    public void Broken_utf8_and_runaway_repetition_are_caught()
    {
        var rep = string.Join(' ', Enumerable.Repeat("the cat sat", 10));
        var v = Judge(Enumerable.Range(0, 30).Select(i => Chat(i, "A calm and ordinary answer to the question asked here.", i % 2 == 0 ? rep : "broken \uFFFD text that goes on a little longer")));
        Assert.Equal("fail", v.Outcome);
        Assert.Contains("chat_broken_utf8", v.Reason);
        Assert.Contains("chat_repetition", v.Reason);
    }

    [Fact]
    public void A_scorecard_skips_samples_it_has_already_applied()
    {
        var card = new Scorecard { RolloutId = "r1" };
        card.Add(Sentiment(1), 5);
        Assert.Equal(5ul, card.LastSequence);
        Assert.Equal(1, card.Samples);
    }

    [Theory]
    [InlineData(0, 0, 0.0)]
    [InlineData(10, 10, 0.7225)]
    [InlineData(50, 100, 0.4038)]
    public void Wilson_lower_bound_matches_known_values(int k, int n, double expected)
    {
        Assert.Equal(expected, Stats.WilsonLower(k, n, 1.96), 3);
    }

    [Fact]
    public void Text_checks_read_the_answers()
    {
        Assert.True(TextChecks.IsEmpty("  "));
        Assert.True(TextChecks.IsBrokenUtf8("bad \uFFFD"));
        Assert.True(TextChecks.IsBrokenUtf8("lone \uD83D"));
        Assert.False(TextChecks.IsBrokenUtf8("fine 😀 好"));
        Assert.True(TextChecks.IsRepetitive(string.Concat(Enumerable.Repeat("好的好的", 10))));
        Assert.False(TextChecks.IsRepetitive("Once upon a time there was a little girl named Lily who lived near the sea."));
        Assert.Equal(1.0, TextChecks.Similarity("hello world", "hello world"));
        Assert.Equal(0.0, TextChecks.Similarity("abcdef", "uvwxyz"));
    }

    [Fact]
    public void The_shipped_policy_loads()
    {
        var p = RolloutPolicy.Load(Path.Combine(Infrastructure.Paths.RepoRoot, "deploy", "rollout-policy.json"));
        Assert.Equal(50, p.MinSamples);
        Assert.Equal(new[] { 10, 25, 50 }, p.CanarySteps);
        Assert.Equal(TimeSpan.FromMinutes(5), p.BakeWindow);
    }

    [Fact]
    public void The_golden_set_has_at_least_60_labelled_cases_in_both_languages()
    {
        var cases = QwenNats.Promoter.GoldenRunner.Load(Path.Combine(Infrastructure.Paths.RepoRoot, "deploy", "golden", "sentiment.jsonl"));
        Assert.True(cases.Count >= 60);
        Assert.Contains(cases, c => c.Text == "今天心情真好" && c.Label == "positive");
        Assert.Contains(cases, c => c.Text == "这个实验太难了,我快崩溃了" && c.Label == "negative");
        Assert.True(cases.Count(c => c.Lang == "zh") >= 20 && cases.Count(c => c.Lang == "en") >= 20);
        foreach (var kind in new[] { "negation", "sarcasm", "mixed" })
            Assert.Contains(cases, c => c.Kind == kind);
        Assert.All(cases, c => Assert.Contains(c.Label, new[] { "positive", "negative", "neutral" }));
        Assert.Equal(cases.Count, cases.Select(c => c.Id).Distinct().Count());
    }
}
