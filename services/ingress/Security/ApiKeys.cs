using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Threading.RateLimiting;
using Microsoft.Extensions.Options;
using QwenNats.Ingress.OpenAi;
using QwenNats.Messaging;

namespace QwenNats.Ingress.Security;

/// <summary>
/// Who a request is, for limits and logs: an API key's name, <c>operator</c> (the console's operator token) or
/// <c>anonymous</c>. <paramref name="Acquire"/> takes one request from the caller's bucket (null = unlimited); it
/// looks the bucket up on every call, so a WebSocket that outlives a pruned bucket takes from its successor.
/// <paramref name="MayChooseColour"/>: the operator, or a key with the <c>tester</c> scope.
/// </summary>
public sealed record Caller(string Name, Func<RateLimitLease>? Acquire, bool MayChooseColour = false)
{
    /// <summary>The caller the API-key filter identified for this request, if any.</summary>
    public static Caller? Of(HttpContext http) => http.Items.TryGetValue(ApiKeys.ItemKey, out var c) ? c as Caller : null;
}

/// <summary>
/// Checks API keys on the inference endpoints and applies each caller's token-bucket rate limit
/// (System.Threading.RateLimiting). Keys are compared by their SHA-256, so configuration may hold hashes
/// only and lookups do not leak by timing. A refused request gets an OpenAI-shaped 401 or 429 with
/// <c>Retry-After</c>. The console's operator token (<c>Console:OperatorToken</c>) is accepted in place of a key
/// and identifies the caller <c>operator</c>, who, like a key with the <c>tester</c> scope, may choose a colour.
/// </summary>
public sealed class ApiKeys : IDisposable
{
    /// <summary>The <see cref="HttpContext.Items"/> key of the request's <see cref="Caller"/> (an object, so no string can collide with it).</summary>
    public static readonly object ItemKey = new();
    private readonly SecurityOptions _o;
    private readonly Dictionary<string, ApiKeyOptions> _byHash = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, RateLimiter> _limiters = new(StringComparer.Ordinal);
    private readonly Lock _pruneLock = new();
    private readonly string? _operatorToken;

    public ApiKeys(IOptions<SecurityOptions> options, IOptions<OperatorConsole.ConsoleOptions> console)
    {
        _o = options.Value;
        _operatorToken = string.IsNullOrEmpty(console.Value.OperatorToken) ? null : console.Value.OperatorToken;
        foreach (var key in _o.ApiKeys)
        {
            foreach (var scope in key.Scopes)
            {
                if (!ApiScopes.All.Contains(scope, StringComparer.Ordinal))
                    throw new InvalidOperationException($"Security:ApiKeys entry '{key.Name}' has an unknown scope '{scope}'; known scopes: {string.Join(", ", ApiScopes.All)}.");
            }
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
        var token = Bearer(http);
        // Browsers cannot set headers on a WebSocket: they offer the key as a subprotocol (WebSocketProtocol).
        if (token is null && http.WebSockets.IsWebSocketRequest)
            token = http.WebSockets.WebSocketRequestedProtocols.FirstOrDefault(p => p.StartsWith(WebSocketProtocol.KeyPrefix, StringComparison.Ordinal))?[WebSocketProtocol.KeyPrefix.Length..];
        var isOperator = !string.IsNullOrEmpty(token) && _operatorToken is not null && OperatorConsole.ConsoleEndpoints.SameSecret(token, _operatorToken);
        if (!Required)
        {
            var name = isOperator ? "operator" : "anonymous";
            if (_o.AnonymousRequestsPerMinute <= 0)
                return (new Caller(name, null, isOperator), null);
            var address = http.Connection.RemoteIpAddress?.ToString() ?? "unknown";
            return (new Caller(name, Acquirer("ip:" + address, _o.AnonymousRequestsPerMinute, _o.AnonymousBurst), isOperator), null);
        }
        if (string.IsNullOrEmpty(token))
            return (null, new ApiError(401, "missing_api_key", "This endpoint needs an API key: send Authorization: Bearer <key>."));
        if (isOperator)
            return (new Caller("operator", Acquirer("operator", _o.DefaultRequestsPerMinute, _o.DefaultBurst), MayChooseColour: true), null);
        if (!_byHash.TryGetValue(Hash(token), out var key))
            return (null, new ApiError(401, "invalid_api_key", "The API key is not valid."));
        var rpm = key.RequestsPerMinute > 0 ? key.RequestsPerMinute : _o.DefaultRequestsPerMinute;
        var burst = key.Burst > 0 ? key.Burst : _o.DefaultBurst;
        return (new Caller(key.Name, Acquirer("key:" + key.Name, rpm, burst), key.Scopes.Contains(ApiScopes.Tester, StringComparer.Ordinal)), null);
    }

    /// <summary>The refusal of a colour chosen by a caller who may not choose one.</summary>
    public static ApiError ColourChoiceForbidden(Caller? caller) => new(403, "colour_choice_forbidden",
        $"Choosing the colour that answers (X-Qwen-Colour, ?colour=) is for testers, and '{caller?.Name ?? "anonymous"}' is not one: "
        + "send the operator token or an API key with the tester scope as Authorization: Bearer <token>, or leave the colour out to be served by the rollout.", Routing.RequestRouting.ColourHeader);

    /// <summary>Takes one request from the caller's bucket; the refusal carries the seconds to wait.</summary>
    public static (bool Allowed, int RetryAfterSeconds) Take(Caller caller)
    {
        if (caller.Acquire is null) return (true, 0);
        using var lease = caller.Acquire();
        if (lease.IsAcquired) return (true, 0);
        var retry = lease.TryGetMetadata(MetadataName.RetryAfter, out var after) ? (int)Math.Ceiling(after.TotalSeconds) : 1;
        return (false, Math.Max(1, retry));
    }

    public static ApiError RateLimited(Caller caller) =>
        new(429, "rate_limit_exceeded", $"Rate limit of '{caller.Name}' reached; retry after the time in Retry-After.");

    /// <summary>How many buckets are held (one per API key and per client address seen and not yet pruned).</summary>
    internal int TrackedLimiters => _limiters.Count;

    private Func<RateLimitLease> Acquirer(string partition, int perMinute, int burst)
    {
        Limiter(partition, perMinute, burst);
        return () =>
        {
            try
            {
                return Limiter(partition, perMinute, burst).AttemptAcquire();
            }
            catch (ObjectDisposedException)
            {
                // Pruned between the look-up and the take: its successor is a full bucket, as the pruned one was.
                return Limiter(partition, perMinute, burst).AttemptAcquire();
            }
        };
    }

    private RateLimiter Limiter(string partition, int perMinute, int burst)
    {
        if (_limiters.TryGetValue(partition, out var existing))
            return existing;
        if (_limiters.Count >= _o.MaxTrackedLimiters)
            PruneIdle();
        return _limiters.GetOrAdd(partition, _ => new TokenBucketRateLimiter(new TokenBucketRateLimiterOptions
        {
            TokenLimit = Math.Max(1, burst),
            TokensPerPeriod = 1,
            ReplenishmentPeriod = TimeSpan.FromMilliseconds(Math.Max(1, 60_000.0 / Math.Max(1, perMinute))),
            QueueLimit = 0,
            AutoReplenishment = true,
        }));
    }

    /// <summary>
    /// Drops the buckets that are full again (<see cref="RateLimiter.IdleDuration"/> set): a fresh bucket is
    /// full too, so forgetting them changes no answer, and the map holds only callers that are being limited.
    /// </summary>
    private void PruneIdle()
    {
        lock (_pruneLock)
        {
            if (_limiters.Count < _o.MaxTrackedLimiters) return;
            foreach (var (partition, limiter) in _limiters)
            {
                if (limiter.IdleDuration is not null && _limiters.TryRemove(new KeyValuePair<string, RateLimiter>(partition, limiter)))
                    limiter.Dispose();
            }
        }
    }

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

/// <summary>
/// The <c>/v1</c> and <c>/ws</c> groups' policy: the caller's API key (or the anonymous allowance), then its rate
/// limit (a WebSocket conversation is limited per turn, in the handler, not per connection). Refusals are
/// OpenAI-shaped 401 / 429 errors.
/// </summary>
public sealed class ApiKeyFilter(ApiKeys keys) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var (caller, error) = keys.Authenticate(http);
        if (caller is null)
        {
            http.Response.Headers.WWWAuthenticate = "Bearer";
            await JsonAnswers.WriteErrorAsync(http, error!);
            return Results.Empty;
        }
        http.Items[ApiKeys.ItemKey] = caller;
        if (!http.WebSockets.IsWebSocketRequest)
        {
            var (allowed, retryAfter) = ApiKeys.Take(caller);
            if (!allowed)
            {
                await JsonAnswers.WriteErrorAsync(http, ApiKeys.RateLimited(caller), retryAfter);
                return Results.Empty;
            }
        }
        return await next(context);
    }
}

public static class ApiKeyGroups
{
    /// <summary>Attaches the API key and rate-limit policy to every endpoint of the group.</summary>
    public static RouteGroupBuilder RequireApiKey(this RouteGroupBuilder group) => group.AddEndpointFilter<ApiKeyFilter>();
}
