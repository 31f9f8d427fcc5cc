namespace QwenNats.Messaging;

/// <summary>Who this process is, for logs, NATS connection names and discovery.</summary>
public sealed record ServiceIdentity(string Service, string? Colour, string InstanceId)
{
    public static string NewInstanceId(string service) =>
        $"{service}-{Environment.MachineName.ToLowerInvariant()}-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..6]}";
}
