using System.Text;
using LLama;
using LLama.Batched;
using LLama.Native;
using LLama.Sampling;
using QwenNats.Messaging;

namespace QwenNats.Worker;

/// <summary>Generates a chat answer token by token, streaming chunks when asked.</summary>
public sealed class ChatJob(
    InferRequest request, IReadOnlyList<int> promptTokens, AnswerStamp stamp, int attempt, double queueMs, CancellationToken cancel,
    ChatSettings settings) : EngineJob(request, promptTokens, stamp, attempt, queueMs, cancel)
{
    private readonly StringBuilder _text = new();
    private readonly List<TokenLogprob> _logprobs = [];
    private readonly List<TokenLogprob> _pendingLogprobs = [];
    private readonly StopMatcher _stops = new(settings.Stop);
    private Conversation? _conversation;
    private ISamplingPipeline? _sampler;
    private StreamingTokenDecoder? _decoder;
    private int _generated;
    private int _chunkIndex;
    private double _ttftMs;

    public override bool RequiresInference => _conversation is { IsDisposed: false, RequiresInference: true };

    public override void Admit(BatchedExecutor executor, PrefixCache prefixes)
    {
        _sampler = Samplers.Create(settings);
        _decoder = new StreamingTokenDecoder(Encoding.UTF8, executor.Context.NativeHandle);
        _conversation = StartPrompt(executor, prefixes);
    }

    public override bool Step(BatchedExecutor executor)
    {
        var conversation = _conversation!;
        var token = conversation.Sample(_sampler!);
        if (_generated == 0)
            _ttftMs = ActiveMs;

        if (token.IsEndOfGeneration(executor.Context.NativeHandle.ModelHandle.Vocab))
            return Finish(FinishReasons.Stop);

        _generated++;
        if (settings.Logprobs)
            _pendingLogprobs.Add(TokenLogprobs.Of(executor.Context.NativeHandle, conversation.GetSampleIndex(), token, settings.TopLogprobs));
        _decoder!.Add(token);
        Send(_stops.Push(_decoder.Read()));
        if (_stops.Stopped)
            return Finish(FinishReasons.Stop);
        if (_generated >= settings.MaxTokens || conversation.TokenCount + 1 >= settings.ContextSize)
            return Finish(FinishReasons.Length);

        conversation.Prompt(token);
        Queued(conversation, 1);
        return false;
    }

    /// <summary>Sends text (and the log-probabilities of the tokens generated since the last chunk, when asked for).</summary>
    private void Send(string text, bool last = false)
    {
        if (text.Length == 0 && !(last && _pendingLogprobs.Count > 0)) return;
        _text.Append(text);
        IReadOnlyList<TokenLogprob>? logprobs = null;
        if (_pendingLogprobs.Count > 0)
        {
            _logprobs.AddRange(_pendingLogprobs);
            logprobs = [.. _pendingLogprobs];
            _pendingLogprobs.Clear();
        }
        if (Request.Stream)
            Emit(InferReply.Of(new InferChunk { Id = Request.Id, Index = _chunkIndex++, Text = text, Attempt = Attempt, Logprobs = logprobs }));
    }

    private bool Finish(string reason)
    {
        var tail = _stops.Stopped ? "" : _decoder!.Read() is { Length: > 0 } rest ? _stops.Push(rest) + _stops.Flush() : _stops.Flush();
        Send(tail, last: true);
        Complete(Result(reason, _generated, _ttftMs) with { Text = _text.ToString(), Logprobs = settings.Logprobs ? _logprobs : null });
        return true;
    }

    protected override void Release()
    {
        _conversation?.Dispose();
        _sampler?.Dispose();
    }
}

/// <summary>
/// How one chat answer is sampled. <paramref name="Grammar"/>: GBNF (root rule <c>root</c>) built by the worker
/// from the request's response format; null for free text.
/// </summary>
public sealed record ChatSettings(
    double Temperature, double TopP, uint? Seed, int MaxTokens, IReadOnlyList<string> Stop, int ContextSize,
    double PresencePenalty = 0, double FrequencyPenalty = 0, IReadOnlyDictionary<int, double>? LogitBias = null, string? Grammar = null,
    bool Logprobs = false, int TopLogprobs = 0);
