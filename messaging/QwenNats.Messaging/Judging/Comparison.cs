using System.Globalization;
using System.Text;
using System.Text.Json;

namespace QwenNats.Messaging;

/// <summary>
/// <c>qwen.ctl.compare</c>'s pure parts: pairs two colours' answers to the same inputs, runs every check on
/// each pair (the judge's checks and thresholds, from the rollout policy), keeps the reply within the NATS
/// payload limit and prints it side by side (<c>qwenctl compare</c>).
/// </summary>
public static class Comparison
{
    public static class Checks
    {
        public const string Label = "label";
        public const string Expected = "expected";
        public const string Confidence = "confidence_drift";
        public const string Errors = "errors";
        public const string NewDefects = "new_defects";
        public const string Tone = "tone";
        public const string WrongLanguage = "wrong_language";
        public const string Length = "length_ratio";
        public const string Similarity = "similarity";
    }

    /// <summary>The pairs, in input order, with every check; the second colour is judged against the first.</summary>
    public static CompareReport Build(IReadOnlyList<string> colours, IReadOnlyList<GoldenInput> inputs, GoldenResult first, GoldenResult second,
        RolloutPolicy policy, DateTimeOffset at, string? gate = null)
    {
        var a = first.Answers.ToDictionary(x => x.Id, StringComparer.Ordinal);
        var b = second.Answers.ToDictionary(x => x.Id, StringComparer.Ordinal);
        var pairs = inputs.Select(i => Pair(i, a.GetValueOrDefault(i.Id), b.GetValueOrDefault(i.Id), policy)).ToArray();
        var flagged = new SortedDictionary<string, int>(StringComparer.Ordinal);
        foreach (var check in pairs.SelectMany(p => p.Checks))
            flagged[check.Name] = flagged.GetValueOrDefault(check.Name) + (check.Flagged ? 1 : 0);
        return new CompareReport
        {
            Colours = colours, Pairs = pairs, Flagged = flagged, Gate = gate, At = at,
            Scores = [GoldenGate.Score(first, inputs, false), GoldenGate.Score(second, inputs, false)],
        };
    }

    public static ComparePair Pair(GoldenInput input, GoldenAnswer? first, GoldenAnswer? second, RolloutPolicy policy)
    {
        var checks = new List<CompareCheck>();
        checks.Add(new CompareCheck(Checks.Errors, $"{Status(first)} | {Status(second)}", second is not { Answered: true } && first is { Answered: true }));
        if (first is { Answered: true } x && second is { Answered: true } y)
        {
            if (input.Task == InferTasks.Sentiment)
            {
                checks.Add(new CompareCheck(Checks.Label, $"{x.Label} | {y.Label}", x.Label != y.Label));
                if (input.Label is { } expected)
                    checks.Add(new CompareCheck(Checks.Expected, $"{expected}: {Mark(x.Label == expected)} | {Mark(y.Label == expected)}",
                        x.Label == expected && y.Label != expected));
                var drift = Math.Abs((y.Confidence ?? 0) - (x.Confidence ?? 0));
                checks.Add(new CompareCheck(Checks.Confidence, F(drift), drift > (policy.ConfidenceDrift.Threshold ?? 1)));
            }
            else
            {
                var added = TextChecks.NewDefects(x.Defects, y.Defects);
                checks.Add(new CompareCheck(Checks.NewDefects, $"{List(x.Defects)} | {List(y.Defects)}", added.Count > 0));
                var tone = Tone.Change(x.Text, y.Text);
                checks.Add(new CompareCheck(Checks.Tone, tone ?? "same", tone is not null));
                var wrongA = x.Defects.Contains(TextChecks.Names.WrongLanguage);
                var wrongB = y.Defects.Contains(TextChecks.Names.WrongLanguage);
                checks.Add(new CompareCheck(Checks.WrongLanguage, $"{(wrongA ? "yes" : "no")} | {(wrongB ? "yes" : "no")}", wrongB && !wrongA));
                var ratio = Math.Max(1, y.TextChars) / (double)Math.Max(1, x.TextChars);
                var limit = policy.ChatLength.Threshold ?? 2;
                checks.Add(new CompareCheck(Checks.Length, $"{F(ratio)} ({x.TextChars} | {y.TextChars} chars)", ratio > limit || ratio < 1 / limit));
                var similarity = TextChecks.Similarity(x.Text, y.Text);
                checks.Add(new CompareCheck(Checks.Similarity, F(similarity) + (x.TextCut || y.TextCut ? " (of the stored texts)" : ""),
                    policy.ChatSimilarity is { Threshold: { } min } && similarity < min));
            }
        }
        return new ComparePair { Input = input, First = first, Second = second, Checks = checks };
    }

    /// <summary>
    /// Shortens answer and input texts until the serialized reply fits <paramref name="maxBytes"/> (a NATS
    /// message must fit the server's <c>max_payload</c>); says so in the report.
    /// </summary>
    public static CompareReport Fit(CompareReport report, int maxBytes, int maxTextChars)
    {
        var limit = maxTextChars;
        var (fitted, cut) = Shorten(report, limit);
        while (Size(fitted) > maxBytes && limit > 16)
        {
            limit /= 2;
            (fitted, cut) = Shorten(report, limit);
        }
        if (Size(fitted) > maxBytes)
        {
            var keep = fitted.Pairs.Count;
            while (keep > 1 && Size(fitted with { Pairs = fitted.Pairs.Take(keep).ToArray() }) > maxBytes) keep = keep * 3 / 4;
            return fitted with
            {
                Pairs = fitted.Pairs.Take(keep).ToArray(), Truncated = true,
                Note = $"The reply holds the first {keep} of {report.Pairs.Count} pairs, texts cut to {limit} characters, to stay under {maxBytes} bytes; the summary counts every pair.",
            };
        }
        return cut
            ? fitted with { Truncated = true, Note = $"Texts longer than {limit} characters are cut in this reply (text_chars has each answer's length; the checks read the whole answers)." }
            : fitted;
    }

    private static (CompareReport Report, bool Cut) Shorten(CompareReport r, int limit)
    {
        var cut = false;
        var pairs = r.Pairs.Select(p =>
        {
            var first = Cut(p.First, limit);
            var second = Cut(p.Second, limit);
            var input = p.Input.Text.Length > limit ? p.Input with { Text = Prefix(p.Input.Text, limit) + "…" } : p.Input;
            cut |= !ReferenceEquals(first, p.First) || !ReferenceEquals(second, p.Second) || !ReferenceEquals(input, p.Input);
            return p with { Input = input, First = first, Second = second };
        }).ToArray();
        return (r with { Pairs = pairs }, cut);
    }

    /// <summary>An answer whose text is at most <paramref name="limit"/> characters (never splitting a surrogate pair).</summary>
    public static GoldenAnswer? Cut(GoldenAnswer? a, int limit)
    {
        if (a?.Text is not { } text || text.Length <= limit) return a;
        return a with { Text = Prefix(text, limit), TextCut = true };
    }

    /// <summary>At most <paramref name="limit"/> characters of <paramref name="text"/>, never splitting a surrogate pair.</summary>
    private static string Prefix(string text, int limit) => text[..(char.IsHighSurrogate(text[limit - 1]) ? limit - 1 : limit)];

    private static int Size(CompareReport r) => JsonSerializer.SerializeToUtf8Bytes(new ControlReply { Ok = true, Compare = r }, QwenJsonContext.Default.ControlReply).Length;

    /// <summary>The report as text: each input with both answers one above the other, every check, then a summary.</summary>
    public static IEnumerable<string> Format(CompareReport r)
    {
        var (a, b) = (r.Colours[0], r.Colours[^1]);
        var width = Math.Max(a.Length, b.Length);
        yield return $"compare: {a} vs {b}, {r.Pairs.Count} inputs (checks: '!' marks where {b} is worse than {a})";
        foreach (var p in r.Pairs)
        {
            yield return "";
            var about = string.Join(", ", new[] { p.Input.Lang, p.Input.Kind }.Where(s => !string.IsNullOrEmpty(s)));
            yield return $"[{p.Input.Task}] {p.Input.Id}{(about.Length > 0 ? $" ({about})" : "")}: {OneLine(p.Input.Text)}" +
                         (p.Input.Label is { } l ? $"  expected {l}" : "");
            yield return $"  {a.PadRight(width)} | {Answer(p.First)}";
            yield return $"  {b.PadRight(width)} | {Answer(p.Second)}";
            yield return "  checks: " + string.Join("; ", p.Checks.Select(c => $"{(c.Flagged ? "!" : "")}{c.Name} {c.Result}"));
        }
        yield return "";
        yield return "summary:";
        foreach (var s in r.Scores)
        {
            var parts = new List<string>();
            if (s.Total > 0) parts.Add($"sentiment {s.Correct}/{s.Total} correct ({Pct(s.Accuracy)}), {s.Errors} errors");
            if (s.ChatTotal > 0)
                parts.Add($"chat {s.ChatDefective}/{s.ChatTotal} with defects{(s.DefectCounts is { Count: > 0 } d ? $" ({string.Join(", ", d.Select(kv => $"{kv.Key} {kv.Value}"))})" : "")}, {s.ChatErrors} errors");
            if (s.NotRun > 0) parts.Add($"{s.NotRun} not run");
            yield return $"  {s.Colour.PadRight(width)} {s.Profile ?? "?"} {s.Release ?? ""}: {string.Join("; ", parts)}";
        }
        yield return "  flagged: " + (r.Flagged.Count == 0 ? "none" : string.Join(", ", r.Flagged.Select(kv => $"{kv.Key} {kv.Value}")));
        if (r.Gate is { } gate) yield return $"  gate: {gate}";
        if (r.Note is { } note) yield return $"  note: {note}";
    }

    private static string Answer(GoldenAnswer? x) => x switch
    {
        null => "(no answer)",
        { Taken: false } => "(not run: no worker took it in time)",
        { Error: { } e } => $"(error: {e})",
        { Task: InferTasks.Sentiment } => $"{x.Label} {F(x.Confidence ?? 0)}",
        _ => $"{OneLine(x.Text ?? "")}{(x.TextCut ? "…" : "")}  [{x.TextChars} chars, {x.FinishReason}{(x.Defects.Count > 0 ? $"; {List(x.Defects)}" : "")}]",
    };

    private static string OneLine(string s) => s.Replace("\r", " ", StringComparison.Ordinal).Replace("\n", " ⏎ ", StringComparison.Ordinal);
    private static string Status(GoldenAnswer? x) => x switch { null => "missing", { Taken: false } => "not run", { Error: { } e } => e, _ => "ok" };
    private static string Mark(bool ok) => ok ? "right" : "wrong";
    private static string List(IReadOnlyList<string> d) => d.Count == 0 ? "none" : string.Join(",", d);
    private static string F(double v) => v.ToString("0.00", CultureInfo.InvariantCulture);

    private static string Pct(double v) => (v * 100).ToString("0.0", System.Globalization.CultureInfo.InvariantCulture) + "%";
}
