using System.Diagnostics;
using System.Threading.Channels;
using LLama.Batched;
using QwenNats.Messaging;

namespace QwenNats.Worker;

/// <summary>Who is answering: stamped on every reply.</summary>
/// <param name="Fingerprint">What the worker serves (model, whole profile, faults) as one digest: <see cref="GoldenKeys.Fingerprint"/>.</param>
public sealed record AnswerStamp(string WorkerId, string Colour, string ModelId, string ProfileVersion, string? Release = null, string? ModelSha256 = null,
    string? Fingerprint = null);

/// <summary>
/// One request inside the decode loop. The loop owns it: <see cref="Admit"/> prompts its
/// sequence(s), <see cref="Step"/> runs after each batched decode while it needs sampling, and it
/// writes its replies to <see cref="Output"/> (read by the NATS side).
/// </summary>
public abstract class EngineJob
{
    private readonly Channel<InferReply> _output = Channel.CreateUnbounded<InferReply>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    protected readonly Stopwatch Clock = Stopwatch.StartNew();

    /// <summary>When this job was made (Unix microseconds): where its <see cref="InferResult.TotalMs"/> starts.</summary>
    public long StartedUs { get; } = UnixMicros.Now();

    protected EngineJob(InferRequest request, IReadOnlyList<int> promptTokens, AnswerStamp stamp, int attempt, double queueMs, CancellationToken cancel)
    {
        Request = request;
        PromptTokens = promptTokens;
        Stamp = stamp;
        Attempt = attempt;
        QueueMs = queueMs;
        Cancel = cancel;
    }

    public InferRequest Request { get; }
    public IReadOnlyList<int> PromptTokens { get; }
    public AnswerStamp Stamp { get; }
    public int Attempt { get; }
    public double QueueMs { get; }
    public CancellationToken Cancel { get; }
    /// <summary>Chat: the oldest messages of the conversation left out so it fits the context.</summary>
    public int TrimmedMessages { get; init; }
    public ChannelReader<InferReply> Output => _output.Reader;
    public bool Finished { get; private set; }

    public abstract bool RequiresInference { get; }

    /// <summary>A mirrored copy (taken from the shadow queue): it may be held back for live work on the machine.</summary>
    public bool Mirrored { get; set; }

    private long _pausedTicks, _pausedSince = -1;

    /// <summary>Whether the job is held back now (<see cref="Pause"/>).</summary>
    public bool Paused => _pausedSince >= 0;

    /// <summary>Holds the job back (the engine neither admits, decodes nor samples it) until <see cref="Resume"/>.</summary>
    public void Pause()
    {
        if (_pausedSince < 0)
            _pausedSince = Clock.ElapsedTicks;
    }

    public void Resume()
    {
        if (_pausedSince < 0) return;
        _pausedTicks += Clock.ElapsedTicks - _pausedSince;
        _pausedSince = -1;
    }

    /// <summary>Time held back so far, in milliseconds.</summary>
    public double YieldedMs => Stopwatch.GetElapsedTime(0, _pausedTicks + (_pausedSince >= 0 ? Clock.ElapsedTicks - _pausedSince : 0)).TotalMilliseconds;

    /// <summary>Wall time since the job was made, less the time it was held back, in milliseconds.</summary>
    protected double ActiveMs => Clock.Elapsed.TotalMilliseconds - YieldedMs;

    /// <summary>Prompt tokens decoded per step (0: the whole prompt in one), set before <see cref="Admit"/>.</summary>
    public int PromptChunk { get; set; }

    private LLama.Native.LLamaToken[]? _promptRest;
    private Conversation? _prompting;

    /// <summary>Prompt tokens still to queue (<see cref="PromptChunk"/>): <see cref="PromptMore"/>, not <see cref="Step"/>, comes next.</summary>
    public bool HasPromptLeft => _promptRest is { Length: > 0 };

    /// <summary>Queues the next chunk of the prompt.</summary>
    public void PromptMore()
    {
        var rest = _promptRest!;
        var take = PromptChunk > 0 ? Math.Min(PromptChunk, rest.Length) : rest.Length;
        _prompting!.Prompt(rest[..take]);
        Queued(_prompting, take);
        _promptRest = rest[take..];
    }

    /// <summary>CPU milliseconds charged to this request so far (its parts of decode steps, as if run alone, and its sampling).</summary>
    public double ComputeMs { get; private set; }

    private int _workSteps, _workTokens;
    private double _workPositions;

    /// <summary>The worker's measured step costs, reported with the result (set when the engine admits the job).</summary>
    public DecodeCostModel? CostModel { get; set; }

    /// <summary>
    /// How many times the compute this request needs (1 = as measured). Fault injection sets it to make a
    /// slower build: the engine burns the extra CPU in the decode loop, as a costlier model would.
    /// </summary>
    public double CostFactor { get; set; } = 1;

    /// <summary>Charges this request <paramref name="ms"/> for its <paramref name="part"/> of a decode step.</summary>
    public void Charge(double ms, StepPart part)
    {
        ComputeMs += ms;
        if (part.Tokens <= 0) return;
        _workSteps++;
        _workTokens += (int)part.Tokens;
        _workPositions += part.Positions;
    }

    public void ChargeSampling(TimeSpan cpu) => ComputeMs += cpu.TotalMilliseconds;

    /// <summary>Tokens this request queued for the next batched decode and their positions (read and cleared by the engine).</summary>
    public StepPart Pending { get; set; }

    /// <summary>Records the last <paramref name="tokens"/> tokens just queued on <paramref name="conversation"/> for decoding on this request's behalf.</summary>
    protected void Queued(Conversation conversation, int tokens) => Pending += StepPart.Of(tokens, conversation.TokenCount - tokens);

    public abstract void Admit(BatchedExecutor executor, PrefixCache prefixes);

    /// <summary>Prompt tokens found in the shared prefix instead of being decoded for this request.</summary>
    public int ReusedTokens { get; protected set; }

    /// <summary>A sequence holding the whole prompt: the shared prefix forked when it applies, the rest queued for decoding.</summary>
    protected Conversation StartPrompt(BatchedExecutor executor, PrefixCache prefixes)
    {
        var (conversation, reused) = prefixes.Begin(executor, Request.Task, PromptTokens);
        ReusedTokens = reused;
        _prompting = conversation;
        _promptRest = PromptTokens.Skip(reused).Select(t => (LLama.Native.LLamaToken)t).ToArray();
        PromptMore();
        return conversation;
    }

    /// <summary>Advances after a decode; returns true when the job has finished.</summary>
    public abstract bool Step(BatchedExecutor executor);

    /// <summary>Frees the job's sequences in the KV cache.</summary>
    protected abstract void Release();

    protected void Emit(InferReply reply) => _output.Writer.TryWrite(reply);

    protected void Complete(InferResult result)
    {
        if (Finished) return;
        Finished = true;
        Release();
        Emit(InferReply.Of(result));
        _output.Writer.TryComplete();
    }

    public void Fail(string code, string message)
    {
        if (Finished) return;
        Finished = true;
        Release();
        Emit(InferReply.Of(new InferError { Id = Request.Id, Code = code, Message = message, WorkerId = Stamp.WorkerId, Colour = Stamp.Colour }));
        _output.Writer.TryComplete();
    }

    /// <summary>Ends the job without a final reply: reading <see cref="Output"/> throws <paramref name="error"/> after what was
    /// emitted before (the engine stopped; its worker leaves the request for another to answer).</summary>
    public void Abandon(Exception error)
    {
        if (Finished) return;
        Finished = true;
        try
        {
            Release();
        }
        catch (Exception)
        {
            // The context it used is gone with the engine's loop.
        }
        _output.Writer.TryComplete(error);
    }

    protected InferResult Result(string finishReason, int completionTokens, double ttftMs)
    {
        // One reading of the clock for both: the stages (StartedUs to FinishedUs) and total_ms agree to the
        // microsecond, however long the thread is kept off a busy machine's cores between two readings.
        var elapsed = Clock.Elapsed;
        return new()
        {
            Times = new WorkerTimes { StartedUs = StartedUs, FinishedUs = StartedUs + (long)elapsed.TotalMicroseconds },
            Id = Request.Id,
            Task = Request.Task,
            FinishReason = finishReason,
            PromptTokens = PromptTokens.Count,
            CompletionTokens = completionTokens,
            TimeToFirstTokenMs = ttftMs,
            TotalMs = elapsed.TotalMilliseconds - YieldedMs,
            YieldedMs = YieldedMs > 0 ? Math.Round(YieldedMs, 3) : null,
            QueueMs = QueueMs,
            ComputeMs = Math.Round(ComputeMs, 3),
            ComputedTokens = PromptTokens.Count - ReusedTokens + completionTokens,
            Work = _workSteps > 0 ? new DecodeWork(_workSteps, _workTokens, _workPositions) : null,
            CostModel = CostModel,
            WorkerId = Stamp.WorkerId,
            Colour = Stamp.Colour,
            ModelId = Stamp.ModelId,
            ProfileVersion = Stamp.ProfileVersion,
            Release = Stamp.Release,
            ModelSha256 = Stamp.ModelSha256,
            Fingerprint = Stamp.Fingerprint,
            Attempt = Attempt,
            TrimmedMessages = TrimmedMessages,
        };
    }
}

/// <summary>A request not answered because its engine's decode loop stopped for good (<see cref="LlamaEngine.Broken"/>).</summary>
public sealed class EngineStoppedException(Exception cause) : Exception($"The decode loop stopped: {cause.Message}", cause);
