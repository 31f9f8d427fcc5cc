using System.Text.Json;
using QwenNats.Messaging;
using QwenNats.Promoter;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Unit;

/// <summary>The golden gate's pure parts: what a stored result is keyed by, the gate's decision, the inputs files and the comparison.</summary>
public sealed class GoldenTests
{
    private static readonly PromptProfile V1 = PromptProfile.Load(Path.Combine(Paths.RepoRoot, "deploy", "profiles", "v1.json"));
    private static readonly PromptProfile V2 = PromptProfile.Load(Path.Combine(Paths.RepoRoot, "deploy", "profiles", "v2.json"));
    private static readonly string Sha = new('a', 64);

    private static readonly GoldenInput[] Inputs =
    [
        new() { Id = "s1", Task = InferTasks.Sentiment, Text = "I love it", Label = "positive" },
        new() { Id = "s2", Task = InferTasks.Sentiment, Text = "I hate it", Label = "negative" },
        new() { Id = "c1", Task = InferTasks.Chat, Text = "How are you today?" },
        new() { Id = "c2", Task = InferTasks.Chat, Text = "今天天气怎么样？" },
    ];

    private static GoldenAnswer Label(string id, string label, double confidence = 0.9) =>
        new() { Id = id, Task = InferTasks.Sentiment, Label = label, Confidence = confidence, FinishReason = FinishReasons.Stop };

    private static GoldenAnswer Chat(string id, string userText, string text, string finish = FinishReasons.Stop) =>
        new() { Id = id, Task = InferTasks.Chat, Text = text, TextChars = text.Length, FinishReason = finish, Defects = TextChecks.Defects(userText, text, finish) };

    private static GoldenResult Result(string colour, params GoldenAnswer[] answers) =>
        new() { Colour = colour, Profile = "v1", Answers = answers, ComputedAt = DateTimeOffset.UnixEpoch };

    private static GoldenResult Good(string colour) => Result(colour,
        Label("s1", "positive"), Label("s2", "negative"), Chat("c1", "How are you today?", "I am fine, thank you for asking."), Chat("c2", "今天天气怎么样？", "今天天气很好，阳光明媚。"));

    [Fact]
    public void A_stored_result_is_keyed_by_model_profile_faults_and_inputs()
    {
        var digest = GoldenKeys.InputsDigest(Inputs);
        var key = GoldenKeys.Key(GoldenKeys.Fingerprint(Sha, V1, null), digest);
        Assert.StartsWith(GoldenKeys.Prefix, key);
        Assert.Equal(key, GoldenKeys.Key(GoldenKeys.Fingerprint(Sha.ToUpperInvariant(), V1, null), digest));
        // Faults that inject nothing are no faults.
        Assert.Equal(key, GoldenKeys.Key(GoldenKeys.Fingerprint(Sha, V1, new FaultOptions { FlipLabels = true }), digest));

        var others = new[]
        {
            GoldenKeys.Key(GoldenKeys.Fingerprint(new string('b', 64), V1, null), digest),
            GoldenKeys.Key(GoldenKeys.Fingerprint(Sha, V2, null), digest),
            GoldenKeys.Key(GoldenKeys.Fingerprint(Sha, V1 with { Chat = V1.Chat with { Temperature = V1.Chat.Temperature + 0.1 } }, null), digest),
            GoldenKeys.Key(GoldenKeys.Fingerprint(Sha, V1, new FaultOptions { Fraction = 1, FlipLabels = true }), digest),
            GoldenKeys.Key(GoldenKeys.Fingerprint(Sha, V1, new FaultOptions { ErrorRate = 0.2 }), digest),
            GoldenKeys.Key(GoldenKeys.Fingerprint(Sha, V1, null), GoldenKeys.InputsDigest(Inputs[..3])),
            GoldenKeys.Key(GoldenKeys.Fingerprint(Sha, V1, null), GoldenKeys.InputsDigest([Inputs[0] with { Label = "neutral" }, .. Inputs[1..]])),
        };
        Assert.DoesNotContain(key, others);
        Assert.Equal(others.Length, others.Distinct().Count());
        // A key is a valid KV key.
        Assert.Matches("^golden\\.[0-9a-f]{40}$", key);
    }

    [Fact]
    public void The_gate_passes_a_candidate_as_good_as_live()
    {
        var d = GoldenGate.Decide(Good("blue"), Good("green"), Inputs, new RolloutPolicy());
        Assert.True(d.Passed, d.Reason);
        Assert.StartsWith("golden set:", d.Reason);
        Assert.Contains("candidate 100.0%", d.Reason);
    }

    [Fact]
    public void The_gate_fails_lower_accuracy_and_more_errors()
    {
        var worse = Good("green") with { Answers = [Label("s1", "negative"), .. Good("green").Answers.Skip(1)] };
        var d = GoldenGate.Decide(Good("blue"), worse, Inputs, new RolloutPolicy());
        Assert.True(d.Failed);
        Assert.Contains("sentiment: candidate 50.0%", d.Reason);
        // Within the policy's tolerance it passes.
        Assert.True(GoldenGate.Decide(Good("blue"), worse, Inputs, new RolloutPolicy { GoldenAccuracyTolerance = 0.5 }).Passed);

        var errors = Good("green") with { Answers = [.. Good("green").Answers.Take(2), Good("green").Answers[2] with { Text = null, Error = "injected_fault" }, Good("green").Answers[3]] };
        var e = GoldenGate.Decide(Good("blue"), errors, Inputs, new RolloutPolicy { GoldenChatDefectTolerance = 0.9 });
        Assert.True(e.Failed);
        Assert.Contains("chat: candidate 1 errors vs live 0", e.Reason);
    }

    [Fact]
    public void The_gate_fails_chat_answers_with_clearly_more_defects_than_live()
    {
        // The Chinese prompt answered in English, and an empty answer: defects live's answers do not have.
        var bad = Result("green", Label("s1", "positive"), Label("s2", "negative"),
            Chat("c1", "How are you today?", ""), Chat("c2", "今天天气怎么样？", "The weather is nice and sunny today."));
        var d = GoldenGate.Decide(Good("blue"), bad, Inputs, new RolloutPolicy { GoldenChatDefectTolerance = 0.25 });
        Assert.True(d.Failed, d.Reason);
        Assert.Contains("defects live's do not on 2 of 2 prompts", d.Reason);
        Assert.Contains("wrong_language 1", d.Reason);
        // A tolerance that allows one more defective answer still fails two, and allows one.
        var one = bad with { Answers = [.. bad.Answers.Take(3), Good("green").Answers[3]] };
        Assert.True(GoldenGate.Decide(Good("blue"), one, Inputs, new RolloutPolicy { GoldenChatDefectTolerance = 0.5 }).Passed);
        // Defects live shares are not counted against the candidate.
        Assert.True(GoldenGate.Decide(bad with { Colour = "blue" }, bad, Inputs, new RolloutPolicy { GoldenChatDefectTolerance = 0 }).Passed);
    }

    [Fact]
    public void The_gate_is_inconclusive_when_inputs_were_never_run_never_a_silent_pass()
    {
        var starved = Good("blue") with { Answers = [.. Good("blue").Answers.Take(3), new GoldenAnswer { Id = "c2", Task = InferTasks.Chat, Error = ErrorCodes.DeadlineExceeded, Taken = false }] };
        var d = GoldenGate.Decide(starved, Good("green"), Inputs, new RolloutPolicy());
        Assert.Equal(Judging.Outcomes.Inconclusive, d.Outcome);
        Assert.Contains("live blue: 1 of 4 inputs were never taken", d.Reason);
        Assert.Equal(1, d.NotRun);
        Assert.False(starved.IsComplete(Inputs.Length));
        Assert.True(Good("blue").IsComplete(Inputs.Length));
        // Taken and never answered (a hang) is the colour's failure, not capacity.
        var hung = Good("green") with { Answers = [.. Good("green").Answers.Take(3), new GoldenAnswer { Id = "c2", Task = InferTasks.Chat, Error = ErrorCodes.DeadlineExceeded, Taken = true }] };
        Assert.True(GoldenGate.Decide(Good("blue"), hung, Inputs, new RolloutPolicy { GoldenChatDefectTolerance = 0.9 }).Failed);
    }

    [Fact]
    public void The_policy_refuses_golden_tolerances_that_cannot_fail()
    {
        var e = Assert.Throws<InvalidOperationException>(() => new RolloutPolicy { GoldenChatDefectTolerance = 1 }.Validate("test"));
        Assert.Contains("golden_chat_defect_tolerance", e.Message);
        Assert.Throws<InvalidOperationException>(() => new RolloutPolicy { GoldenAccuracyTolerance = -0.1 }.Validate("test"));
        Assert.Equal(0.1, RolloutPolicy.Load(Path.Combine(Paths.RepoRoot, "deploy", "rollout-policy.json")).GoldenChatDefectTolerance);
    }

    [Fact]
    public void The_chat_golden_set_has_everyday_prompts_in_both_languages()
    {
        var chat = GoldenRunner.LoadChat(Path.Combine(Paths.RepoRoot, "deploy", "golden", "chat.jsonl"));
        Assert.InRange(chat.Count, 20, 40);
        Assert.Equal(chat.Count / 2, chat.Count(c => c.Lang == "zh"));
        Assert.Equal(chat.Count / 2, chat.Count(c => c.Lang == "en"));
        Assert.All(chat, c => Assert.Equal(InferTasks.Chat, c.Task));
        // Each prompt is in the writing system its language says, so the wrong-language check can apply.
        Assert.All(chat, c => Assert.Equal(c.Lang == "zh" ? "cjk" : "latin", TextChecks.Script(c.Text)));
        var sentiment = GoldenRunner.LoadSentiment(Path.Combine(Paths.RepoRoot, "deploy", "golden", "sentiment.jsonl"));
        Assert.Empty(sentiment.Select(s => s.Id).Intersect(chat.Select(c => c.Id)));
    }

    [Fact]
    public void A_malformed_inputs_file_says_which_line_and_why()
    {
        Assert.Contains("x.jsonl:2: not a JSON object", Assert.Throws<GoldenInputsException>(() => GoldenInputs.Parse(["{\"text\":\"a\"}", "{oops"], "x.jsonl", InferTasks.Chat)).Message);
        Assert.Contains("x.jsonl:1: 'text' is required", Assert.Throws<GoldenInputsException>(() => GoldenInputs.Parse(["{\"id\":\"a\"}"], "x.jsonl", InferTasks.Chat)).Message);
        Assert.Contains("'task' must be sentiment or chat", Assert.Throws<GoldenInputsException>(() => GoldenInputs.Parse(["{\"task\":\"poem\",\"text\":\"a\"}"], "x.jsonl", InferTasks.Chat)).Message);
        Assert.Contains("'label' is for sentiment", Assert.Throws<GoldenInputsException>(() => GoldenInputs.Parse(["{\"task\":\"chat\",\"text\":\"a\",\"label\":\"positive\"}"], "x.jsonl", InferTasks.Chat)).Message);
        Assert.Contains("used twice", Assert.Throws<GoldenInputsException>(() => GoldenInputs.Parse(["{\"id\":\"a\",\"text\":\"a\"}", "", "{\"id\":\"a\",\"text\":\"b\"}"], "x.jsonl", InferTasks.Chat)).Message);
        Assert.Contains("does not exist", Assert.Throws<GoldenInputsException>(() => GoldenInputs.Load("/nonexistent/inputs.jsonl", InferTasks.Chat)).Message);

        var parsed = GoldenInputs.Parse(["{\"text\":\"hello\"}", "", "{\"text\":\"great\",\"label\":\"positive\"}", "{\"task\":\"sentiment\",\"text\":\"meh\",\"max_tokens\":8}"], "x.jsonl", InferTasks.Chat);
        Assert.Equal(new[] { ("line1", "chat"), ("line3", "sentiment"), ("line4", "sentiment") }, parsed.Select(p => (p.Id, p.Task)));
        Assert.Equal(8, parsed[2].MaxTokens);

        Assert.Null(GoldenInputs.Problem(Inputs, 10, 100));
        Assert.Contains("at most 3", GoldenInputs.Problem(Inputs, 3, 100));
        Assert.Contains("'inputs' is empty", GoldenInputs.Problem([], 3, 100));
        Assert.Contains("used twice", GoldenInputs.Problem([Inputs[0], Inputs[0]], 3, 100));
        // A JSON null among the inputs is named, not a NullReferenceException (an internal_error to the operator).
        var withNull = JsonSerializer.Deserialize("{\"inputs\":[{\"id\":\"a\",\"task\":\"chat\",\"text\":\"hi\"},null]}", QwenJsonContext.Default.ControlRequest)!.Inputs!;
        Assert.Contains("inputs[2] is null", GoldenInputs.Problem(withNull, 3, 100));
    }

    [Fact]
    public void The_comparison_shows_both_answers_side_by_side_with_every_check()
    {
        var green = Result("green", Label("s1", "negative", 0.4), Label("s2", "negative"),
            Chat("c1", "How are you today?", "Fine."), new GoldenAnswer { Id = "c2", Task = InferTasks.Chat, Error = "injected_fault" });
        var report = Comparison.Build(["blue", "green"], Inputs, Good("blue"), green, new RolloutPolicy(), DateTimeOffset.UnixEpoch, "fail: golden set: ...");
        Assert.Equal(4, report.Pairs.Count);
        CompareCheck Check(int pair, string name) => report.Pairs[pair].Checks.Single(c => c.Name == name);
        Assert.True(Check(0, Comparison.Checks.Label).Flagged);
        Assert.Equal("positive | negative", Check(0, Comparison.Checks.Label).Result);
        Assert.Equal("positive: right | wrong", Check(0, Comparison.Checks.Expected).Result);
        Assert.True(Check(0, Comparison.Checks.Confidence).Flagged);
        Assert.False(Check(1, Comparison.Checks.Label).Flagged);
        Assert.True(Check(2, Comparison.Checks.Length).Flagged);
        Assert.False(Check(2, Comparison.Checks.NewDefects).Flagged);
        Assert.False(Check(2, Comparison.Checks.WrongLanguage).Flagged);
        Assert.True(Check(3, Comparison.Checks.Errors).Flagged);
        Assert.Equal("ok | injected_fault", Check(3, Comparison.Checks.Errors).Result);
        Assert.Equal(1, report.Flagged[Comparison.Checks.Label]);
        Assert.Equal(1, report.Flagged[Comparison.Checks.Errors]);
        Assert.Equal(new[] { 1.0, 0.5 }, report.Scores.Select(s => s.Accuracy));

        var text = string.Join('\n', Comparison.Format(report));
        Assert.Contains("compare: blue vs green, 4 inputs", text);
        Assert.Contains("[sentiment] s1: I love it  expected positive", text);
        Assert.Contains("  blue  | positive 0.90", text);
        Assert.Contains("  green | negative 0.40", text);
        Assert.Contains("!label positive | negative", text);
        Assert.Contains("  green | (error: injected_fault)", text);
        Assert.Contains("  blue  | 今天天气很好，阳光明媚。  [12 chars, stop]", text);
        Assert.Contains("gate: fail: golden set", text);
        Assert.Contains("flagged: ", text);
    }

    [Fact]
    public void A_comparison_reply_is_cut_to_fit_the_payload_limit_and_says_so()
    {
        var inputs = Enumerable.Range(0, 40).Select(i => new GoldenInput { Id = $"c{i}", Task = InferTasks.Chat, Text = new string('q', 300) }).ToArray();
        GoldenResult Long(string colour) => Result(colour, inputs.Select(i => Chat(i.Id, i.Text, string.Concat(Enumerable.Repeat("好的，我们一起去公园散步吧。", 60)))).ToArray());
        var report = Comparison.Build(["blue", "green"], inputs, Long("blue"), Long("green"), new RolloutPolicy(), DateTimeOffset.UnixEpoch);
        var fitted = Comparison.Fit(report, 64 * 1024, 600);
        Assert.True(fitted.Truncated);
        Assert.Contains("cut", fitted.Note);
        Assert.True(System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(new ControlReply { Ok = true, Compare = fitted }, QwenJsonContext.Default.ControlReply).Length <= 64 * 1024);
        Assert.All(fitted.Pairs, p => Assert.True(p.First!.TextCut && p.First.TextChars == 840));
        // The checks were made on the whole answers before cutting.
        Assert.Equal(report.Flagged, fitted.Flagged);
        // A small reply is left alone.
        var small = Comparison.Build(["blue", "green"], Inputs, Good("blue"), Good("green"), new RolloutPolicy(), DateTimeOffset.UnixEpoch);
        Assert.False(Comparison.Fit(small, 64 * 1024, 600).Truncated);
    }

    [Fact]
    public void Chat_defects_are_the_judges_defects()
    {
        Assert.Equal(new[] { TextChecks.Names.Empty }, TextChecks.Defects("hi there friend", "", FinishReasons.Stop));
        Assert.Equal(new[] { TextChecks.Names.CutOff, TextChecks.Names.WrongLanguage }, TextChecks.Defects("今天天气怎么样？", "The weather is nice.", FinishReasons.Length));
        Assert.Contains(TextChecks.Names.Refusal, TextChecks.Defects("help me", "I'm sorry, but I can't help with that.", FinishReasons.Stop));
        Assert.Equal(new[] { "cut_off" }, TextChecks.NewDefects(["empty"], ["empty", "cut_off"]));
        Assert.Equal(GoldenRunner.Seed("chat-en-01"), GoldenRunner.Seed("chat-en-01"));
        Assert.NotEqual(GoldenRunner.Seed("chat-en-01"), GoldenRunner.Seed("chat-en-02"));
    }
}
