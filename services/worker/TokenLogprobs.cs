using System.Text;
using LLama.Native;
using QwenNats.Messaging;

namespace QwenNats.Worker;

/// <summary>OpenAI-style log-probabilities of a sampled token, from the model's own logits at that position.</summary>
public static class TokenLogprobs
{
    /// <summary>
    /// The log-probability of <paramref name="token"/> at output <paramref name="index"/> of the last decode
    /// (the model's distribution: before temperature, penalties, biases or grammar), and the
    /// <paramref name="top"/> most likely tokens there.
    /// </summary>
    public static TokenLogprob Of(SafeLLamaContextHandle context, int index, LLamaToken token, int top)
    {
        var logits = context.GetLogitsIth(index);
        var lse = LogProbs.LogSumExp(logits);
        var id = (int)token;
        var entry = Describe(context, token, logits[id] - lse);
        if (top <= 0)
            return entry with { TopLogprobs = [] };
        var best = LogProbs.TopIndices(logits, top);
        var list = new TokenLogprob[best.Length];
        for (var i = 0; i < best.Length; i++)
            list[i] = Describe(context, best[i], logits[best[i]] - lse);
        return entry with { TopLogprobs = list };
    }

    private static TokenLogprob Describe(SafeLLamaContextHandle context, LLamaToken token, double logprob)
    {
        Span<byte> buffer = stackalloc byte[256];
        var length = (int)context.ModelHandle.TokenToSpan(token, buffer);
        var bytes = length <= buffer.Length ? buffer[..length].ToArray() : Bytes(context, token, length);
        return new TokenLogprob
        {
            Token = Encoding.UTF8.GetString(bytes),
            Logprob = double.IsNegativeInfinity(logprob) ? -9999 : Math.Round(logprob, 6),
            Bytes = bytes.Select(b => (int)b).ToArray(),
        };
    }

    private static byte[] Bytes(SafeLLamaContextHandle context, LLamaToken token, int length)
    {
        var bytes = new byte[length];
        context.ModelHandle.TokenToSpan(token, bytes);
        return bytes;
    }
}
