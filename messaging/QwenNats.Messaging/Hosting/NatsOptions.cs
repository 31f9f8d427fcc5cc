namespace QwenNats.Messaging;

/// <summary>The <c>Nats</c> configuration section every service reads.</summary>
public sealed record NatsOptions
{
    public const string Section = "Nats";

    public string Url { get; init; } = "nats://127.0.0.1:4222";

    /// <summary>Optional credentials: a user and password, or a token.</summary>
    public string? User { get; init; }
    public string? Password { get; init; }
    public string? Token { get; init; }

    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(5);
}
