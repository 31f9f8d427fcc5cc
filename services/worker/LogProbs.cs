namespace QwenNats.Worker;

/// <summary>Log-probability arithmetic for label scoring; pure, unit-tested.</summary>
public static class LogProbs
{
    /// <summary>log softmax(logits)[index], computed stably.</summary>
    public static double LogSoftmaxAt(ReadOnlySpan<float> logits, int index)
    {
        if ((uint)index >= (uint)logits.Length)
            throw new ArgumentOutOfRangeException(nameof(index));
        var max = float.NegativeInfinity;
        foreach (var l in logits)
            if (l > max) max = l;
        double sum = 0;
        foreach (var l in logits)
            sum += Math.Exp(l - max);
        return logits[index] - max - Math.Log(sum);
    }

    /// <summary>Softmax over scores (log-probabilities): the confidence of each choice among them.</summary>
    public static double[] Normalize(IReadOnlyList<double> scores)
    {
        var max = scores.Max();
        var exps = scores.Select(s => Math.Exp(s - max)).ToArray();
        var sum = exps.Sum();
        return exps.Select(e => e / sum).ToArray();
    }
}
