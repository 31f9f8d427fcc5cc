using Microsoft.Extensions.Options;
using QwenNats.Messaging;

namespace QwenNats.Promoter;

/// <summary>
/// The promoter's effective settings, read once: the options with the policy file's canary steps and bake
/// window applied, the policy itself, and the golden set when one is configured.
/// </summary>
public sealed record PromoterSettings(PromoterOptions Options, RolloutPolicy Policy, IReadOnlyList<GoldenCase>? Golden)
{
    public static PromoterSettings Load(IOptions<PromoterOptions> options)
    {
        var o = options.Value;
        var policy = RolloutPolicy.Load(o.PolicyPath);
        var effective = string.IsNullOrWhiteSpace(o.PolicyPath) ? o : o with { CanarySteps = policy.CanarySteps, BakeWindow = policy.BakeWindow };
        var golden = string.IsNullOrWhiteSpace(o.GoldenPath) ? null : GoldenRunner.Load(o.GoldenPath);
        return new PromoterSettings(effective, policy, golden);
    }
}
