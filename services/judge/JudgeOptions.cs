namespace QwenNats.Judge;

/// <summary>The <c>Judge</c> section.</summary>
public sealed record JudgeOptions
{
    public const string Section = "Judge";

    /// <summary>The rollout policy (deploy/rollout-policy.json); built-in defaults when empty.</summary>
    public string PolicyPath { get; init; } = "";

    /// <summary>How often the current step is evaluated and its verdict published.</summary>
    public TimeSpan EvaluateInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>While samples are backed up, the scorecard is written (and the samples acked) after this many;
    /// otherwise after each sample that leaves nothing pending.</summary>
    public int PersistEvery { get; init; } = 64;
}
