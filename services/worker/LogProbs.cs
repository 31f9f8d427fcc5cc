namespace QwenNats.Worker;

/// <summary>Log-probability arithmetic for label scoring; pure, unit-tested.</summary>
public static class LogProbs
{
    /// <summary>log softmax(logits)[index], computed stably.</summary>
    public static double LogSoftmaxAt(ReadOnlySpan<float> logits, int index)
    {
        if ((uint)index >= (uint)logits.Length)
            throw new ArgumentOutOfRangeException(nameof(index));
        return logits[index] - LogSumExp(logits);
    }

    /// <summary>log Σ exp(logits), computed stably: log softmax(logits)[i] is logits[i] minus it.</summary>
    public static double LogSumExp(ReadOnlySpan<float> logits)
    {
        var max = float.NegativeInfinity;
        foreach (var l in logits)
            if (l > max) max = l;
        double sum = 0;
        foreach (var l in logits)
            sum += Math.Exp(l - max);
        return max + Math.Log(sum);
    }

    /// <summary>The indices of the <paramref name="count"/> largest logits, largest first (ties: lower index first).</summary>
    public static int[] TopIndices(ReadOnlySpan<float> logits, int count)
    {
        count = Math.Min(count, logits.Length);
        if (count <= 0)
            return [];
        var top = new int[count];
        var n = 0;
        for (var i = 0; i < logits.Length; i++)
        {
            if (n == count && logits[i] <= logits[top[n - 1]])
                continue;
            var at = n < count ? n++ : n - 1;
            while (at > 0 && logits[top[at - 1]] < logits[i])
            {
                top[at] = top[at - 1];
                at--;
            }
            top[at] = i;
        }
        return top;
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
