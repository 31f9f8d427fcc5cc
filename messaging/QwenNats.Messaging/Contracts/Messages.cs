namespace QwenNats.Messaging;

public sealed record ChatMessage(string Role, string Content);

/// <summary>Sampling settings a request may override; anything null falls back to the prompt profile.</summary>
public sealed record SamplingParams
{
    public double? Temperature { get; init; }
    public double? TopP { get; init; }
    public int? MaxTokens { get; init; }
    public IReadOnlyList<string>? Stop { get; init; }
    public uint? Seed { get; init; }
    /// <summary>OpenAI's presence penalty (-2..2): subtracted once from the logit of every token already generated.</summary>
    public double? PresencePenalty { get; init; }
    /// <summary>OpenAI's frequency penalty (-2..2): subtracted from a token's logit once per time it was generated.</summary>
    public double? FrequencyPenalty { get; init; }
    /// <summary>OpenAI's logit bias: token id to a value in -100..100 added to its logit (the worker refuses ids beyond its vocabulary).</summary>
    public IReadOnlyDictionary<int, double>? LogitBias { get; init; }
    /// <summary>Constrains the answer to JSON (null: free text). The worker builds the grammar from it itself.</summary>
    public ResponseFormat? ResponseFormat { get; init; }
    /// <summary>Whether to return the log-probability of every generated token (OpenAI's <c>logprobs</c>).</summary>
    public bool? Logprobs { get; init; }
    /// <summary>With <see cref="Logprobs"/>: how many of the most likely tokens to list at each position (0..20).</summary>
    public int? TopLogprobs { get; init; }
}

/// <summary>
/// One generated token and its log-probability under the model (natural log, from the model's logits before
/// any temperature, penalty, bias or grammar), with its UTF-8 bytes; <see cref="TopLogprobs"/> lists the most
/// likely tokens at that position when asked for (null inside that list).
/// </summary>
public sealed record TokenLogprob
{
    public required string Token { get; init; }
    public double Logprob { get; init; }
    public IReadOnlyList<int> Bytes { get; init; } = [];
    public IReadOnlyList<TokenLogprob>? TopLogprobs { get; init; }
}

/// <summary>
/// OpenAI's <c>response_format</c> as it travels to a worker: JSON mode, or a JSON Schema (its JSON text) the
/// ingress has checked. The worker turns it into a GBNF grammar with <c>Grammars.JsonGrammar</c>, so no grammar
/// text from the wire ever reaches llama.cpp's grammar parser.
/// </summary>
public sealed record ResponseFormat
{
    public const string JsonObject = "json_object";
    public const string JsonSchema = "json_schema";

    /// <summary><see cref="JsonObject"/> or <see cref="JsonSchema"/>.</summary>
    public required string Type { get; init; }
    /// <summary>For <see cref="JsonSchema"/>: the schema's name, as the client gave it.</summary>
    public string? Name { get; init; }
    /// <summary>For <see cref="JsonSchema"/>: the schema, compact JSON text.</summary>
    public string? Schema { get; init; }
}

/// <summary>One unit of work for a worker pool, published on <see cref="Subjects.Infer"/>.</summary>
public sealed record InferRequest
{
    public required string Id { get; init; }
    public string? SessionId { get; init; }
    public required string Task { get; init; }
    public IReadOnlyList<ChatMessage>? Messages { get; init; }
    /// <summary>Sentiment: the text to classify. Score: the answer to score. Completion: the raw prompt to continue.</summary>
    public string? Input { get; init; }
    /// <summary>A setter, not init: so a request that leaves it out (a client of its own on NATS) gets the default, not null.</summary>
    public SamplingParams Sampling { get; set; } = new();
    /// <summary>Whether the caller wants token chunks; the final result is sent either way.</summary>
    public bool Stream { get; init; }
    /// <summary>Unix milliseconds after which nobody waits for the answer (with <see cref="AnswerBudgetMs"/>: for the
    /// request to be taken by a worker).</summary>
    public long DeadlineUnixMs { get; init; }
    /// <summary>
    /// When positive, the time a worker has to answer counts from when it takes the request, not from when it was
    /// sent: a mirrored copy that waited in the candidate's low-priority queue still gets its full time, so time
    /// spent queueing (capacity) is never mistaken for a candidate that does not answer.
    /// </summary>
    public long AnswerBudgetMs { get; init; }
    public long CreatedUnixMs { get; init; }
    /// <summary>Core NATS subject the worker sends every reply message to.</summary>
    public required string ReplyTo { get; init; }
    /// <summary>
    /// Attempts made before this message was queued: 0, or 1 when a worker took the request directly
    /// (<see cref="Subjects.Direct"/>) and the client queued it again because that worker went away before answering
    /// or its acceptance never came. A worker's attempt number is this plus the message's delivery count.
    /// </summary>
    public int AttemptsBefore { get; init; }
}

/// <summary>A worker took the request (sent once per delivery attempt, before any token).</summary>
public sealed record InferAccepted
{
    public required string Id { get; init; }
    public required string WorkerId { get; init; }
    public required string Colour { get; init; }
    public required string ModelId { get; init; }
    public required string ProfileVersion { get; init; }
    public int Attempt { get; init; } = 1;
    /// <summary>The release the worker answers with (null for a model given on its command line).</summary>
    public string? Release { get; init; }
    /// <summary>The W3C trace id the worker logged this request under (from the <c>traceparent</c> header).</summary>
    public string? TraceId { get; init; }
}

/// <summary>NATS header names that travel with a request, so one request can be followed across processes.</summary>
public static class Headers
{
    public const string RequestId = "Qwen-Request-Id";
    /// <summary>W3C trace context: <c>00-&lt;trace id&gt;-&lt;span id&gt;-&lt;flags&gt;</c>.</summary>
    public const string TraceParent = "traceparent";

    public static string? TraceIdOf(string? traceparent)
    {
        if (traceparent is null) return null;
        var parts = traceparent.Split('-');
        return parts.Length == 4 && parts[1].Length == 32 ? parts[1] : null;
    }
}

/// <summary>Streamed text: one or more tokens, already valid UTF-8.</summary>
public sealed record InferChunk
{
    public required string Id { get; init; }
    public int Index { get; init; }
    public required string Text { get; init; }
    public int Attempt { get; init; } = 1;
    /// <summary>When the request asked for log-probabilities: the tokens generated since the previous chunk.</summary>
    public IReadOnlyList<TokenLogprob>? Logprobs { get; init; }
}

/// <summary>The final message of a successful request.</summary>
public sealed record InferResult
{
    public required string Id { get; init; }
    public required string Task { get; init; }
    public required string FinishReason { get; init; }
    /// <summary>Chat: the whole generated text.</summary>
    public string Text { get; init; } = "";
    /// <summary>Chat, when the request asked for log-probabilities: every generated token of the answer.</summary>
    public IReadOnlyList<TokenLogprob>? Logprobs { get; init; }
    /// <summary>Sentiment: the chosen label.</summary>
    public string? Label { get; init; }
    public double? Confidence { get; init; }
    /// <summary>Sentiment: log-probability of each label's continuation.</summary>
    public IReadOnlyDictionary<string, double>? Scores { get; init; }
    /// <summary>Score: mean log-probability per token of the scored answer (natural log, at most 0).</summary>
    public double? MeanLogProb { get; init; }
    public int PromptTokens { get; init; }
    public int CompletionTokens { get; init; }
    /// <summary>Wall time to the first token (or label), less <see cref="YieldedMs"/>.</summary>
    public double TimeToFirstTokenMs { get; init; }
    /// <summary>Wall time in the worker, less <see cref="YieldedMs"/>.</summary>
    public double TotalMs { get; init; }
    public double QueueMs { get; init; }
    /// <summary>A mirrored request's time held back for live work on the worker's machine (<c>Worker:ShadowYield</c>);
    /// left out of <see cref="TotalMs"/> and <see cref="TimeToFirstTokenMs"/>, which measure the candidate, not the wait.</summary>
    public double? YieldedMs { get; init; }
    /// <summary>
    /// CPU time this request cost the worker, in milliseconds: its part of every batched decode step it took part
    /// in, as that part would have cost alone, and its own sampling; measured as the compute thread's CPU time (not
    /// wall-clock), so it does not grow when another process competes for the cores. The judge compares it between
    /// colours, per unit of <see cref="Work"/>.
    /// </summary>
    public double ComputeMs { get; init; }
    /// <summary>Tokens this request had decoded for it: its prompt after the shared prefix, and what it generated.</summary>
    public int ComputedTokens { get; init; }
    /// <summary>The shape of the decoding done for this request (what <see cref="ComputeMs"/> paid for); null from a
    /// worker that does not report it.</summary>
    public DecodeWork? Work { get; init; }
    /// <summary>What a decode step costs on the answering worker, as it measured at load; null without a measurement.</summary>
    public DecodeCostModel? CostModel { get; init; }
    public required string WorkerId { get; init; }
    public required string Colour { get; init; }
    public required string ModelId { get; init; }
    public required string ProfileVersion { get; init; }
    /// <summary>The release that answered (null for a model given on the worker's command line).</summary>
    public string? Release { get; init; }
    /// <summary>SHA-256 of the model file that answered.</summary>
    public string? ModelSha256 { get; init; }
    /// <summary>Chat: the oldest messages left out because the conversation did not fit the context (the
    /// profile's <c>chat.history</c>); 0 when the whole conversation was read.</summary>
    public int TrimmedMessages { get; init; }
    /// <summary>What answered (model, whole prompt profile, injected faults) as one digest: <see cref="GoldenKeys.Fingerprint"/>.</summary>
    public string? Fingerprint { get; init; }
    public int Attempt { get; init; } = 1;
    /// <summary>When the worker took, started, finished and sent this answer: the worker's part of the request's path.</summary>
    public WorkerTimes? Times { get; init; }
}

/// <summary>
/// The worker's timestamps for one answer, in Unix microseconds of the worker's wall clock. Between processes of one
/// machine they line up with the ingress's (<see cref="UnixMicros"/>), which is how the ingress breaks a request's
/// time into stages (its <c>Server-Timing</c> header); across machines they are as good as the clocks' sync.
/// </summary>
/// <summary>
/// The decoding done for one request, summed over the decode steps it took part in: how many steps, how many tokens it
/// queued in them, and the sum of those tokens' positions in their sequences (attention reads every earlier token).
/// </summary>
public sealed record DecodeWork(int Steps, int Tokens, double Positions);

/// <summary>
/// A worker's measured cost of a decode step run alone: <c>step_ms + token_ms·tokens + position_ms·positions</c>
/// (CPU milliseconds of llama.cpp's compute thread, measured at load). Prices a <see cref="DecodeWork"/>.
/// </summary>
public sealed record DecodeCostModel(double StepMs, double TokenMs, double PositionMs)
{
    /// <summary>What <paramref name="work"/> costs alone under this model.</summary>
    public double Price(DecodeWork work) => StepMs * work.Steps + TokenMs * work.Tokens + PositionMs * work.Positions;
}

public sealed record WorkerTimes
{
    /// <summary>The worker's NATS client delivered the work message.</summary>
    public long ReceivedUs { get; init; }
    /// <summary>The request became a job for the decode loop (prompt built and tokenized): where <see cref="InferResult.TotalMs"/> starts.</summary>
    public long StartedUs { get; init; }
    /// <summary>The decode loop produced the result: where <see cref="InferResult.TotalMs"/> ends.</summary>
    public long FinishedUs { get; init; }
    /// <summary>The result was handed to NATS.</summary>
    public long SentUs { get; init; }
}

/// <summary>Wall-clock time in Unix microseconds (sub-microsecond resolution on Linux).</summary>
public static class UnixMicros
{
    public static long Now() => (DateTime.UtcNow.Ticks - DateTime.UnixEpoch.Ticks) / TimeSpan.TicksPerMicrosecond;
}

public sealed record InferError
{
    public required string Id { get; init; }
    public required string Code { get; init; }
    public required string Message { get; init; }
    public string? WorkerId { get; init; }
    public string? Colour { get; init; }
    /// <summary>The attempt this error ends (set by the worker that ran it); 0 when it is not tied to one.</summary>
    public int Attempt { get; init; }
}

/// <summary>
/// The envelope of every reply message: exactly one of the parts is set.
/// A request gets zero or more <see cref="Accepted"/>/<see cref="Chunk"/> messages and ends with
/// one <see cref="Result"/> or <see cref="Error"/>.
/// </summary>
public sealed record InferReply
{
    public InferAccepted? Accepted { get; init; }
    public InferChunk? Chunk { get; init; }
    public InferResult? Result { get; init; }
    public InferError? Error { get; init; }

    public bool IsFinal => Result is not null || Error is not null;

    public static InferReply Of(InferAccepted a) => new() { Accepted = a };
    public static InferReply Of(InferChunk c) => new() { Chunk = c };
    public static InferReply Of(InferResult r) => new() { Result = r };
    public static InferReply Of(InferError e) => new() { Error = e };
}

/// <summary>The client no longer wants request <paramref name="Id"/>: a worker running it stops, and one that takes it from the
/// queue later (before <paramref name="DeadlineUnixMs"/>, after which it would refuse it anyway) drops it unrun. With
/// <paramref name="BeforeAttempt"/> above 0 only the attempts below it: a direct offer the client stopped waiting for, whose
/// request is queued as the next attempt.</summary>
public sealed record CancelRequest(string Id, long DeadlineUnixMs = 0, int BeforeAttempt = 0)
{
    /// <summary>Whether this cancel is for attempt <paramref name="attempt"/> of the request.</summary>
    public bool Covers(int attempt) => BeforeAttempt <= 0 || attempt < BeforeAttempt;
}

/// <summary>
/// A worker's live work now, on <see cref="Subjects.HostLive"/> of its machine: sent when it starts or ends
/// (the first live request taken, the last one finished) and again every heartbeat while it runs any.
/// </summary>
public sealed record HostLiveLoad
{
    public required string WorkerId { get; init; }
    public required string Colour { get; init; }
    /// <summary>Live requests the worker is running.</summary>
    public int Live { get; init; }
    /// <summary>Counts the worker's messages, so one that arrives after a newer one is ignored.</summary>
    public long Sequence { get; init; }
    /// <summary>The sending process (a new one per start): its <see cref="Sequence"/> starts again at 1, so a worker that
    /// restarted under the same id is not taken for one sending old reports.</summary>
    public string? Epoch { get; init; }
    public long UnixMs { get; init; }
}

/// <summary>What a worker announces on <see cref="Subjects.WorkerHeartbeat"/> every interval.</summary>
public sealed record WorkerHeartbeat
{
    public required string WorkerId { get; init; }
    public required string Colour { get; init; }
    public required string ModelId { get; init; }
    public required string ModelSha256 { get; init; }
    public required string ProfileVersion { get; init; }
    public int Slots { get; init; }
    public int Busy { get; init; }
    public int ContextSize { get; init; }
    public long UnixMs { get; init; }
    /// <summary>Set on the last heartbeat of a worker that is shutting down.</summary>
    public bool Leaving { get; init; }
    /// <summary>Set while a worker that is shutting down finishes the requests it has: it takes no new work, and it is
    /// still alive for the clients of those requests.</summary>
    public bool Draining { get; init; }
    /// <summary>Whether the worker takes work: false while it waits for its first release or drains to switch.</summary>
    public bool Serving { get; init; } = true;
    /// <summary>Whether it listens for live work offered directly (<see cref="Subjects.Direct"/>): clients offer a colour's
    /// requests directly only while one of its workers does, and otherwise queue them in JetStream at once.</summary>
    public bool TakesOffers { get; init; }
    /// <summary>The release it serves (null for a model given on its command line, or none yet).</summary>
    public string? Release { get; init; }
    /// <summary>What it serves (model, whole prompt profile, injected faults) as one digest: <see cref="GoldenKeys.Fingerprint"/>;
    /// stored golden results are found by it.</summary>
    public string? Fingerprint { get; init; }
    /// <summary>The release it is loading now (download, load, warm-up).</summary>
    public string? Loading { get; init; }
    /// <summary>The release it last failed to load and why (it keeps serving its previous release).</summary>
    public string? FailedRelease { get; init; }
    public string? Failure { get; init; }
    /// <summary>The deploy (<see cref="Assignment.DeployId"/>) whose load failed.</summary>
    public string? FailedDeploy { get; init; }

    public WorkerReleaseStatus ReleaseStatus => new()
    {
        WorkerId = WorkerId, Release = Release, ModelSha256 = Serving ? ModelSha256 : null, Serving = Serving, Loading = Loading,
        FailedRelease = FailedRelease, Failure = Failure, FailedDeploy = FailedDeploy,
    };
}

/// <summary>The JSON error answer of a NATS request/reply endpoint.</summary>
public sealed record ErrorReply(string Error, string Code);
