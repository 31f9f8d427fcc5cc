using QwenNats.Contracts;

namespace QwenNats.Tests.Infrastructure;

/// <summary>Shadow samples made up for judge tests: live and candidate agree, latencies close.</summary>
public static class Samples
{
    public static ShadowSample Agreeing(string id, string rolloutId) => new()
    {
        Id = id, RolloutId = rolloutId, Phase = RolloutPhase.Shadow, Step = 0, Task = InferTasks.Sentiment, At = DateTimeOffset.UtcNow,
        Live = new SampleSide { Colour = "blue", Label = "positive", Confidence = 0.9, TotalMs = 50, TimeToFirstTokenMs = 10 },
        Candidate = new SampleSide { Colour = "green", Label = "positive", Confidence = 0.9, TotalMs = 52, TimeToFirstTokenMs = 10 },
    };
}
