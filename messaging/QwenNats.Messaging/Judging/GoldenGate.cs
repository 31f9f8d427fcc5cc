namespace QwenNats.Messaging;

/// <summary>The golden gate's decision: <see cref="Judging.Outcomes"/> and why.</summary>
public sealed record GoldenGateDecision(string Outcome, string Reason)
{
    /// <summary>Inputs no worker took (over both colours): what an inconclusive gate still waits for.</summary>
    public int NotRun { get; init; }

    public bool Passed => Outcome == Judging.Outcomes.Pass;
    public bool Failed => Outcome == Judging.Outcomes.Fail;
}

/// <summary>
/// The golden gate before a rollout leaves Shadow, on both colours' answers to the golden sets (pure): the
/// candidate's sentiment accuracy may be at most <c>golden_accuracy_tolerance</c> below live's with no more
/// errors, and its chat answers may show a defect live's answer to the same prompt does not (net of the
/// reverse) on at most <c>golden_chat_defect_tolerance</c> of the prompts, with no more errors. A result with
/// inputs no worker took is incomplete: the gate is inconclusive, never a silent pass.
/// </summary>
public static class GoldenGate
{
    /// <summary>One colour's score on the inputs (sentiment accuracy over labelled inputs, chat errors and defects).</summary>
    public static GoldenScore Score(GoldenResult r, IReadOnlyList<GoldenInput> inputs, bool stored)
    {
        var answers = ById(r);
        int total = 0, correct = 0, errors = 0, chat = 0, chatErrors = 0, defective = 0, notRun = 0;
        var counts = new SortedDictionary<string, int>(StringComparer.Ordinal);
        foreach (var input in inputs)
        {
            var a = answers.GetValueOrDefault(input.Id);
            if (a is null || !a.Taken) notRun++;
            if (input.Task == InferTasks.Sentiment)
            {
                if (input.Label is null) continue;
                total++;
                if (a is not { Answered: true }) errors++;
                else if (a.Label == input.Label) correct++;
            }
            else
            {
                chat++;
                if (a is not { Answered: true }) { chatErrors++; continue; }
                if (a.Defects.Count > 0) defective++;
                foreach (var d in a.Defects) counts[d] = counts.GetValueOrDefault(d) + 1;
            }
        }
        return new GoldenScore(r.Colour, r.Profile, total, correct, errors, total == 0 ? 0 : Math.Round((double)correct / total, 4))
        {
            Release = r.Release, ModelSha256 = r.ModelSha256, ChatTotal = chat, ChatErrors = chatErrors, ChatDefective = defective,
            DefectCounts = chat == 0 ? null : counts, NotRun = notRun, Stored = stored, ComputedAt = r.ComputedAt,
        };
    }

    /// <summary>Chat prompts on which <paramref name="b"/>'s answer has a defect <paramref name="a"/>'s answer to the same prompt has not,
    /// or a changed tone (both answered).</summary>
    public static int NewDefects(GoldenResult a, GoldenResult b, IReadOnlyList<GoldenInput> inputs)
    {
        var first = ById(a);
        var second = ById(b);
        return inputs.Count(i => i.Task == InferTasks.Chat
            && first.GetValueOrDefault(i.Id) is { Answered: true } x && second.GetValueOrDefault(i.Id) is { Answered: true } y
            && (TextChecks.NewDefects(x.Defects, y.Defects).Count > 0 || Tone.Change(x.Text, y.Text) is not null));
    }

    public static GoldenGateDecision Decide(GoldenResult live, GoldenResult candidate, IReadOnlyList<GoldenInput> inputs, RolloutPolicy policy)
    {
        var missing = new List<string>();
        var waiting = 0;
        foreach (var (r, role) in new[] { (live, "live"), (candidate, "candidate") })
        {
            var notRun = Score(r, inputs, false).NotRun;
            waiting += notRun;
            if (notRun > 0)
                missing.Add($"{role} {r.Colour}: {notRun} of {inputs.Count} inputs were never taken by a worker (golden runs use the low-priority queue, " +
                            "which a pool busy with live work, or without workers, does not serve)");
        }
        if (missing.Count > 0)
            return new GoldenGateDecision(Judging.Outcomes.Inconclusive, $"golden set inconclusive: {string.Join("; ", missing)}") { NotRun = waiting };

        var l = Score(live, inputs, false);
        var c = Score(candidate, inputs, false);
        var failures = new List<string>();
        var parts = new List<string>();
        if (l.Total > 0)
        {
            var line = $"candidate {Pct(c.Accuracy)} ({c.Correct}/{c.Total}, {c.Errors} errors) vs live {Pct(l.Accuracy)} ({l.Correct}/{l.Total}, {l.Errors} errors)";
            if (c.Accuracy < l.Accuracy - policy.GoldenAccuracyTolerance || c.Errors > l.Errors)
                failures.Add($"sentiment: candidate {Pct(c.Accuracy)} ({c.Correct}/{c.Total}, {c.Errors} errors) below live {Pct(l.Accuracy)} ({l.Correct}/{l.Total}, {l.Errors} errors)");
            parts.Add(line);
        }
        if (l.ChatTotal > 0)
        {
            var worse = NewDefects(live, candidate, inputs);
            var better = NewDefects(candidate, live, inputs);
            var allowed = (int)Math.Floor(policy.GoldenChatDefectTolerance * l.ChatTotal);
            var line = $"chat: candidate answers with defects live's have not {worse}, the reverse {better} ({l.ChatTotal} prompts, {allowed} more allowed), errors {c.ChatErrors} vs {l.ChatErrors}";
            if (worse - better > allowed)
                failures.Add($"chat: the candidate's answers show defects live's do not on {worse} of {l.ChatTotal} prompts (live's on {better}; at most {allowed} more allowed){DefectSummary(c)}");
            else if (c.ChatErrors > l.ChatErrors)
                failures.Add($"chat: candidate {c.ChatErrors} errors vs live {l.ChatErrors}");
            parts.Add(line);
        }
        return failures.Count > 0
            ? new GoldenGateDecision(Judging.Outcomes.Fail, $"golden set: {string.Join("; ", failures)}")
            : new GoldenGateDecision(Judging.Outcomes.Pass, $"golden set: {string.Join("; ", parts)}");
    }

    private static string DefectSummary(GoldenScore s) =>
        s.DefectCounts is { Count: > 0 } d ? $" (candidate: {string.Join(", ", d.Select(kv => $"{kv.Key} {kv.Value}"))})" : "";

    private static Dictionary<string, GoldenAnswer> ById(GoldenResult r)
    {
        var map = new Dictionary<string, GoldenAnswer>(StringComparer.Ordinal);
        foreach (var a in r.Answers) map[a.Id] = a;
        return map;
    }

    private static string Pct(double v) => (v * 100).ToString("0.0", System.Globalization.CultureInfo.InvariantCulture) + "%";
}
