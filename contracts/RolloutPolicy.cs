using System.Text.Json;
using System.Text.Json.Serialization;

namespace QwenNats.Contracts;

/// <summary>
/// deploy/rollout-policy.json: what the judge requires of a candidate (compared with live on the same
/// requests) and how the promoter steps through a rollout. Shared by both.
/// </summary>
public sealed record RolloutPolicy
{
    public string Description { get; init; } = "";
    /// <summary>Samples a step needs before any verdict other than inconclusive.</summary>
    public int MinSamples { get; init; } = 50;
    /// <summary>Pairs of one task needed before that task's checks count.</summary>
    public int MinTaskSamples { get; init; } = 20;
    public double WilsonZ { get; init; } = 1.96;
    /// <summary>Lower Wilson bound of the sentiment label agreement rate.</summary>
    public double SentimentAgreementMin { get; init; } = 0.85;
    public double ConfidenceDriftMax { get; init; } = 0.25;
    public double ChatEmptyRateIncreaseMax { get; init; } = 0.05;
    public double ChatTruncatedRateIncreaseMax { get; init; } = 0.10;
    public double ChatBrokenUtf8RateMax { get; init; } = 0.01;
    public double ChatRepetitionRateIncreaseMax { get; init; } = 0.10;
    public double ChatLengthRatioMin { get; init; } = 0.5;
    public double ChatLengthRatioMax { get; init; } = 2.0;
    public double ChatSimilarityMin { get; init; }
    /// <summary>Paired total latency, candidate over live.</summary>
    public double LatencyP50RatioMax { get; init; } = 1.5;
    public double LatencyP95RatioMax { get; init; } = 2.0;
    public double TtftP50RatioMax { get; init; } = 1.5;
    /// <summary>Candidate error rate minus live error rate.</summary>
    public double ErrorRateIncreaseMax { get; init; } = 0.02;
    /// <summary>The candidate's golden-set accuracy may be at most this much below live's.</summary>
    public double GoldenAccuracyTolerance { get; init; }
    /// <summary>A step inconclusive for this long is paused for an operator.</summary>
    public TimeSpan InconclusivePauseAfter { get; init; } = TimeSpan.FromMinutes(10);
    public IReadOnlyList<int> CanarySteps { get; init; } = [10, 25, 50];
    public TimeSpan BakeWindow { get; init; } = TimeSpan.FromMinutes(5);

    public static RolloutPolicy Load(string? path)
    {
        if (string.IsNullOrWhiteSpace(path))
            return new RolloutPolicy();
        if (!File.Exists(path))
            throw new FileNotFoundException($"Rollout policy '{path}' does not exist.", path);
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(path), PolicyJsonContext.Default.RolloutPolicy)
                   ?? throw new InvalidOperationException($"Rollout policy '{path}' is empty.");
        }
        catch (JsonException e)
        {
            throw new InvalidOperationException($"Rollout policy '{path}' is not valid: {e.Message}", e);
        }
    }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, ReadCommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true)]
[JsonSerializable(typeof(RolloutPolicy))]
internal sealed partial class PolicyJsonContext : JsonSerializerContext;
