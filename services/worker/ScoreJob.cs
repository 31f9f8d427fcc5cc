using LLama.Batched;
using LLama.Native;
using QwenNats.Messaging;

namespace QwenNats.Worker;

/// <summary>
/// Scores a given answer under this worker's model: the conversation's prompt is decoded (sharing the
/// profile's prefix), then the answer's tokens are fed with logits kept at every position, and the
/// log-probability of each answer token given everything before it is summed. The result is the mean
/// per token (<see cref="InferResult.MeanLogProb"/>): fluent answers score near the model's own, nonsense far below.
/// </summary>
public sealed class ScoreJob(
    InferRequest request, IReadOnlyList<int> promptTokens, IReadOnlyList<int> answerTokens, AnswerStamp stamp, int attempt, double queueMs,
    CancellationToken cancel) : EngineJob(request, promptTokens, stamp, attempt, queueMs, cancel)
{
    private Conversation? _conversation;
    private bool _answerQueued;
    private double _sum;
    private double _ttftMs;

    public override bool RequiresInference => _conversation is { IsDisposed: false, RequiresInference: true };

    public override void Admit(BatchedExecutor executor, PrefixCache prefixes) => _conversation = StartPrompt(executor, prefixes);

    public override bool Step(BatchedExecutor executor)
    {
        var conversation = _conversation!;
        if (!_answerQueued)
        {
            _ttftMs = ActiveMs;
            _sum = LogProbs.LogSoftmaxAt(conversation.Sample(), answerTokens[0]);
            _answerQueued = true;
            if (answerTokens.Count == 1)
                return Done();
            conversation.Prompt(answerTokens.Take(answerTokens.Count - 1).Select(t => (LLamaToken)t).ToArray(), allLogits: true);
            Queued(conversation, answerTokens.Count - 1);
            return false;
        }
        var n = answerTokens.Count;
        for (var j = 1; j < n; j++)
            _sum += LogProbs.LogSoftmaxAt(conversation.Sample(n - 1 - j), answerTokens[j]);
        return Done();
    }

    private bool Done()
    {
        Complete(Result(FinishReasons.Stop, 0, _ttftMs) with { MeanLogProb = Math.Round(_sum / answerTokens.Count, 6) });
        return true;
    }

    protected override void Release() => _conversation?.Dispose();
}
