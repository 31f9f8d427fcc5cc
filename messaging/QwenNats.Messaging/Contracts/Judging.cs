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
    /// <summary>The decoding done for this request (<see cref="InferResult.Work"/>).</summary>
    public DecodeWork? Work { get; init; }
    /// <summary>The answering worker's measured step costs (<see cref="InferResult.CostModel"/>).</summary>
    public DecodeCostModel? CostModel { get; init; }
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

/// <summary>One input of a golden set (deploy/golden/*.jsonl) or of an operator's comparison.</summary>
public sealed record GoldenInput
{
    public required string Id { get; init; }
    /// <summary><see cref="InferTasks.Sentiment"/> or <see cref="InferTasks.Chat"/>.</summary>
    public required string Task { get; init; }
    /// <summary>The text to classify, or the user's chat message.</summary>
    public required string Text { get; init; }
    /// <summary>Sentiment: the expected label (a golden case); null for an unlabelled comparison input.</summary>
    public string? Label { get; init; }
    public string? Lang { get; init; }
    /// <summary>What the input exercises (everyday, negation, sarcasm, small talk, advice, ...).</summary>
    public string? Kind { get; init; }
    /// <summary>Chat: the answer's token limit (default <c>Promoter:GoldenChatMaxTokens</c>).</summary>
    public int? MaxTokens { get; init; }
}

/// <summary>What one colour answered to one golden input, with the text checks' findings.</summary>
public sealed record GoldenAnswer
{
    public required string Id { get; init; }
    public required string Task { get; init; }
    public string? Label { get; init; }
    public double? Confidence { get; init; }
    /// <summary>Chat: the answer, possibly shortened (<see cref="TextCut"/>); the checks read the whole answer.</summary>
    public string? Text { get; init; }
    /// <summary>The answer's length in characters before any shortening.</summary>
    public int TextChars { get; init; }
    /// <summary>The text was shortened (to keep stored results and replies small).</summary>
    public bool TextCut { get; init; }
    public string? FinishReason { get; init; }
    /// <summary>Chat: the defects the text checks found (<see cref="TextChecks.Defects"/>).</summary>
    public IReadOnlyList<string> Defects { get; init; } = [];
    /// <summary>The error code when the colour answered with an error (or took the input and never answered).</summary>
    public string? Error { get; init; }
    /// <summary>Whether a worker took the input. False: it was never run (the pool had no free slot for
    /// low-priority work before the deadline) — capacity, not quality, and the result is incomplete.</summary>
    public bool Taken { get; init; } = true;
    public double TotalMs { get; init; }

    /// <summary>An answer (not an error, not missing).</summary>
    public bool Answered => Error is null && Taken;
}

/// <summary>
/// One colour's answers to a golden set, stored in <see cref="Releases.Bucket"/> under
/// <see cref="GoldenKeys.Key"/> once complete, so a later gate reuses it instead of running the set again.
/// </summary>
public sealed record GoldenResult
{
    /// <summary>The colour it was computed on.</summary>
    public required string Colour { get; init; }
    /// <summary>What answered (<see cref="GoldenKeys.Fingerprint"/>); null when the answers came from workers serving different things.</summary>
    public string? Fingerprint { get; init; }
    public string? InputsDigest { get; init; }
    public string? Release { get; init; }
    public string? ModelSha256 { get; init; }
    public string? Profile { get; init; }
    public IReadOnlyList<GoldenAnswer> Answers { get; init; } = [];
    public DateTimeOffset ComputedAt { get; init; }

    /// <summary>Every input was taken by a worker (answered or failed).</summary>
    public bool IsComplete(int inputs) => Answers.Count == inputs && Answers.All(a => a.Taken);
}

/// <summary>One colour's score on the golden set.</summary>
public sealed record GoldenScore(string Colour, string? Profile, int Total, int Correct, int Errors, double Accuracy)
{
    /// <summary>The release (and model digest) that answered.</summary>
    public string? Release { get; init; }
    public string? ModelSha256 { get; init; }
    /// <summary>Chat prompts run, and those answered with an error or not at all.</summary>
    public int ChatTotal { get; init; }
    public int ChatErrors { get; init; }
    /// <summary>Chat answers with at least one defect (<see cref="TextChecks.Defects"/>), and the count per defect.</summary>
    public int ChatDefective { get; init; }
    public IReadOnlyDictionary<string, int>? DefectCounts { get; init; }
    /// <summary>Inputs no worker took before the deadline (the result is incomplete).</summary>
    public int NotRun { get; init; }
    /// <summary>True when this is a stored result (computed at <see cref="ComputedAt"/>), not a run just now.</summary>
    public bool Stored { get; init; }
    public DateTimeOffset? ComputedAt { get; init; }
}

/// <summary>The answer of <c>qwen.ctl.golden</c>.</summary>
public sealed record GoldenReport(int Cases, IReadOnlyList<GoldenScore> Scores, DateTimeOffset At)
{
    /// <summary>Chat prompts of the golden set (deploy/golden/chat.jsonl).</summary>
    public int ChatCases { get; init; }
}

/// <summary>One check of one compared input: its name, what each side showed, and whether it flags a difference.</summary>
public sealed record CompareCheck(string Name, string Result, bool Flagged);

/// <summary>One input sent to both colours, their answers side by side and every check's result.</summary>
public sealed record ComparePair
{
    public required GoldenInput Input { get; init; }
    /// <summary>The first colour's answer (live) and the second's (the candidate, or the other colour).</summary>
    public GoldenAnswer? First { get; init; }
    public GoldenAnswer? Second { get; init; }
    public IReadOnlyList<CompareCheck> Checks { get; init; } = [];
}

/// <summary>The answer of <c>qwen.ctl.compare</c>: both colours' answers per input, the checks and a summary.</summary>
public sealed record CompareReport
{
    /// <summary>The two colours, first then second.</summary>
    public required IReadOnlyList<string> Colours { get; init; }
    public IReadOnlyList<GoldenScore> Scores { get; init; } = [];
    public IReadOnlyList<ComparePair> Pairs { get; init; } = [];
    /// <summary>Per check name, how many pairs it flagged.</summary>
    public IReadOnlyDictionary<string, int> Flagged { get; init; } = new Dictionary<string, int>();
    /// <summary>The golden gate's decision on these answers (first as live, second as candidate) when the inputs are the golden sets.</summary>
    public string? Gate { get; init; }
    /// <summary>Texts were shortened to keep the reply within the NATS payload limit; <see cref="Note"/> says how.</summary>
    public bool Truncated { get; init; }
    public string? Note { get; init; }
    public DateTimeOffset At { get; init; }
}
