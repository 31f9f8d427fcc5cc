using QwenNats.Messaging;

namespace QwenNats.Tests.Infrastructure;

/// <summary>Synthetic shadow samples for judge tests.</summary>
public static class Samples
{
    public static ShadowSample Agreeing(string id, string rolloutId) => new()
    {
        Id = id, RolloutId = rolloutId, Phase = RolloutPhase.Shadow, Step = 0, Task = InferTasks.Sentiment, At = DateTimeOffset.UtcNow,
        Live = new SampleSide { Colour = "blue", Label = "positive", Confidence = 0.9, TotalMs = 50, TimeToFirstTokenMs = 10, ComputeMs = 5 },
        Candidate = new SampleSide { Colour = "green", Label = "positive", Confidence = 0.9, TotalMs = 52, TimeToFirstTokenMs = 10, ComputeMs = 5.2 },
    };

    public static ShadowSample AgreeingChat(string id, string rolloutId) => new()
    {
        Id = id, RolloutId = rolloutId, Phase = RolloutPhase.Shadow, Step = 0, Task = InferTasks.Chat, At = DateTimeOffset.UtcNow,
        Live = new SampleSide { Colour = "blue", Text = "Once upon a time there was a cat.", FinishReason = FinishReasons.Stop, TotalMs = 80, TimeToFirstTokenMs = 10, ComputeMs = 8, LiveModelLogProb = -2.0 },
        Candidate = new SampleSide { Colour = "green", Text = "Once upon a time there was a dog.", FinishReason = FinishReasons.Stop, TotalMs = 84, TimeToFirstTokenMs = 11, ComputeMs = 8.3, LiveModelLogProb = -2.1 },
    };
}
