using QwenNats.Messaging;
using QwenNats.Judge;

namespace QwenNats.Tests.Unit;

public sealed class JudgeTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);
    private static readonly RolloutPolicy Policy = new()
    {
        MinSamples = 20, MinStepDuration = TimeSpan.Zero, FalseAlarmRate = 0.001, MissRate = 0.05,
        Errors = new() { P0 = 0.01, P1 = 0.2 }, Unanswered = new() { P0 = 0.01, P1 = 0.2 },
        SentimentDisagreement = new() { P0 = 0.02, P1 = 0.3 }, ChatDefects = new() { P0 = 0.05, P1 = 0.4 },
    };

    private static ShadowSample Sentiment(int i, string liveLabel = "positive", string? candLabel = null, double liveMs = 100, double candMs = 100,
        string? candError = null, double liveCpu = 10, double candCpu = 10, bool taken = true) => new()
    {
        Id = $"s{i}", RolloutId = "r1", Phase = RolloutPhase.Shadow, Step = 0, Task = InferTasks.Sentiment, At = Now,
        Live = new SampleSide { Colour = "blue", Label = liveLabel, Confidence = 0.9, TotalMs = liveMs, TimeToFirstTokenMs = liveMs / 2, ComputeMs = liveCpu },
        Candidate = candError is null
            ? new SampleSide { Colour = "green", Label = candLabel ?? liveLabel, Confidence = 0.88, TotalMs = candMs, TimeToFirstTokenMs = candMs / 2, ComputeMs = candCpu }
            : new SampleSide { Colour = "green", Error = candError, Taken = taken },
    };

    private static ShadowSample Chat(int i, string live, string cand, string liveFinish = "stop", string candFinish = "stop", double liveMs = 200, double candMs = 210) => new()
    {
        Id = $"c{i}", RolloutId = "r1", Phase = RolloutPhase.Shadow, Step = 0, Task = InferTasks.Chat, At = Now,
        Live = new SampleSide { Colour = "blue", Text = live, FinishReason = liveFinish, TotalMs = liveMs, TimeToFirstTokenMs = 20, ComputeMs = 20 },
        Candidate = new SampleSide { Colour = "green", Text = cand, FinishReason = candFinish, TotalMs = candMs, TimeToFirstTokenMs = 21, ComputeMs = 21 },
    };

    private static IEnumerable<ShadowSample> GoodChat(int n) =>
        Enumerable.Range(0, n).Select(i => Chat(1000 + i, "Once upon a time there was a cat.", "Once upon a time there was a dog."));

    private static Verdict Judge(IEnumerable<ShadowSample> samples, RolloutPolicy? policy = null)
    {
        var card = new Scorecard { RolloutId = "r1" };
        ulong seq = 0;
        foreach (var s in samples) card.Add(s, ++seq, policy ?? Policy);
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
    public void An_agreeing_candidate_of_equal_compute_passes_with_the_evidence()
    {
        var samples = Enumerable.Range(0, 25).Select(i => Sentiment(i, candMs: 105, candCpu: 10.4)).Concat(GoodChat(15));
        var v = Judge(samples);
        Assert.True(v.Outcome == "pass", v.Reason);
        Assert.Equal(40, v.Samples);
        Assert.Contains(v.Checks, c => c.Name == "sentiment_disagreement" && c.Passed && c.Decision == "pass" && c.Samples == 25);
        Assert.Contains(v.Checks, c => c.Name == "compute_ratio" && c.Value is > 0.9 and < 1.15 && c.Samples == 40);
        Assert.All(v.Checks, c => Assert.Equal("pass", c.Decision));
        Assert.All(v.Checks, c => Assert.False(string.IsNullOrEmpty(c.Threshold)));
    }

    [Fact]
    public void Traffic_that_is_all_sentiment_leaves_the_chat_checks_undecided_never_skipped()
    {
        var v = Judge(Enumerable.Range(0, 200).Select(i => Sentiment(i)));
        Assert.Equal("inconclusive", v.Outcome);
        Assert.Contains("chat_defects (no comparable pairs yet)", v.Reason);
        Assert.Contains(v.Checks, c => c.Name == "chat_length" && c.Decision == "undecided" && c.Samples == 0);
    }

    [Fact]
    public void A_sentiment_only_policy_passes_sentiment_only_traffic()
    {
        var v = Judge(Enumerable.Range(0, 40).Select(i => Sentiment(i)), Policy with { RequiredTasks = [InferTasks.Sentiment] });
        Assert.True(v.Outcome == "pass", v.Reason);
        Assert.DoesNotContain(v.Checks, c => c.Name.StartsWith("chat_", StringComparison.Ordinal));
    }

    [Fact]
    public void Flipped_labels_fail_the_disagreement_check_within_a_few_pairs()
    {
        var v = Judge(Enumerable.Range(0, 30).Select(i => Sentiment(i, candLabel: "negative")));
        Assert.Equal("fail", v.Outcome);
        Assert.Contains("sentiment_disagreement", v.Reason);
        Assert.InRange(v.Checks.Single(c => c.Name == "sentiment_disagreement").Detail.Length, 1, 400);
        Assert.Contains("fail after 3 pairs", v.Checks.Single(c => c.Name == "sentiment_disagreement").Detail);
    }

    [Fact]
    public void Labels_flipped_on_a_tenth_of_answers_are_caught_with_more_pairs()
    {
        var policy = Policy with { SentimentDisagreement = new() { P0 = 0.02, P1 = 0.08 } };
        var v = Judge(Enumerable.Range(0, 400).Select(i => Sentiment(i, candLabel: i % 10 == 3 ? "negative" : null)).Concat(GoodChat(20)), policy);
        Assert.Equal("fail", v.Outcome);
        Assert.Contains("sentiment_disagreement", v.Reason);
    }

    [Fact]
    public void A_candidate_that_costs_three_times_the_compute_fails_the_compute_ratio()
    {
        var v = Judge(Enumerable.Range(0, 30).Select(i => Sentiment(i, liveCpu: 10 + i % 3, candCpu: 30 + 3 * (i % 3))));
        Assert.Equal("fail", v.Outcome);
        Assert.Contains("compute_ratio", v.Reason);
    }

    [Fact]
    public void Wall_clock_noise_from_a_shared_machine_does_not_fail_an_equal_candidate()
    {
        // The candidate's wall-clock time is often inflated (scheduling, queueing behind live work) while its
        // compute equals live's: a p95 of these ratios is ~5, which the old point check rolled back on.
        var rng = new Random(7);
        var samples = Enumerable.Range(0, 60).Select(i =>
        {
            var wall = i % 8 == 0 ? 5.0 : 0.7 + rng.NextDouble();
            return Sentiment(i, liveMs: 50, candMs: 50 * wall, liveCpu: 10, candCpu: 10 * (0.9 + 0.2 * rng.NextDouble()));
        }).Concat(GoodChat(20));
        var v = Judge(samples);
        Assert.True(v.Outcome == "pass", v.Reason);
    }

    [Fact]
    public void Errors_on_a_fifth_of_requests_fail_the_errors_check()
    {
        var v = Judge(Enumerable.Range(0, 60).Select(i => i % 5 == 0 ? Sentiment(i, candError: "injected_fault") : Sentiment(i)));
        Assert.Equal("fail", v.Outcome);
        Assert.Contains("errors", v.Reason);
    }

    [Fact]
    public void Mirrors_the_candidate_never_took_are_capacity_not_errors()
    {
        var samples = Enumerable.Range(0, 60).Select(i => i % 3 == 0 ? Sentiment(i, candError: "deadline_exceeded", taken: false) : Sentiment(i)).Concat(GoodChat(20));
        var v = Judge(samples);
        Assert.True(v.Outcome == "pass", v.Reason);
        Assert.Equal(20, v.CapacityMisses);
        Assert.Contains("capacity", v.Reason);
    }

    [Fact]
    public void Requests_the_candidate_took_and_never_answered_are_decisive()
    {
        var samples = Enumerable.Range(0, 20).Select(i => i % 4 == 1 ? Sentiment(i, candError: "deadline_exceeded") : Sentiment(i));
        var v = Judge(samples);
        Assert.Equal("fail", v.Outcome);
        Assert.Contains("unanswered", v.Reason);
        Assert.DoesNotContain("errors", v.Reason.Split(';')[0]);
    }

    [Fact]
    public void Truncated_chat_answers_fail_the_length_and_defect_checks()
    {
        const string full = "Once upon a time there was a little girl named Lily who loved to play in the park.";
        var v = Judge(Enumerable.Range(0, 30).Select(i => Chat(i, full, full[..(full.Length / 3)], candFinish: "length")));
        Assert.Equal("fail", v.Outcome);
        Assert.Contains("chat_length", v.Reason);
        Assert.Contains("chat_defects", v.Reason);
    }

    [Fact]
    public void Broken_utf8_and_runaway_repetition_are_chat_defects()
    {
        var rep = string.Join(' ', Enumerable.Repeat("the cat sat", 10));
        var v = Judge(Enumerable.Range(0, 30).Select(i => Chat(i, "A calm and ordinary answer to the question asked here.", i % 2 == 0 ? rep : "broken \uFFFD text that goes on a little longer")));
        Assert.Equal("fail", v.Outcome);
        Assert.Contains("chat_defects", v.Reason);
    }

    [Fact]
    public void A_pass_is_provisional_and_a_late_fault_still_fails()
    {
        // 30 agreeing pairs pass the disagreement check; then every label flips (a fault that shows late).
        var samples = Enumerable.Range(0, 30).Select(i => Sentiment(i)).Concat(Enumerable.Range(30, 10).Select(i => Sentiment(i, candLabel: "negative")));
        var card = new Scorecard { RolloutId = "r1" };
        ulong seq = 0;
        var passedAt = 0;
        foreach (var s in samples)
        {
            card.Add(s, ++seq, Policy);
            if (passedAt == 0 && card.Tests["sentiment_disagreement"].Decision == "pass") passedAt = (int)seq;
        }
        Assert.InRange(passedAt, 1, 30);
        var state = card.Tests["sentiment_disagreement"];
        Assert.Equal("fail", state.Decision);
        Assert.Equal(40, state.Pairs);
        Assert.Equal(10, state.Events);
        Assert.Equal("fail", Evaluator.Evaluate(card, Policy, Now).Outcome);
    }

    [Fact]
    public void A_failure_stands_for_the_step()
    {
        var samples = Enumerable.Range(0, 5).Select(i => Sentiment(i, candLabel: "negative")).Concat(Enumerable.Range(5, 200).Select(i => Sentiment(i)));
        var card = new Scorecard { RolloutId = "r1" };
        ulong seq = 0;
        foreach (var s in samples) card.Add(s, ++seq, Policy);
        Assert.Equal("fail", card.Tests["sentiment_disagreement"].Decision);
        Assert.Equal(205, card.Tests["sentiment_disagreement"].Pairs);
    }

    [Fact]
    public void A_step_cannot_pass_before_its_minimum_duration()
    {
        var policy = Policy with { MinStepDuration = TimeSpan.FromSeconds(30) };
        var samples = Enumerable.Range(0, 40).Select(i => Sentiment(i)).Concat(GoodChat(20)).ToList();
        var card = new Scorecard { RolloutId = "r1" };
        ulong seq = 0;
        foreach (var s in samples) card.Add(s, ++seq, policy);
        var early = Evaluator.Evaluate(card, policy, Now + TimeSpan.FromSeconds(10));
        Assert.Equal("inconclusive", early.Outcome);
        Assert.Contains("min_step_duration", early.Reason);
        Assert.Equal("pass", Evaluator.Evaluate(card, policy, Now + TimeSpan.FromSeconds(31)).Outcome);
    }

    [Fact]
    public void Chat_answers_the_live_model_finds_improbable_fail_the_likelihood_check()
    {
        var policy = Policy with { ChatLikelihood = new() { Threshold = 1.5, P0 = 0.1, P1 = 0.5 } };
        var samples = Enumerable.Range(0, 20).Select(i => Chat(i, "Once upon a time there was a cat.", "xq zpt wkeo bnnq slaoei")
            with { Live = new SampleSide { Colour = "blue", Text = "Once upon a time there was a cat.", FinishReason = "stop", TotalMs = 200, ComputeMs = 20, LiveModelLogProb = -1.9 } }
            ).Select(s => s with { Candidate = s.Candidate with { LiveModelLogProb = -6.5 } });
        var v = Judge(samples, policy);
        Assert.Equal("fail", v.Outcome);
        Assert.Contains("chat_likelihood", v.Reason);
        Assert.Contains("median drop 4.", v.Reason);
    }

    [Fact]
    public void Refusals_and_answers_in_the_wrong_language_are_chat_defects()
    {
        Assert.True(TextChecks.IsRefusal("I'm sorry, but I can't help with that."));
        Assert.True(TextChecks.IsRefusal("抱歉，我无法回答这个问题。"));
        Assert.False(TextChecks.IsRefusal("Sure! Here is a short story about a cat."));
        Assert.True(TextChecks.IsWrongLanguage("今天天气怎么样？", "The weather is nice today."));
        Assert.False(TextChecks.IsWrongLanguage("今天天气怎么样？", "今天天气很好。"));
        Assert.False(TextChecks.IsWrongLanguage("Hi", "你好"));
        var samples = Enumerable.Range(0, 20).Select(i => Chat(i, "今天天气很好，阳光明媚。", "The weather is nice and sunny today.") with { UserText = "今天天气怎么样？" });
        var v = Judge(samples);
        Assert.Equal("fail", v.Outcome);
        Assert.Contains("chat_defects", v.Reason);
    }

    [Fact]
    public void The_scorecard_stays_small_however_many_samples_it_counts()
    {
        var card = new Scorecard { RolloutId = "r1" };
        ulong seq = 0;
        foreach (var s in Enumerable.Range(0, 20_000).Select(i => i % 2 == 0 ? Sentiment(i, candCpu: 5 + i % 17) : Chat(i, "one two three", "one two four")))
            card.Add(s, ++seq, Policy);
        var json = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(card);
        Assert.InRange(json.Length, 100, 8 * 1024);
    }

    [Theory]
    [InlineData(0.2, 0.6, 0.001, 0.05)]
    [InlineData(0.01, 0.08, 0.0005, 0.05)]
    [InlineData(0.02, 0.3, 0.001, 0.05)]
    public void The_sequential_test_keeps_its_stated_error_rates(double p0, double p1, double alpha, double beta)
    {
        var test = new SequentialTest { P0 = p0, P1 = p1 };
        Assert.InRange(1 - Sprt.PassProbability(test, p0, alpha, beta), 0, alpha / (1 - beta) * 1.01);
        Assert.InRange(Sprt.PassProbability(test, p1, alpha, beta), 0, beta / (1 - alpha) * 1.01);
        // Simulated: 4,000 tests at p0 (fixed seed) fail no more often than Wald's bound allows (with sampling slack).
        var rng = new Random(11);
        var fails = 0;
        for (var k = 0; k < 4000; k++)
        {
            var s = new SequentialState();
            while (s.Decision is null) Sprt.Observe(s, rng.NextDouble() < p0, test, alpha, beta);
            if (s.Decision == "fail") fails++;
        }
        Assert.InRange(fails / 4000.0, 0, alpha / (1 - beta) + 3 * Math.Sqrt(alpha / 4000) + 0.0005);
        Assert.True(Sprt.ExpectedPairs(test, p0, alpha, beta) > 0);
    }

    [Fact]
    public void Ratio_sketch_quantiles_are_within_a_bin()
    {
        var sketch = new RatioSketch();
        foreach (var r in Enumerable.Range(1, 100).Select(i => i / 50.0)) sketch.Add(r);
        Assert.InRange(sketch.Quantile(0.5), 1.0 / 1.1, 1.1);
        Assert.InRange(sketch.Quantile(0.95), 1.9 / 1.1, 1.9 * 1.1);
    }

    [Fact]
    public void A_policy_with_a_check_that_cannot_fail_is_refused()
    {
        var e = Assert.Throws<InvalidOperationException>(() => new RolloutPolicy { ChatSimilarity = new() { Threshold = 0, P0 = 0.1, P1 = 0.5 } }.Validate("test"));
        Assert.Contains("chat_similarity", e.Message);
        e = Assert.Throws<InvalidOperationException>(() => new RolloutPolicy { Errors = new() { P0 = 0.1, P1 = 0.1 } }.Validate("test"));
        Assert.Contains("cannot fail", e.Message);
        e = Assert.Throws<InvalidOperationException>(() => new RolloutPolicy { ConfidenceDrift = new() { Threshold = 1, P0 = 0.1, P1 = 0.4 } }.Validate("test"));
        Assert.Contains("confidence_drift", e.Message);
        e = Assert.Throws<InvalidOperationException>(() => new RolloutPolicy { FalseAlarmRate = 0.05 }.Validate("test"));
        Assert.Contains("max_false_rollback_rate", e.Message);
    }

    [Theory]
    [InlineData("[]")]
    [InlineData("[10, 150]")]
    [InlineData("[0, 50]")]
    public void A_policy_whose_canary_steps_the_promoter_could_not_walk_is_refused(string steps)
    {
        var bad = WritePolicy($"{{\"canary_steps\": {steps}}}");
        var good = WritePolicy("{\"canary_steps\": [25, 50]}");
        try
        {
            var e = Assert.Throws<InvalidOperationException>(() => RolloutPolicy.Load(bad));
            Assert.Contains("canary_steps must list one or more weights between 1 and 100", e.Message);
            Assert.Equal([25, 50], RolloutPolicy.Load(good).CanarySteps);
        }
        finally
        {
            File.Delete(bad);
            File.Delete(good);
        }
    }

    private static string WritePolicy(string json)
    {
        var path = Path.Combine(Path.GetTempPath(), $"policy-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        return path;
    }

    [Fact]
    public void A_scorecard_skips_samples_it_has_already_applied()
    {
        var card = new Scorecard { RolloutId = "r1" };
        Assert.True(card.Add(Sentiment(1), 5, Policy));
        Assert.False(card.Add(Sentiment(1), 5, Policy));
        Assert.Equal(5ul, card.LastSequence);
        Assert.Equal(1, card.Samples);
    }

    [Fact]
    public void A_scorecard_counts_a_sample_delivered_again_after_newer_ones_once()
    {
        var card = new Scorecard { RolloutId = "r1" };
        for (ulong seq = 11; seq <= 20; seq++) Assert.True(card.Add(Sentiment((int)seq), seq, Policy));
        for (ulong seq = 1; seq <= 10; seq++) Assert.True(card.Add(Sentiment((int)seq), seq, Policy)); // redelivered, older
        for (ulong seq = 1; seq <= 20; seq++) Assert.False(card.Add(Sentiment((int)seq), seq, Policy));
        Assert.Equal(20, card.Samples);
        Assert.Equal(20ul, card.LastSequence);
        Assert.Equal([new SequenceRange(1, 20)], card.Seen.Ranges);
        // Through KV: the ranges survive the JSON the card is stored as.
        var json = System.Text.Json.JsonSerializer.Serialize(card, JudgeJsonContext.Default.Scorecard);
        var back = System.Text.Json.JsonSerializer.Deserialize(json, JudgeJsonContext.Default.Scorecard)!;
        Assert.True(back.HasSeen(7));
        Assert.False(back.HasSeen(21));
    }

    [Fact]
    public void Seen_sequences_merge_neighbours_and_stay_bounded()
    {
        var seen = new SeenSequences();
        Assert.True(seen.Add(5));
        Assert.True(seen.Add(7));
        Assert.Equal([new SequenceRange(5, 5), new SequenceRange(7, 7)], seen.Ranges);
        Assert.True(seen.Add(6));
        Assert.Equal([new SequenceRange(5, 7)], seen.Ranges);
        Assert.True(seen.Add(4));
        Assert.True(seen.Add(8));
        Assert.False(seen.Add(6));
        Assert.Equal([new SequenceRange(4, 8)], seen.Ranges);
        Assert.False(seen.Contains(3));
        Assert.False(seen.Contains(9));

        // Every other sequence: one range each until the bound, then the lowest gap closes.
        var sparse = new SeenSequences();
        for (ulong i = 0; i < SeenSequences.MaxRanges + 10; i++) sparse.Add(100 + 2 * i);
        Assert.Equal(SeenSequences.MaxRanges, sparse.Ranges.Count);
        Assert.Equal(100ul, sparse.Ranges[0].First);
        Assert.True(sparse.Contains(101)); // inside the closed gaps
        Assert.False(sparse.Contains(100 + 2 * (SeenSequences.MaxRanges + 9) - 1)); // the newest gaps stay open
    }

    [Fact]
    public void A_card_stored_before_the_ranges_keeps_what_it_had_seen()
    {
        var old = System.Text.Json.JsonSerializer.Deserialize("{\"rollout_id\":\"r1\",\"last_sequence\":30,\"samples\":30}", JudgeJsonContext.Default.Scorecard)!;
        Assert.True(old.HasSeen(30));
        Assert.False(old.Add(Sentiment(1), 12, Policy));
        Assert.True(old.Add(Sentiment(2), 31, Policy));
        Assert.Equal([new SequenceRange(1, 31)], old.Seen.Ranges);
        Assert.Equal(31, old.Samples);
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
        var p = RolloutPolicy.Load(Path.Combine(Paths.RepoRoot, "deploy", "rollout-policy.json"));
        Assert.Equal(30, p.MinSamples);
        Assert.True(p.FalseRollbackBound() <= p.MaxFalseRollbackRate);
        Assert.Null(p.ChatSimilarity);
        RolloutPolicy.Load(Path.Combine(Paths.RepoRoot, "deploy", "demo-policy.json"));
        Assert.Equal(new[] { 10, 25, 50 }, p.CanarySteps);
        Assert.Equal(TimeSpan.FromMinutes(5), p.BakeWindow);
    }

    [Fact]
    public void The_golden_set_has_at_least_60_labelled_cases_in_both_languages()
    {
        var cases = QwenNats.Promoter.GoldenRunner.Load(Path.Combine(Paths.RepoRoot, "deploy", "golden", "sentiment.jsonl"));
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
