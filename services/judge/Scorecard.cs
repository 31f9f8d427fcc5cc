using QwenNats.Messaging;

namespace QwenNats.Judge;

/// <summary>The running state of one sequential test (Wald's SPRT on paired events); bounded, serialisable.</summary>
public sealed class SequentialState
{
    public int Pairs { get; set; }
    public int Events { get; set; }
    /// <summary>Log-likelihood ratio of "event rate p1" against "event rate p0" so far.</summary>
    public double Llr { get; set; }
    /// <summary><see cref="Judging.Outcomes.Pass"/> or <see cref="Judging.Outcomes.Fail"/> once decided; the decision then stands for the step.</summary>
    public string? Decision { get; set; }
    public int DecidedAt { get; set; }
}

/// <summary>Wald's sequential probability ratio test for a Bernoulli event rate; pure.</summary>
public static class Sprt
{
    /// <summary>Fail when the log-likelihood ratio reaches this.</summary>
    public static double Upper(double alpha, double beta) => Math.Log((1 - beta) / alpha);

    /// <summary>Pass when the log-likelihood ratio falls to this.</summary>
    public static double Lower(double alpha, double beta) => Math.Log(beta / (1 - alpha));

    public static void Observe(SequentialState s, bool evt, SequentialTest t, double alpha, double beta)
    {
        s.Pairs++;
        if (evt) s.Events++;
        if (s.Decision == Judging.Outcomes.Fail)
            return; // a failure stands for the step; later pairs are still counted for the report
        // A pass is provisional: evidence keeps coming (answers that never come arrive last, at the mirror's
        // timeout), so the ratio keeps moving, floored at the pass boundary — a late fault must still travel
        // the whole way from there to the fail boundary, which a good candidate almost never does.
        s.Llr = Math.Max(Lower(alpha, beta), s.Llr + (evt ? Math.Log(t.P1 / t.P0) : Math.Log((1 - t.P1) / (1 - t.P0))));
        if (s.Llr >= Upper(alpha, beta))
            (s.Decision, s.DecidedAt) = (Judging.Outcomes.Fail, s.Pairs);
        else if (s.Llr <= Lower(alpha, beta))
        {
            if (s.Decision is null) s.DecidedAt = s.Pairs;
            s.Decision = Judging.Outcomes.Pass;
        }
        else
            s.Decision = null;
    }

    /// <summary>Wald's approximation of the probability that the test passes when the true event rate is <paramref name="p"/>.</summary>
    public static double PassProbability(SequentialTest t, double p, double alpha, double beta)
    {
        var (a, b) = (Upper(alpha, beta), Lower(alpha, beta));
        if (p <= 0) return 1;
        if (p >= 1) return 0;
        var (u, v) = (Math.Log(t.P1 / t.P0), Math.Log((1 - t.P1) / (1 - t.P0)));
        // Solve p·e^{h·u} + (1−p)·e^{h·v} = 1 for h ≠ 0 by bisection; OC(p) = (e^{h·a} − 1) / (e^{h·a} − e^{h·b}).
        double G(double h) => p * Math.Exp(h * u) + (1 - p) * Math.Exp(h * v) - 1;
        var drift = p * u + (1 - p) * v;
        if (Math.Abs(drift) < 1e-12)
            return a / (a - b);
        // G is convex with G(0) = 0 and G'(0) = drift: the other root lies on the side opposite the drift.
        var sign = drift < 0 ? 1.0 : -1.0;
        double near = sign * 1e-9, far = sign;
        while (G(far) < 0 && Math.Abs(far) < 1e6)
            far *= 2;
        for (var i = 0; i < 200; i++)
        {
            var mid = (near + far) / 2;
            if (G(mid) < 0) near = mid; else far = mid;
        }
        var h = (near + far) / 2;
        // (e^{ha} − 1) / (e^{ha} − e^{hb}), rearranged so no exponential overflows.
        return h > 0
            ? (1 - Math.Exp(-h * a)) / (1 - Math.Exp(h * (b - a)))
            : (Math.Exp(h * (a - b)) - Math.Exp(-h * b)) / (Math.Exp(h * (a - b)) - 1);
    }

    /// <summary>Wald's approximation of the expected number of pairs to a decision at true event rate <paramref name="p"/>.</summary>
    public static double ExpectedPairs(SequentialTest t, double p, double alpha, double beta)
    {
        var (a, b) = (Upper(alpha, beta), Lower(alpha, beta));
        var (u, v) = (Math.Log(t.P1 / t.P0), Math.Log((1 - t.P1) / (1 - t.P0)));
        var drift = p * u + (1 - p) * v;
        var pass = PassProbability(t, p, alpha, beta);
        if (Math.Abs(drift) < 1e-9)
            return -a * b / (p * u * u + (1 - p) * v * v);
        return (pass * b + (1 - pass) * a) / drift;
    }
}

/// <summary>A bounded histogram of ratios on a log₂ scale (1/64 to 64, eighth-octave bins): medians and p95 without keeping samples.</summary>
public sealed class RatioSketch
{
    private const int Span = 6, PerOctave = 8, Size = 2 * Span * PerOctave + 1;
    public int[] Bins { get; set; } = new int[Size];
    public int Count { get; set; }

    public void Add(double ratio)
    {
        if (!(ratio > 0) || double.IsInfinity(ratio)) return;
        var i = (int)Math.Round(Math.Log2(ratio) * PerOctave) + Span * PerOctave;
        Bins[Math.Clamp(i, 0, Size - 1)]++;
        Count++;
    }

    public double Quantile(double q)
    {
        if (Count == 0) return double.NaN;
        var rank = Math.Max(1, (int)Math.Ceiling(q * Count));
        var seen = 0;
        for (var i = 0; i < Size; i++)
        {
            seen += Bins[i];
            if (seen >= rank) return Math.Pow(2, (i - Span * PerOctave) / (double)PerOctave);
        }
        return double.NaN;
    }
}

/// <summary>
/// Stream sequences a scorecard has seen, as sorted, disjoint ranges: the samples it counts and those of earlier
/// steps it skipped. JetStream delivers a sample again when its ack was lost (a judge that stopped between
/// persisting a card and acking its samples, or one whose consumption failed), and by then newer samples may
/// already be counted, so "at or below the highest sequence" would drop the redelivered ones. Bounded: past
/// <see cref="MaxRanges"/> ranges the lowest gap is closed (a sample in it, if it ever came, would be skipped).
/// </summary>
public sealed class SeenSequences
{
    public const int MaxRanges = 64;

    /// <summary>Pairs of first and last sequence, sorted; neighbours are never adjacent (they merge).</summary>
    public List<SequenceRange> Ranges { get; set; } = [];

    public bool Contains(ulong sequence)
    {
        foreach (var r in Ranges)
        {
            if (sequence < r.First) return false;
            if (sequence <= r.Last) return true;
        }
        return false;
    }

    /// <summary>Records a sequence; false when it was already seen.</summary>
    public bool Add(ulong sequence)
    {
        var i = 0;
        while (i < Ranges.Count && Ranges[i].Last < sequence) i++;
        if (i < Ranges.Count && Ranges[i].First <= sequence) return false;
        var joinsLower = i > 0 && Ranges[i - 1].Last + 1 == sequence;
        var joinsUpper = i < Ranges.Count && Ranges[i].First == sequence + 1;
        if (joinsLower && joinsUpper)
        {
            Ranges[i - 1] = Ranges[i - 1] with { Last = Ranges[i].Last };
            Ranges.RemoveAt(i);
        }
        else if (joinsLower) Ranges[i - 1] = Ranges[i - 1] with { Last = sequence };
        else if (joinsUpper) Ranges[i] = Ranges[i] with { First = sequence };
        else Ranges.Insert(i, new SequenceRange(sequence, sequence));
        if (Ranges.Count > MaxRanges)
        {
            Ranges[0] = Ranges[0] with { Last = Ranges[1].Last };
            Ranges.RemoveAt(1);
        }
        return true;
    }
}

public readonly record struct SequenceRange(ulong First, ulong Last);

/// <summary>
/// Everything the judge has counted for one rollout step: bounded (test states, counts, sketches), so its
/// size does not grow with traffic. It is persisted in KV with the stream sequences of the samples it has seen
/// (<see cref="Seen"/>), so a restarted judge neither loses nor double-counts a sample, in whatever order
/// JetStream delivers them again.
/// </summary>
public sealed class Scorecard
{
    public string RolloutId { get; set; } = "";
    public int Step { get; set; }
    public RolloutPhase Phase { get; set; }
    /// <summary>The highest stream sequence seen.</summary>
    public ulong LastSequence { get; set; }
    public SeenSequences Seen { get; set; } = new();
    public DateTimeOffset FirstSampleAt { get; set; }

    public int Samples { get; set; }
    public int LiveErrors { get; set; }
    /// <summary>Mirrors the candidate never took: capacity, not quality.</summary>
    public int CapacityMisses { get; set; }
    public int SentimentPairs { get; set; }
    public int ChatPairs { get; set; }
    /// <summary>The releases (with model digest) the latest answered samples came from.</summary>
    public ReleaseRef? LiveRelease { get; set; }
    public ReleaseRef? CandidateRelease { get; set; }

    public Dictionary<string, SequentialState> Tests { get; set; } = [];
    public RatioSketch ComputeRatios { get; set; } = new();
    public RatioSketch LatencyRatios { get; set; } = new();
    public RatioSketch LengthRatios { get; set; } = new();
    /// <summary>How much lower (nats per token) the live model scores the candidate's chat answer than live's own; 0 when not lower.</summary>
    public RatioSketch LikelihoodDrops { get; set; } = new();

    /// <summary>Chat defects seen, by kind (a handful of keys): what made <c>chat_defects</c> count a pair.</summary>
    public Dictionary<string, int> DefectKinds { get; set; } = [];

    /// <summary>The first defect the candidate's chat answer has where live's has not (a changed tone included), or null.</summary>
    public static string? ChatDefect(ShadowSample s) =>
        TextChecks.PairDefects(s.UserText, s.Live.Text, s.Live.FinishReason, s.Candidate.Text, s.Candidate.FinishReason).FirstOrDefault();

    private static ReleaseRef? RefOf(SampleSide side) =>
        side.Error is null && (side.Release is not null || side.ModelSha256 is not null)
            ? new ReleaseRef(side.Release ?? "-", side.ModelSha256 ?? "", side.Profile ?? "")
            : null;

    /// <summary>
    /// Candidate CPU time over live's for the same amount of work. Both sides' work is priced with the live worker's
    /// measured step costs (one yardstick, so the two workers' own measurements cannot disagree about it): a profile
    /// whose prompts are longer, or sit after a longer prefix, does more work, not slower work; for the same work it is
    /// the plain CPU ratio. Per decoded token when a side does not report its work or live its costs (older workers).
    /// </summary>
    public static double ComputeRatio(SampleSide live, SampleSide candidate) => PricedRatio(live, candidate)
        ?? candidate.ComputeMs / Math.Max(1, candidate.ComputedTokens) / (live.ComputeMs / Math.Max(1, live.ComputedTokens));

    private static double? PricedRatio(SampleSide live, SampleSide candidate) =>
        live.CostModel is { } yardstick && live.Work is { } lw && candidate.Work is { } cw
        && yardstick.Price(lw) is var livePrice and > 0 && yardstick.Price(cw) is var candidatePrice and > 0
            ? candidate.ComputeMs / candidatePrice / (live.ComputeMs / livePrice)
            : null;

    /// <summary>Pairs whose compute was compared per decoded token: a side reported no work, or live no step costs.</summary>
    public int ComputePerTokenPairs { get; set; }

    private void Observe(string name, bool evt, SequentialTest test, RolloutPolicy p)
    {
        if (!Tests.TryGetValue(name, out var state))
            Tests[name] = state = new SequentialState();
        Sprt.Observe(state, evt, test, p.FalseAlarmRate, p.MissRate);
    }

    /// <summary>Whether the sample at this stream sequence was counted or skipped by this card already.</summary>
    public bool HasSeen(ulong sequence) => Seen.Ranges.Count == 0 ? sequence <= LastSequence : Seen.Contains(sequence);

    /// <summary>Records a sequence as seen without counting its sample (one of an earlier step); false when seen already.</summary>
    public bool MarkSeen(ulong sequence)
    {
        if (HasSeen(sequence)) return false;
        if (Seen.Ranges.Count == 0 && LastSequence > 0)
            Seen.Ranges.Add(new SequenceRange(1, LastSequence)); // a card written before the ranges: all up to its last were seen
        Seen.Add(sequence);
        LastSequence = Math.Max(LastSequence, sequence);
        return true;
    }

    /// <summary>Counts a sample; one whose sequence the card has seen is skipped (false).</summary>
    public bool Add(ShadowSample s, ulong sequence, RolloutPolicy p)
    {
        if (!MarkSeen(sequence)) return false;
        if (Samples == 0 || s.At < FirstSampleAt) FirstSampleAt = s.At;
        Samples++;
        if (RefOf(s.Live) is { } live) LiveRelease = live;
        if (RefOf(s.Candidate) is { } candidate) CandidateRelease = candidate;
        if (s.Live.Error is not null)
        {
            LiveErrors++;
            return true; // nothing to compare the candidate with
        }
        if (s.Candidate.Error is { } error)
        {
            if (!s.Candidate.Taken)
            {
                CapacityMisses++;
                return true;
            }
            var unanswered = error is ErrorCodes.DeadlineExceeded or ErrorCodes.WorkerLost or ErrorCodes.Cancelled;
            Observe("unanswered", unanswered, p.Unanswered, p);
            Observe("errors", !unanswered, p.Errors, p);
            return true;
        }
        Observe("unanswered", false, p.Unanswered, p);
        Observe("errors", false, p.Errors, p);

        if (s.Live.ComputeMs > 0 && s.Candidate.ComputeMs > 0)
        {
            if (PricedRatio(s.Live, s.Candidate) is null) ComputePerTokenPairs++;
            var r = ComputeRatio(s.Live, s.Candidate);
            ComputeRatios.Add(r);
            Observe("compute_ratio", r > p.Compute.Threshold, p.Compute, p);
        }
        if (s.Live.TotalMs > 0 && s.Candidate.TotalMs > 0)
        {
            var r = s.Candidate.TotalMs / s.Live.TotalMs;
            LatencyRatios.Add(r);
            Observe("latency_ratio", r > p.Latency.Threshold, p.Latency, p);
        }

        if (s.Task == InferTasks.Sentiment)
        {
            SentimentPairs++;
            Observe("sentiment_disagreement", s.Live.Label != s.Candidate.Label, p.SentimentDisagreement, p);
            var drift = Math.Abs((s.Candidate.Confidence ?? 0) - (s.Live.Confidence ?? 0));
            Observe("confidence_drift", drift > p.ConfidenceDrift.Threshold, p.ConfidenceDrift, p);
        }
        else if (s.Task == InferTasks.Chat)
        {
            ChatPairs++;
            var defect = ChatDefect(s);
            if (defect is not null)
                DefectKinds[defect] = DefectKinds.GetValueOrDefault(defect) + 1;
            Observe("chat_defects", defect is not null, p.ChatDefects, p);
            var ratio = Math.Max(1, s.Candidate.Text?.Length ?? 0) / (double)Math.Max(1, s.Live.Text?.Length ?? 0);
            LengthRatios.Add(ratio);
            var limit = p.ChatLength.Threshold ?? 2;
            Observe("chat_length", ratio > limit || ratio < 1 / limit, p.ChatLength, p);
            if (p.ChatLikelihood is { } likelihood && s.Live.LiveModelLogProb is { } liveScore && s.Candidate.LiveModelLogProb is { } candScore)
            {
                LikelihoodDrops.Add(Math.Max(0, liveScore - candScore));
                Observe("chat_likelihood", candScore < liveScore - likelihood.Threshold, likelihood, p);
            }
            if (p.ChatSimilarity is { } sim)
                Observe("chat_similarity", TextChecks.Similarity(s.Live.Text, s.Candidate.Text) < sim.Threshold, sim, p);
        }
        return true;
    }
}

/// <summary>Turns a scorecard into a verdict under a policy; pure.</summary>
public static class Evaluator
{
    private static readonly string[] SentimentChecks = ["sentiment_disagreement", "confidence_drift"];

    /// <summary>The checks a step needs decided under this policy (task checks only for required tasks).</summary>
    public static IEnumerable<(string Name, SequentialTest Test)> Required(RolloutPolicy p) =>
        p.Checks().Where(c => SentimentChecks.Contains(c.Name) ? p.RequiredTasks.Contains(InferTasks.Sentiment)
            : c.Name.StartsWith("chat_", StringComparison.Ordinal) ? p.RequiredTasks.Contains(InferTasks.Chat)
            : true);

    public static Verdict Evaluate(Scorecard c, RolloutPolicy p, DateTimeOffset now)
    {
        var checks = new List<JudgeCheck>();
        var undecided = new List<string>();
        var failing = new List<string>();
        foreach (var (name, test) in Required(p))
        {
            var s = c.Tests.GetValueOrDefault(name) ?? new SequentialState();
            var rate = s.Pairs == 0 ? 0 : (double)s.Events / s.Pairs;
            var median = name switch
            {
                "compute_ratio" => c.ComputeRatios.Quantile(0.5),
                "latency_ratio" => c.LatencyRatios.Quantile(0.5),
                "chat_length" => c.LengthRatios.Quantile(0.5),
                "chat_likelihood" => c.LikelihoodDrops.Count == 0 ? double.NaN : c.LikelihoodDrops.Quantile(0.5),
                _ => double.NaN,
            };
            var cut = test.Threshold is { } th ? $"{Event(name, th)}; " : "";
            var threshold = $"{cut}event rate <= {test.P0} passes, >= {test.P1} fails";
            var state = s.Decision ?? "undecided";
            var detail = $"{s.Events}/{s.Pairs} pairs with the event ({rate:P1}); {state}"
                         + (s.Decision is not null ? $" after {s.DecidedAt} pairs" : $" (LLR {s.Llr:F2} in ({Sprt.Lower(p.FalseAlarmRate, p.MissRate):F2}, {Sprt.Upper(p.FalseAlarmRate, p.MissRate):F2}))")
                         + (double.IsNaN(median) ? "" : name == "chat_likelihood" ? $"; median drop {median:F2} nats/token" : $"; median ratio {median:F2}")
                         + (name == "compute_ratio" && c.ComputePerTokenPairs > 0 ? $"; {c.ComputePerTokenPairs} pairs compared per decoded token (a worker that reports no measured step costs)" : "")
                         + (name == "chat_defects" && c.DefectKinds.Count > 0 ? $"; {string.Join(", ", c.DefectKinds.OrderByDescending(k => k.Value).Select(k => $"{k.Key} {k.Value}"))}" : "");
            var value = double.IsNaN(median) ? Math.Round(rate, 4) : Math.Round(median, 4);
            checks.Add(new JudgeCheck(name, value, threshold, s.Decision != Judging.Outcomes.Fail, s.Pairs, detail) { Decision = state });
            if (s.Decision == Judging.Outcomes.Fail) failing.Add($"{name} {detail}");
            else if (s.Decision is null) undecided.Add(s.Pairs == 0 ? $"{name} (no comparable pairs yet)" : $"{name} ({s.Events}/{s.Pairs})");
        }

        string outcome, reason;
        var n = c.Samples;
        if (failing.Count > 0)
            (outcome, reason) = (Judging.Outcomes.Fail, string.Join("; ", failing));
        else if (n > 0 && c.LiveErrors == n)
            (outcome, reason) = (Judging.Outcomes.Inconclusive, "every live answer in this step errored; nothing to compare");
        else if (n < p.MinSamples)
            (outcome, reason) = (Judging.Outcomes.Inconclusive, $"too few samples: {n} of {p.MinSamples}");
        else if (undecided.Count == 0 && now - c.FirstSampleAt < p.MinStepDuration)
            (outcome, reason) = (Judging.Outcomes.Inconclusive,
                $"every check passes on {n} samples; waiting {p.MinStepDuration - (now - c.FirstSampleAt):mm\\:ss} more of min_step_duration {p.MinStepDuration} so that answers still outstanding (timeouts arrive last) are counted");
        else if (undecided.Count > 0)
            (outcome, reason) = (Judging.Outcomes.Inconclusive, $"not yet decided on {n} samples: {string.Join(", ", undecided)}");
        else
            (outcome, reason) = (Judging.Outcomes.Pass, $"all {checks.Count} checks pass on {n} samples");
        if (c.CapacityMisses > 0)
            reason += $"; {c.CapacityMisses} mirrors never taken by the candidate (capacity, not counted against it)";

        return new Verdict
        {
            RolloutId = c.RolloutId, Step = c.Step, Phase = c.Phase, Outcome = outcome, Reason = reason, Samples = n, Checks = checks,
            CapacityMisses = c.CapacityMisses, LiveRelease = c.LiveRelease, CandidateRelease = c.CandidateRelease, At = now,
        };
    }

    private static string Event(string name, double threshold) => name switch
    {
        "compute_ratio" or "latency_ratio" => $"event: candidate/live > {threshold}",
        "confidence_drift" => $"event: |confidence difference| > {threshold}",
        "chat_length" => $"event: length ratio outside [1/{threshold}, {threshold}]",
        "chat_similarity" => $"event: similarity < {threshold}",
        "chat_likelihood" => $"event: the live model scores the candidate's answer more than {threshold} nats/token below live's",
        _ => $"threshold {threshold}",
    };
}
