using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Threading.RateLimiting;
using Microsoft.Extensions.Options;
using QwenNats.Ingress.OpenAi;

namespace QwenNats.Ingress.Security;

/// <summary>Who a request is, for limits and logs: an API key's name or <c>anonymous</c>.</summary>
public sealed record Caller(string Name, RateLimiter? Limiter);

/// <summary>
/// Checks API keys on the inference endpoints and applies each caller's token-bucket rate limit
/// (System.Threading.RateLimiting). Keys are compared by their SHA-256, so configuration may hold hashes
/// only and lookups do not leak by timing. A refused request gets an OpenAI-shaped 401 or 429 with
/// <c>Retry-After</c>.
/// </summary>
public sealed class ApiKeys : IDisposable
{
    public const string ItemKey = "qwen.caller";
    public const string KeyProtocolPrefix = "qwen.key.";
    public const string Protocol = "qwen";
    private readonly SecurityOptions _o;
    private readonly Dictionary<string, ApiKeyOptions> _byHash = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, RateLimiter> _limiters = new(StringComparer.Ordinal);

    public ApiKeys(IOptions<SecurityOptions> options)
    {
        _o = options.Value;
        foreach (var key in _o.ApiKeys)
        {
            var hash = key.KeySha256?.Trim().ToLowerInvariant() ?? (string.IsNullOrEmpty(key.Key) ? null : Hash(key.Key));
            if (hash is null || hash.Length != 64)
                throw new InvalidOperationException($"Security:ApiKeys entry '{key.Name}' needs a Key or a 64-character KeySha256.");
            if (string.IsNullOrWhiteSpace(key.Name))
                throw new InvalidOperationException("Every Security:ApiKeys entry needs a Name (used in logs instead of the key).");
            _byHash[hash] = key;
        }
    }

    public bool Required => _byHash.Count > 0;

    public static string Hash(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    /// <summary>Paths that carry inference and therefore keys and limits.</summary>
    public static bool Guards(PathString path) =>
        path.StartsWithSegments("/v1", StringComparison.OrdinalIgnoreCase) || path.StartsWithSegments("/ws", StringComparison.OrdinalIgnoreCase);

    /// <summary>Identifies the caller, or says why not.</summary>
    public (Caller? Caller, ApiError? Error) Authenticate(HttpContext http)
    {
        if (!Required)
        {
            if (_o.AnonymousRequestsPerMinute <= 0)
                return (new Caller("anonymous", null), null);
            var address = http.Connection.RemoteIpAddress?.ToString() ?? "unknown";
            return (new Caller("anonymous", Limiter("ip:" + address, _o.AnonymousRequestsPerMinute, _o.AnonymousBurst)), null);
        }
        var token = Bearer(http);
        // Browsers cannot set headers on a WebSocket: they offer the key as a subprotocol
        // (new WebSocket(url, ["qwen", "qwen.key.<key>"])), which keeps it out of URLs and access logs.
        if (token is null && http.WebSockets.IsWebSocketRequest)
            token = http.WebSockets.WebSocketRequestedProtocols.FirstOrDefault(p => p.StartsWith(KeyProtocolPrefix, StringComparison.Ordinal))?[KeyProtocolPrefix.Length..];
        if (string.IsNullOrEmpty(token))
            return (null, new ApiError(401, "missing_api_key", "This endpoint needs an API key: send Authorization: Bearer <key>."));
        if (!_byHash.TryGetValue(Hash(token), out var key))
            return (null, new ApiError(401, "invalid_api_key", "The API key is not valid."));
        var rpm = key.RequestsPerMinute > 0 ? key.RequestsPerMinute : _o.DefaultRequestsPerMinute;
        var burst = key.Burst > 0 ? key.Burst : _o.DefaultBurst;
        return (new Caller(key.Name, Limiter("key:" + key.Name, rpm, burst)), null);
    }

    /// <summary>Takes one request from the caller's bucket; the refusal carries the seconds to wait.</summary>
    public static (bool Allowed, int RetryAfterSeconds) Take(Caller caller)
    {
        if (caller.Limiter is null) return (true, 0);
        using var lease = caller.Limiter.AttemptAcquire();
        if (lease.IsAcquired) return (true, 0);
        var retry = lease.TryGetMetadata(MetadataName.RetryAfter, out var after) ? (int)Math.Ceiling(after.TotalSeconds) : 1;
        return (false, Math.Max(1, retry));
    }

    public static ApiError RateLimited(Caller caller) =>
        new(429, "rate_limit_exceeded", $"Rate limit of '{caller.Name}' reached; retry after the time in Retry-After.");

    private RateLimiter Limiter(string partition, int perMinute, int burst) =>
        _limiters.GetOrAdd(partition, _ => new TokenBucketRateLimiter(new TokenBucketRateLimiterOptions
        {
            TokenLimit = Math.Max(1, burst),
            TokensPerPeriod = 1,
            ReplenishmentPeriod = TimeSpan.FromMilliseconds(Math.Max(1, 60_000.0 / Math.Max(1, perMinute))),
            QueueLimit = 0,
            AutoReplenishment = true,
        }));

    private static string? Bearer(HttpContext http)
    {
        var header = http.Request.Headers.Authorization.ToString();
        return header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header["Bearer ".Length..].Trim() : null;
    }

    public void Dispose()
    {
        foreach (var l in _limiters.Values) l.Dispose();
    }
}

/// <summary>Applies <see cref="ApiKeys"/> to <c>/v1/*</c> and <c>/ws/*</c>.</summary>
public sealed class ApiKeyMiddleware(RequestDelegate next, ApiKeys keys)
{
    public async Task InvokeAsync(HttpContext http)
    {
        if (!ApiKeys.Guards(http.Request.Path))
        {
            await next(http);
            return;
        }
        var (caller, error) = keys.Authenticate(http);
        if (caller is null)
        {
            http.Response.Headers.WWWAuthenticate = "Bearer";
            await HttpJson.WriteErrorAsync(http, error!);
            return;
        }
        http.Items[ApiKeys.ItemKey] = caller;
        // A WebSocket conversation is limited per turn (in the handler), not per connection.
        if (!http.WebSockets.IsWebSocketRequest)
        {
            var (allowed, retryAfter) = ApiKeys.Take(caller);
            if (!allowed)
            {
                await HttpJson.WriteErrorAsync(http, ApiKeys.RateLimited(caller), retryAfter);
                return;
            }
        }
        await next(http);
    }
}
