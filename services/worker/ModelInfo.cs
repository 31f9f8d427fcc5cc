namespace QwenNats.Worker;

/// <summary>What was loaded: reported in every answer, heartbeat and discovery entry.</summary>
public sealed record ModelInfo(string Id, string Path, string Sha256, long SizeBytes, int TrainContext, bool HasChatTemplate);
