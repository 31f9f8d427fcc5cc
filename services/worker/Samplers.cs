using LLama.Native;
using LLama.Sampling;
using QwenNats.Messaging.Grammars;

namespace QwenNats.Worker;

/// <summary>Chooses the sampling pipeline for a chat request's settings.</summary>
public static class Samplers
{
    public static ISamplingPipeline Create(ChatSettings s)
    {
        var grammar = s.Grammar is null ? null : new Grammar(s.Grammar, JsonGrammar.Root);
        var bias = s.LogitBias?.ToDictionary(b => (LLamaToken)b.Key, b => (float)b.Value) ?? [];
        var plain = grammar is null && bias.Count == 0 && s.PresencePenalty == 0 && s.FrequencyPenalty == 0;
        // Penalties look back over everything this answer has generated (the prompt is not counted, as with OpenAI).
        var penaltyCount = Math.Max(64, s.MaxTokens);
        if (s.Temperature <= 0)
            return plain
                ? new GreedySamplingPipeline()
                : new ConstrainedGreedyPipeline(grammar, bias, (float)s.PresencePenalty, (float)s.FrequencyPenalty, penaltyCount);
        return new DefaultSamplingPipeline
        {
            Temperature = (float)s.Temperature,
            TopP = (float)s.TopP,
            Seed = s.Seed ?? (uint)Random.Shared.Next(),
            Grammar = grammar,
            LogitBias = bias,
            PresencePenalty = (float)s.PresencePenalty,
            FrequencyPenalty = (float)s.FrequencyPenalty,
            PenaltyCount = penaltyCount,
        };
    }
}

/// <summary>
/// Greedy decoding with logit biases, presence and frequency penalties and a grammar: biases and penalties
/// change the logits, the grammar removes the tokens it does not allow, and the most likely token left wins.
/// The grammar is first tried on the one token greedy picks without it, and applied to the whole vocabulary
/// only when it refuses that token (most steps, the grammar allows it, and checking one token is cheap).
/// </summary>
public sealed class ConstrainedGreedyPipeline(Grammar? grammar, IReadOnlyDictionary<LLamaToken, float> bias, float presence, float frequency, int penaltyCount)
    : BaseSamplingPipeline
{
    private SafeLLamaSamplerChainHandle? _grammar;
    private LLamaTokenData[] _candidates = [];
    private readonly LLamaTokenData[] _one = new LLamaTokenData[1];

    protected override SafeLLamaSamplerChainHandle CreateChain(SafeLLamaContextHandle context)
    {
        var chain = SafeLLamaSamplerChainHandle.Create(LLamaSamplerChainParams.Default());
        if (bias.Count > 0)
        {
            var biases = bias.Select(b => new LLamaLogitBias { Token = b.Key, Bias = b.Value }).ToArray();
            chain.AddLogitBias(context.Vocab.Count, biases);
        }
        chain.AddPenalties(penaltyCount, 1, frequency, presence);
        chain.AddGreedySampler();
        return chain;
    }

    public override LLamaToken Sample(SafeLLamaContextHandle ctx, int index)
    {
        if (grammar is null)
            return base.Sample(ctx, index);
        if (_grammar is null)
        {
            _grammar = SafeLLamaSamplerChainHandle.Create(LLamaSamplerChainParams.Default());
            _grammar.AddGrammar(ctx.ModelHandle, grammar.Gbnf, grammar.Root);
        }
        var logits = ctx.GetLogitsIth(index);
        if (_candidates.Length != logits.Length)
            _candidates = new LLamaTokenData[logits.Length];

        LLamaToken candidate;
        using (LLamaTokenDataArrayNative.Create(LLamaTokenDataArray.Create(logits, _candidates), out var all))
        {
            Apply(ctx, ref all);
            candidate = all.Data[checked((int)all.Selected)].ID;
        }
        _one[0] = new LLamaTokenData(candidate, 1, 0);
        using (LLamaTokenDataArrayNative.Create(new LLamaTokenDataArray(_one, true), out var single))
        {
            _grammar.Apply(ref single);
            if (!float.IsNegativeInfinity(single.Data[0].Logit))
            {
                Accept(candidate);
                return candidate;
            }
        }
        using (LLamaTokenDataArrayNative.Create(LLamaTokenDataArray.Create(logits, _candidates), out var all))
        {
            _grammar.Apply(ref all);
            Apply(ctx, ref all);
            var token = all.Data[checked((int)all.Selected)].ID;
            Accept(token);
            return token;
        }
    }

    public override void Accept(LLamaToken token)
    {
        base.Accept(token);
        _grammar?.Accept(token);
    }

    public override void Reset()
    {
        base.Reset();
        _grammar?.Reset();
    }

    public override void Dispose()
    {
        base.Dispose();
        _grammar?.Dispose();
        _grammar = null;
    }
}
