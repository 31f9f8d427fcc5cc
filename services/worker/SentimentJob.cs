using LLama.Batched;
using LLama.Native;
using QwenNats.Messaging;

namespace QwenNats.Worker;

/// <summary>
/// Scores each label as a continuation of the classification prompt: the prompt is decoded once,
/// the first label token is read from its logits, and labels of several tokens are scored on forks
/// of the prompt's sequence (sharing its KV cells), all in one more batched decode.
/// The answer is always one of the labels, with softmax-over-labels confidence.
/// </summary>
public sealed class SentimentJob(
    InferRequest request, IReadOnlyList<int> promptTokens, AnswerStamp stamp, int attempt, double queueMs, CancellationToken cancel,
    IReadOnlyList<string> labels, IReadOnlyList<int[]> labelTokens) : EngineJob(request, promptTokens, stamp, attempt, queueMs, cancel)
{
    private readonly double[] _scores = new double[labels.Count];
    private readonly List<(int Label, Conversation Fork)> _forks = [];
    private Conversation? _prompt;
    private double _ttftMs;

    public override bool RequiresInference =>
        _prompt is { IsDisposed: false, RequiresInference: true } || _forks.Any(f => f.Fork.RequiresInference);

    public override void Admit(BatchedExecutor executor, PrefixCache prefixes) => _prompt = StartPrompt(executor, prefixes);

    public override bool Step(BatchedExecutor executor)
    {
        if (_forks.Count == 0)
        {
            _ttftMs = ActiveMs;
            var logits = _prompt!.Sample();
            for (var i = 0; i < labels.Count; i++)
                _scores[i] = LogProbs.LogSoftmaxAt(logits, labelTokens[i][0]);
            for (var i = 0; i < labels.Count; i++)
            {
                if (labelTokens[i].Length < 2) continue;
                var fork = _prompt.Fork();
                fork.Prompt(labelTokens[i][..^1].Select(t => (LLamaToken)t).ToArray(), allLogits: true);
                Queued(fork, labelTokens[i].Length - 1);
                _forks.Add((i, fork));
            }
            return _forks.Count == 0 && Done();
        }

        foreach (var (label, fork) in _forks)
        {
            var tokens = labelTokens[label];
            for (var j = 1; j < tokens.Length; j++)
                _scores[label] += LogProbs.LogSoftmaxAt(fork.Sample(tokens.Length - 1 - j), tokens[j]);
        }
        return Done();
    }

    private bool Done()
    {
        var confidence = LogProbs.Normalize(_scores);
        var best = Array.IndexOf(confidence, confidence.Max());
        var scores = new Dictionary<string, double>(labels.Count);
        for (var i = 0; i < labels.Count; i++)
            scores[labels[i]] = Math.Round(_scores[i], 6);
        Complete(Result(FinishReasons.Stop, 0, _ttftMs) with
        {
            Label = labels[best],
            Confidence = Math.Round(confidence[best], 6),
            Scores = scores,
            Text = labels[best],
        });
        return true;
    }

    protected override void Release()
    {
        foreach (var (_, fork) in _forks)
            fork.Dispose();
        _prompt?.Dispose();
    }
}
