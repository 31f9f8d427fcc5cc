namespace QwenNats.Messaging;

/// <summary>Names used by mirroring and the judge.</summary>
public static class Judging
{
    /// <summary>Work-queue stream of mirrored work for one colour (small and bounded: when full, mirrors are dropped).</summary>
    public static string ShadowStream(string colour) => $"QWEN_SHADOW_{colour.ToUpperInvariant()}";

    /// <summary>Paired samples for the judge.</summary>
    public const string SamplesStream = "QWEN_SAMPLES";
    public const string SamplesSubjects = "qwen.samples.>";
    public static string Samples(string rolloutId) => $"qwen.samples.{rolloutId}";

    /// <summary>Verdicts, published by the judge after every evaluation.</summary>
    public const string VerdictSubject = "qwen.judge.verdict";

    /// <summary>KV bucket of scorecards: key <c>latest</c> and one key per rollout.</summary>
    public const string Bucket = "qwen_judge";
    public const string LatestKey = "latest";

    public const string JudgeConsumer = "judge";

    public static class Outcomes
    {
        public const string Pass = "pass";
        public const string Fail = "fail";
        public const string Inconclusive = "inconclusive";
    }
}

/// <summary>One side of a paired sample: what a colour answered to the same request.</summary>
public sealed record SampleSide
{
    public required string Colour { get; init; }
    public string? Profile { get; init; }
    /// <summary>The release that answered and its model digest.</summary>
    public string? Release { get; init; }
    public string? ModelSha256 { get; init; }
    public string? Text { get; init; }
    public string? Label { get; init; }
    public double? Confidence { get; init; }
    public string? FinishReason { get; init; }
    public int CompletionTokens { get; init; }
    public double TimeToFirstTokenMs { get; init; }
    public double TotalMs { get; init; }
    /// <summary>CPU milliseconds the worker spent on this request (<see cref="InferResult.ComputeMs"/>).</summary>
    public double ComputeMs { get; init; }
    /// <summary>Tokens decoded for this request (<see cref="InferResult.ComputedTokens"/>).</summary>
    public int ComputedTokens { get; init; }
    /// <summary>Chat: this side's answer scored by a live-colour worker (mean log-probability per token under
    /// the live model, <see cref="InferTasks.Score"/>); null when it was not scored.</summary>
    public double? LiveModelLogProb { get; init; }
    /// <summary>Error code when the side failed (including <c>deadline_exceeded</c> for a timeout).</summary>
    public string? Error { get; init; }
    /// <summary>
    /// Whether a worker took the request (it sent <c>accepted</c>). A side that failed without ever being taken
    /// (its queue was full, no worker, or the deadline passed while queued) is a capacity miss, not a wrong answer.
    /// </summary>
    public bool Taken { get; init; } = true;
}

/// <summary>A live answer and the candidate's answer to the same request, for the judge.</summary>
public sealed record ShadowSample
{
    public required string Id { get; init; }
    public required string RolloutId { get; init; }
    public RolloutPhase Phase { get; init; }
    public int Step { get; init; }
    public required string Task { get; init; }
    /// <summary>Chat: the user's last message (for the answer-language check).</summary>
    public string? UserText { get; init; }
    public required SampleSide Live { get; init; }
    public required SampleSide Candidate { get; init; }
    public DateTimeOffset At { get; init; }
}

/// <summary>One check of a verdict, with the value, the threshold and the samples behind it.</summary>
public sealed record JudgeCheck(string Name, double? Value, string Threshold, bool Passed, int Samples, string Detail)
{
    /// <summary>For a sequential check: <c>pass</c>, <c>fail</c> or <c>undecided</c> (more pairs needed).</summary>
    public string? Decision { get; init; }
}

/// <summary>The judge's decision about one rollout step.</summary>
public sealed record Verdict
{
    public required string RolloutId { get; init; }
    public int Step { get; init; }
    public RolloutPhase Phase { get; init; }
    /// <summary><see cref="Judging.Outcomes"/>.</summary>
    public required string Outcome { get; init; }
    /// <summary>The failing checks (fail), or why there is no decision yet (inconclusive).</summary>
    public required string Reason { get; init; }
    public int Samples { get; init; }
    public IReadOnlyList<JudgeCheck> Checks { get; init; } = [];
    /// <summary>Mirrors the candidate never took (full shadow queue, no worker, deadline while queued): capacity, not quality.</summary>
    public int CapacityMisses { get; init; }
    /// <summary>What was compared: the live and the candidate release (with model digest), as the samples report them.</summary>
    public ReleaseRef? LiveRelease { get; init; }
    public ReleaseRef? CandidateRelease { get; init; }
    public DateTimeOffset At { get; init; }
}

/// <summary>One colour's score on the golden set.</summary>
public sealed record GoldenScore(string Colour, string? Profile, int Total, int Correct, int Errors, double Accuracy)
{
    /// <summary>The release (and model digest) that answered.</summary>
    public string? Release { get; init; }
    public string? ModelSha256 { get; init; }
}

/// <summary>The answer of <c>qwen.ctl.golden</c>.</summary>
public sealed record GoldenReport(int Cases, IReadOnlyList<GoldenScore> Scores, DateTimeOffset At);
