using Microsoft.Extensions.Options;
using QwenNats.Messaging;

namespace QwenNats.Promoter;

/// <summary>
/// The promoter's effective settings, read once: the options with the policy file's canary steps and bake
/// window applied, the policy itself, and the golden inputs (sentiment cases, then chat prompts) when configured.
/// </summary>
public sealed record PromoterSettings(PromoterOptions Options, RolloutPolicy Policy, IReadOnlyList<GoldenInput>? Golden)
{
    public static PromoterSettings Load(IOptions<PromoterOptions> options)
    {
        var o = options.Value;
        var policy = RolloutPolicy.Load(o.PolicyPath);
        var effective = string.IsNullOrWhiteSpace(o.PolicyPath) ? o : o with { CanarySteps = policy.CanarySteps, BakeWindow = policy.BakeWindow };
        IReadOnlyList<GoldenInput>? golden = null;
        if (!string.IsNullOrWhiteSpace(o.GoldenPath) || !string.IsNullOrWhiteSpace(o.GoldenChatPath))
        {
            IReadOnlyList<GoldenInput> sentiment = string.IsNullOrWhiteSpace(o.GoldenPath) ? [] : GoldenRunner.LoadSentiment(o.GoldenPath);
            IReadOnlyList<GoldenInput> chat = string.IsNullOrWhiteSpace(o.GoldenChatPath) ? [] : GoldenRunner.LoadChat(o.GoldenChatPath);
            if (sentiment.Select(i => i.Id).Intersect(chat.Select(i => i.Id), StringComparer.Ordinal).FirstOrDefault() is { } twice)
                throw new GoldenInputsException($"Golden id '{twice}' is in both {o.GoldenPath} and {o.GoldenChatPath}; ids must be unique across the golden sets.");
            golden = [.. sentiment, .. chat];
        }
        return new PromoterSettings(effective, policy, golden);
    }
}
