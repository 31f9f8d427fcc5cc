namespace QwenNats.Worker;

/// <summary>What was loaded: reported in every answer, heartbeat and discovery entry.</summary>
public sealed record ModelInfo(string Id, string Path, string Sha256, long SizeBytes, int TrainContext, bool HasChatTemplate);

/// <summary>Where a model comes from: its file, the id it is reported under and, when already verified, its digest.</summary>
public sealed record ModelSource(string Path, string Id, string? Sha256 = null)
{
    public static ModelSource FromOptions(WorkerOptions o) => new(o.ModelPath, System.IO.Path.GetFileNameWithoutExtension(o.ModelPath));
}
