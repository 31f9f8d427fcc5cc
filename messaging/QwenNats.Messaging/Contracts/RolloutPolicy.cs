using System.Text.Json;
using System.Text.Json.Serialization;

namespace QwenNats.Messaging;

/// <summary>
/// One sequential test of the judge (Wald's SPRT on a paired event): each comparable pair either shows the
/// event (for example "the candidate cost more than 1.5× live's compute") or not. The test decides between
/// "the event rate is at most <see cref="P0"/>" (acceptable: pass) and "at least <see cref="P1"/>" (a
/// regression: fail) with the policy's false-alarm and miss rates, taking as many pairs as the evidence
/// needs: gross faults in a few pairs, subtle ones in more.
/// </summary>
public sealed record SequentialTest
{
    /// <summary>The check's cut-off where it has one (a ratio for latency and compute, a difference for
    /// confidence, a similarity for text): which side of it makes a pair count as an event.</summary>
    public double? Threshold { get; set; }
    /// <summary>Event rate that is acceptable (the hypothesis a pass accepts).</summary>
    public double P0 { get; set; }
    /// <summary>Event rate that must be caught (the hypothesis a fail accepts).</summary>
    public double P1 { get; set; }
}

/// <summary>
/// deploy/rollout-policy.json: what the judge requires of a candidate (compared with live on the same
/// requests) and how the promoter steps through a rollout. Shared by both. docs/judge.md explains every
/// check; <see cref="Validate"/> refuses a policy with a check that cannot fail.
/// </summary>
public sealed record RolloutPolicy
{
    public string Description { get; set; } = "";
    /// <summary>Samples a step needs before it can pass, whatever the tests say.</summary>
    public int MinSamples { get; set; } = 20;
    /// <summary>Time from a step's first sample before it can pass: at least the mirrors' timeout
    /// (<c>Shadow:Timeout</c>), so requests the candidate never answers — whose samples arrive last — are counted.</summary>
    public TimeSpan MinStepDuration { get; set; } = TimeSpan.FromSeconds(30);
    /// <summary>Probability that one check fails a good candidate in one step (Wald's α).</summary>
    public double FalseAlarmRate { get; set; } = 0.0005;
    /// <summary>Probability that one check passes a candidate at its P1 (Wald's β).</summary>
    public double MissRate { get; set; } = 0.05;
    /// <summary>The false-rollback rate per whole rollout the policy promises; <see cref="Validate"/> checks
    /// that the checks' false-alarm rates over every step stay under it.</summary>
    public double MaxFalseRollbackRate { get; set; } = 0.02;
    /// <summary>Tasks whose checks must all decide before a step passes (a task without traffic stays inconclusive).</summary>
    public IReadOnlyList<string> RequiredTasks { get; set; } = [InferTasks.Sentiment, InferTasks.Chat];

    /// <summary>Pair event: the candidate's compute (worker CPU time) over live's is above the threshold.</summary>
    public SequentialTest Compute { get; set; } = new() { Threshold = 1.5, P0 = 0.2, P1 = 0.6 };
    /// <summary>Pair event: the candidate's wall-clock time over live's is above the threshold (loose: shared machines).</summary>
    public SequentialTest Latency { get; set; } = new() { Threshold = 3.0, P0 = 0.2, P1 = 0.6 };
    /// <summary>Pair event: the candidate answered with an error where live answered.</summary>
    public SequentialTest Errors { get; set; } = new() { P0 = 0.01, P1 = 0.05 };
    /// <summary>Pair event: the candidate took the request and never answered (deadline, lost) where live answered.</summary>
    public SequentialTest Unanswered { get; set; } = new() { P0 = 0.002, P1 = 0.04 };
    /// <summary>Sentiment pair event: the labels differ.</summary>
    public SequentialTest SentimentDisagreement { get; set; } = new() { P0 = 0.02, P1 = 0.1 };
    /// <summary>Sentiment pair event: the confidences differ by more than the threshold.</summary>
    public SequentialTest ConfidenceDrift { get; set; } = new() { Threshold = 0.25, P0 = 0.1, P1 = 0.4 };
    /// <summary>Chat pair event: the candidate's answer is empty, has broken UTF-8, runs away repeating
    /// itself, was cut at max tokens, refuses, is in another writing system than the user's message, or
    /// changed tone (ruder, shouting, another form of address, emoji), where live's was not.</summary>
    public SequentialTest ChatDefects { get; set; } = new() { P0 = 0.05, P1 = 0.25 };
    /// <summary>Chat pair event: the candidate's answer is more than the threshold times shorter or longer than live's.</summary>
    public SequentialTest ChatLength { get; set; } = new() { Threshold = 2.0, P0 = 0.15, P1 = 0.5 };
    /// <summary>Chat pair event: a live-colour worker scores the candidate's answer (mean log-probability per
    /// token under the live model) more than the threshold (nats per token) below live's own answer. Needs
    /// the ingress's <c>Shadow:ScoreChat</c>; off when absent.</summary>
    public SequentialTest? ChatLikelihood { get; set; }
    /// <summary>Chat pair event: the character-trigram similarity to live's answer is below the threshold.
    /// Off when absent: different prompt profiles legitimately answer differently.</summary>
    public SequentialTest? ChatSimilarity { get; set; }

    /// <summary>The candidate's golden-set accuracy may be at most this much below live's.</summary>
    public double GoldenAccuracyTolerance { get; set; }
    /// <summary>
    /// Golden chat gate: the share of the golden chat prompts on which the candidate's answer may show a defect
    /// live's answer to the same prompt does not (net of the reverse) before the gate fails; e.g. 0.1 of 24
    /// prompts lets 2 more defective answers pass and fails on 3.
    /// </summary>
    public double GoldenChatDefectTolerance { get; set; } = 0.1;
    /// <summary>An automatic rollout that has received no verdict at all for this long is paused (judge gone).</summary>
    public TimeSpan NoVerdictPauseAfter { get; set; } = TimeSpan.FromMinutes(2);
    /// <summary>A step inconclusive for this long is paused for an operator.</summary>
    public TimeSpan InconclusivePauseAfter { get; set; } = TimeSpan.FromMinutes(10);
    public IReadOnlyList<int> CanarySteps { get; set; } = [10, 25, 50];
    public TimeSpan BakeWindow { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>The sequential checks by name, in the order the judge reports them.</summary>
    public IEnumerable<(string Name, SequentialTest Test)> Checks()
    {
        yield return ("errors", Errors);
        yield return ("unanswered", Unanswered);
        yield return ("compute_ratio", Compute);
        yield return ("latency_ratio", Latency);
        yield return ("sentiment_disagreement", SentimentDisagreement);
        yield return ("confidence_drift", ConfidenceDrift);
        yield return ("chat_defects", ChatDefects);
        yield return ("chat_length", ChatLength);
        if (ChatLikelihood is { } l)
            yield return ("chat_likelihood", l);
        if (ChatSimilarity is { } s)
            yield return ("chat_similarity", s);
    }

    /// <summary>Steps a rollout is judged in: Shadow and every canary step.</summary>
    public int JudgedSteps => 1 + CanarySteps.Count;

    /// <summary>
    /// Upper bound of the chance that a candidate as good as live (every event rate at most its P0) is
    /// rolled back somewhere in a rollout: Wald's bound α/(1−β) per check and step, over every check and step.
    /// </summary>
    public double FalseRollbackBound()
    {
        var perCheck = Math.Min(1, FalseAlarmRate / (1 - MissRate));
        return 1 - Math.Pow(1 - perCheck, Checks().Count() * JudgedSteps);
    }

    /// <summary>Refuses a policy the judge could not apply honestly: a check that cannot fail, rates out of range.</summary>
    public RolloutPolicy Validate(string source)
    {
        var problems = new List<string>();
        if (FalseAlarmRate is <= 0 or >= 0.5) problems.Add("false_alarm_rate must be in (0, 0.5)");
        if (MissRate is <= 0 or >= 0.5) problems.Add("miss_rate must be in (0, 0.5)");
        if (MinSamples < 1) problems.Add("min_samples must be at least 1");
        foreach (var (name, t) in Checks())
        {
            if (!(t.P0 > 0 && t.P0 < t.P1 && t.P1 < 1))
                problems.Add($"{name}: needs 0 < p0 < p1 < 1 (has p0 {t.P0}, p1 {t.P1}); a check with p1 at or below p0 cannot fail");
        }
        if (Compute.Threshold is not > 1) problems.Add("compute: threshold must be a ratio above 1");
        if (Latency.Threshold is not > 1) problems.Add("latency: threshold must be a ratio above 1");
        if (ChatLength.Threshold is not > 1) problems.Add("chat_length: threshold must be a ratio above 1");
        if (ConfidenceDrift.Threshold is not (> 0 and < 1)) problems.Add("confidence_drift: threshold must be in (0, 1); at 1 or more no pair can count");
        if (ChatLikelihood is { Threshold: not > 0 }) problems.Add("chat_likelihood: threshold must be a positive drop in nats per token");
        if (ChatSimilarity is { Threshold: not (> 0 and <= 1) }) problems.Add("chat_similarity: threshold must be in (0, 1]; at 0 no pair can count");
        if (RequiredTasks.Count == 0 || RequiredTasks.Any(t => t is not (InferTasks.Chat or InferTasks.Sentiment)))
            problems.Add("required_tasks must name chat and/or sentiment");
        if (GoldenAccuracyTolerance is < 0 or >= 1) problems.Add("golden_accuracy_tolerance must be in [0, 1); at 1 the golden sentiment gate cannot fail");
        if (GoldenChatDefectTolerance is < 0 or >= 1) problems.Add("golden_chat_defect_tolerance must be in [0, 1); at 1 the golden chat gate cannot fail");
        if (MinStepDuration < TimeSpan.Zero) problems.Add("min_step_duration must not be negative");
        if (NoVerdictPauseAfter <= TimeSpan.Zero) problems.Add("no_verdict_pause_after must be positive");
        if (InconclusivePauseAfter <= TimeSpan.Zero) problems.Add("inconclusive_pause_after must be positive");
        if (CanarySteps is null || CanarySteps.Count == 0 || CanarySteps.Any(w => w is < 1 or > 100))
            problems.Add("canary_steps must list one or more weights between 1 and 100 (percent of new conversations sent to the candidate)");
        if (BakeWindow < TimeSpan.Zero) problems.Add("bake_window must not be negative");
        if (MaxFalseRollbackRate is <= 0 or >= 1) problems.Add("max_false_rollback_rate must be in (0, 1)");
        else if (FalseRollbackBound() > MaxFalseRollbackRate)
            problems.Add($"false_alarm_rate {FalseAlarmRate} over {Checks().Count()} checks and {JudgedSteps} steps allows a false rollback rate up to {FalseRollbackBound():P2}, above max_false_rollback_rate {MaxFalseRollbackRate:P2}");
        if (problems.Count > 0)
            throw new InvalidOperationException($"Rollout policy '{source}' is refused: {string.Join("; ", problems)}.");
        return this;
    }

    public static RolloutPolicy Load(string? path)
    {
        if (string.IsNullOrWhiteSpace(path))
            return new RolloutPolicy().Validate("(defaults)");
        if (!File.Exists(path))
            throw new FileNotFoundException($"Rollout policy '{path}' does not exist.", path);
        RolloutPolicy policy;
        try
        {
            policy = JsonSerializer.Deserialize(File.ReadAllText(path), PolicyJsonContext.Default.RolloutPolicy)
                     ?? throw new InvalidOperationException($"Rollout policy '{path}' is empty.");
        }
        catch (JsonException e)
        {
            throw new InvalidOperationException($"Rollout policy '{path}' is not valid: {e.Message}", e);
        }
        return policy.Validate(path);
    }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = true, UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow)]
[JsonSerializable(typeof(RolloutPolicy))]
internal sealed partial class PolicyJsonContext : JsonSerializerContext;
