namespace QwenNats.Ingress.Security;

/// <summary>One client's API key and its rate limit.</summary>
public sealed record ApiKeyOptions
{
    /// <summary>Shown in logs and metrics instead of the key.</summary>
    public string Name { get; init; } = "";

    /// <summary>The key itself (prefer <see cref="KeySha256"/>, so configuration holds no secret).</summary>
    public string? Key { get; init; }

    /// <summary>Lower-case hex SHA-256 of the key (<c>printf %s "$KEY" | sha256sum</c>).</summary>
    public string? KeySha256 { get; init; }

    /// <summary>Sustained requests per minute (0 = the default limit).</summary>
    public int RequestsPerMinute { get; init; }

    /// <summary>Requests allowed at once above the sustained rate (0 = the default burst).</summary>
    public int Burst { get; init; }

    /// <summary>
    /// What the key may do beyond inference on the live rollout. <c>tester</c>: choose the colour that answers
    /// (<c>X-Qwen-Colour</c>, WebSocket <c>?colour=</c>), bypassing session pins and the rollout.
    /// </summary>
    public IReadOnlyList<string> Scopes { get; init; } = [];
}

/// <summary>The scopes an API key may have (<see cref="ApiKeyOptions.Scopes"/>).</summary>
public static class ApiScopes
{
    /// <summary>May choose the colour that answers a request.</summary>
    public const string Tester = "tester";

    public static IReadOnlyList<string> All { get; } = [Tester];
}

/// <summary>
/// The <c>Security</c> section of the ingress: optional API keys for <c>/v1/*</c> and <c>/ws/chat</c>,
/// and rate limits per key (or per client address when no keys are configured).
/// </summary>
public sealed record SecurityOptions
{
    public const string Section = "Security";

    /// <summary>When any is configured, <c>/v1/*</c> and <c>/ws/chat</c> need <c>Authorization: Bearer &lt;key&gt;</c>.</summary>
    public IReadOnlyList<ApiKeyOptions> ApiKeys { get; init; } = [];

    /// <summary>Limit of a key that names none.</summary>
    public int DefaultRequestsPerMinute { get; init; } = 600;

    public int DefaultBurst { get; init; } = 20;

    /// <summary>Without API keys: requests per minute per client address (0 = unlimited).</summary>
    public int AnonymousRequestsPerMinute { get; init; }

    public int AnonymousBurst { get; init; } = 20;

    /// <summary>
    /// Rate-limit buckets held before the full (idle) ones are dropped, so addresses seen once do not
    /// accumulate; a bucket that is limiting someone is never dropped.
    /// </summary>
    public int MaxTrackedLimiters { get; init; } = 10_000;
}
