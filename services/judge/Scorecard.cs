using QwenNats.Contracts;

namespace QwenNats.Judge;

/// <summary>
/// Everything the judge has counted for one rollout step. It is persisted in KV with the stream
/// sequence of the last sample applied, so a restarted judge neither loses nor double-counts a sample.
/// </summary>
public sealed class Scorecard
{
    public string RolloutId { get; set; } = "";
    public int Step { get; set; }
    public RolloutPhase Phase { get; set; }
    public ulong LastSequence { get; set; }
    public DateTimeOffset FirstSampleAt { get; set; }

    public int Samples { get; set; }
    public int LiveErrors { get; set; }
    public int CandidateErrors { get; set; }

    public int SentimentPairs { get; set; }
    public int Agreements { get; set; }
    public List<double> ConfidenceDrifts { get; set; } = [];

    public int ChatPairs { get; set; }
    public int LiveEmpty { get; set; }
    public int CandidateEmpty { get; set; }
    public int LiveTruncated { get; set; }
    public int CandidateTruncated { get; set; }
    public int CandidateBroken { get; set; }
    public int LiveRepetitive { get; set; }
    public int CandidateRepetitive { get; set; }
    public List<double> LengthRatios { get; set; } = [];
    public List<double> Similarities { get; set; } = [];

    public List<double> TotalRatios { get; set; } = [];
    public List<double> TtftRatios { get; set; } = [];

    public void Add(ShadowSample s, ulong sequence)
    {
        if (Samples == 0) FirstSampleAt = s.At;
        LastSequence = sequence;
        Samples++;
        var liveOk = s.Live.Error is null;
        var candOk = s.Candidate.Error is null;
        if (!liveOk) LiveErrors++;
        if (!candOk) CandidateErrors++;
        if (!liveOk || !candOk) return;

        if (s.Live.TotalMs > 0 && s.Candidate.TotalMs > 0)
            TotalRatios.Add(s.Candidate.TotalMs / s.Live.TotalMs);
        if (s.Live.TimeToFirstTokenMs > 0 && s.Candidate.TimeToFirstTokenMs > 0)
            TtftRatios.Add(s.Candidate.TimeToFirstTokenMs / s.Live.TimeToFirstTokenMs);

        if (s.Task == InferTasks.Sentiment)
        {
            SentimentPairs++;
            if (s.Live.Label == s.Candidate.Label) Agreements++;
            ConfidenceDrifts.Add(Math.Abs((s.Candidate.Confidence ?? 0) - (s.Live.Confidence ?? 0)));
        }
        else if (s.Task == InferTasks.Chat)
        {
            ChatPairs++;
            if (TextChecks.IsEmpty(s.Live.Text)) LiveEmpty++;
            if (TextChecks.IsEmpty(s.Candidate.Text)) CandidateEmpty++;
            if (s.Live.FinishReason == FinishReasons.Length) LiveTruncated++;
            if (s.Candidate.FinishReason == FinishReasons.Length) CandidateTruncated++;
            if (TextChecks.IsBrokenUtf8(s.Candidate.Text)) CandidateBroken++;
            if (TextChecks.IsRepetitive(s.Live.Text)) LiveRepetitive++;
            if (TextChecks.IsRepetitive(s.Candidate.Text)) CandidateRepetitive++;
            var liveLen = Math.Max(1, s.Live.Text?.Length ?? 0);
            LengthRatios.Add((s.Candidate.Text?.Length ?? 0) / (double)liveLen);
            Similarities.Add(TextChecks.Similarity(s.Live.Text, s.Candidate.Text));
        }
    }
}

/// <summary>Turns a scorecard into a verdict under a policy; pure.</summary>
public static class Evaluator
{
    public static Verdict Evaluate(Scorecard c, RolloutPolicy p, DateTimeOffset now)
    {
        var checks = new List<JudgeCheck>();
        var n = c.Samples;
        var liveErrorRate = n == 0 ? 0 : (double)c.LiveErrors / n;
        var candErrorRate = n == 0 ? 0 : (double)c.CandidateErrors / n;
        checks.Add(Max("error_rate_increase", candErrorRate - liveErrorRate, p.ErrorRateIncreaseMax, n,
            $"candidate {candErrorRate:P1} vs live {liveErrorRate:P1} errors"));

        if (c.SentimentPairs >= p.MinTaskSamples)
        {
            var lower = Stats.WilsonLower(c.Agreements, c.SentimentPairs, p.WilsonZ);
            checks.Add(Min("sentiment_agreement", lower, p.SentimentAgreementMin, c.SentimentPairs,
                $"{c.Agreements}/{c.SentimentPairs} labels agree; Wilson lower bound {lower:F3}"));
            var drift = c.ConfidenceDrifts.Average();
            checks.Add(Max("confidence_drift", drift, p.ConfidenceDriftMax, c.SentimentPairs, $"mean |confidence difference| {drift:F3}"));
        }
        if (c.ChatPairs >= p.MinTaskSamples)
        {
            double Rate(int k) => (double)k / c.ChatPairs;
            checks.Add(Max("chat_empty", Rate(c.CandidateEmpty) - Rate(c.LiveEmpty), p.ChatEmptyRateIncreaseMax, c.ChatPairs, $"{c.CandidateEmpty} empty vs {c.LiveEmpty} live"));
            checks.Add(Max("chat_truncated", Rate(c.CandidateTruncated) - Rate(c.LiveTruncated), p.ChatTruncatedRateIncreaseMax, c.ChatPairs, $"{c.CandidateTruncated} cut at max tokens vs {c.LiveTruncated} live"));
            checks.Add(Max("chat_broken_utf8", Rate(c.CandidateBroken), p.ChatBrokenUtf8RateMax, c.ChatPairs, $"{c.CandidateBroken} answers with broken UTF-8"));
            checks.Add(Max("chat_repetition", Rate(c.CandidateRepetitive) - Rate(c.LiveRepetitive), p.ChatRepetitionRateIncreaseMax, c.ChatPairs, $"{c.CandidateRepetitive} runaway repetitions vs {c.LiveRepetitive} live"));
            var ratio = Stats.Percentile(c.LengthRatios, 50);
            checks.Add(new JudgeCheck("chat_length_ratio", Math.Round(ratio, 4), $"[{p.ChatLengthRatioMin}, {p.ChatLengthRatioMax}]",
                ratio >= p.ChatLengthRatioMin && ratio <= p.ChatLengthRatioMax, c.ChatPairs, $"median candidate/live length {ratio:F2}"));
            var sim = c.Similarities.Average();
            checks.Add(Min("chat_similarity", sim, p.ChatSimilarityMin, c.ChatPairs, $"mean trigram similarity {sim:F3}"));
        }
        if (c.TotalRatios.Count >= p.MinTaskSamples)
        {
            var p50 = Stats.Percentile(c.TotalRatios, 50);
            var p95 = Stats.Percentile(c.TotalRatios, 95);
            checks.Add(Max("latency_p50_ratio", p50, p.LatencyP50RatioMax, c.TotalRatios.Count, $"paired total latency candidate/live p50 {p50:F2}"));
            checks.Add(Max("latency_p95_ratio", p95, p.LatencyP95RatioMax, c.TotalRatios.Count, $"paired total latency candidate/live p95 {p95:F2}"));
        }
        if (c.TtftRatios.Count >= p.MinTaskSamples)
        {
            var t50 = Stats.Percentile(c.TtftRatios, 50);
            checks.Add(Max("ttft_p50_ratio", t50, p.TtftP50RatioMax, c.TtftRatios.Count, $"paired time to first token candidate/live p50 {t50:F2}"));
        }

        string outcome, reason;
        var failing = checks.Where(k => !k.Passed).ToList();
        if (n < p.MinSamples)
            (outcome, reason) = (Judging.Outcomes.Inconclusive, $"too few samples: {n} of {p.MinSamples}");
        else if (c.LiveErrors == n)
            (outcome, reason) = (Judging.Outcomes.Inconclusive, "every live answer in this step errored; nothing to compare");
        else if (failing.Count > 0)
            (outcome, reason) = (Judging.Outcomes.Fail, string.Join("; ", failing.Select(f => $"{f.Name} {f.Value} outside {f.Threshold} ({f.Detail})")));
        else if (c.SentimentPairs < p.MinTaskSamples && c.ChatPairs < p.MinTaskSamples)
            (outcome, reason) = (Judging.Outcomes.Inconclusive, $"no task has {p.MinTaskSamples} comparable pairs yet");
        else
            (outcome, reason) = (Judging.Outcomes.Pass, $"all {checks.Count} checks pass on {n} samples");

        return new Verdict
        {
            RolloutId = c.RolloutId, Step = c.Step, Phase = c.Phase, Outcome = outcome, Reason = reason, Samples = n, Checks = checks, At = now,
        };
    }

    private static JudgeCheck Max(string name, double value, double max, int samples, string detail) =>
        new(name, Math.Round(value, 4), $"<= {max}", value <= max + 1e-12, samples, detail);

    private static JudgeCheck Min(string name, double value, double min, int samples, string detail) =>
        new(name, Math.Round(value, 4), $">= {min}", value >= min - 1e-12, samples, detail);
}
