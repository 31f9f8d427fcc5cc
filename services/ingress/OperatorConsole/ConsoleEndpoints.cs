using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Options;
using NATS.Client.Core;
using QwenNats.Messaging;
using QwenNats.Ingress.OpenAi;

namespace QwenNats.Ingress.OperatorConsole;

/// <summary>What the console page needs to know about this ingress before it draws itself.</summary>
public sealed record ConsoleConfig(string Ingress, bool OperatorActions, IReadOnlyList<string> Colours, IReadOnlyList<string> Actions);

/// <summary>
/// <c>GET /api/console/releases</c>: the promoter's <c>qwen.ctl.releases</c> answer cut down to what the releases panel
/// shows (the profile by its version only; fields without a value are left out).
/// </summary>
public sealed record ConsoleReleases(IReadOnlyList<ConsoleRelease> Releases, IReadOnlyList<ConsolePool> Pools);

/// <summary>A registered release and the colours it is assigned to; <c>drill</c> when its workers inject faults.</summary>
public sealed record ConsoleRelease(string Id, string ModelSha256, string? ModelName, long ModelSizeBytes, string Profile, string Notes, bool Drill,
    DateTimeOffset CreatedAt, string CreatedBy, IReadOnlyList<string> DeployedTo)
{
    public static ConsoleRelease From(ReleaseListing l) => new(l.Release.Id, l.Release.ModelSha256, l.Release.ModelName, l.Release.ModelSizeBytes,
        l.Release.Profile.Version, l.Release.Notes, l.Release.Faults is not null, l.Release.CreatedAt, l.Release.CreatedBy, l.DeployedTo);
}

/// <summary>A colour's pool: the release assigned to it, whether every worker serves it, and each worker's state.</summary>
public sealed record ConsolePool(string Colour, string? AssignedRelease, string? AssignedBy, DateTimeOffset? AssignedAt, bool Ready, string Why, bool Failed,
    IReadOnlyList<ConsolePoolWorker> Workers)
{
    public static ConsolePool From(PoolStatus p) => new(p.Colour, p.Assigned?.Release, p.Assigned?.Actor, p.Assigned?.At, p.Ready, p.Why, p.Failed,
        p.Workers.Select(w => new ConsolePoolWorker(w.WorkerId, w.Release, w.Serving, w.Loading, w.FailedRelease, w.Failure)).ToArray());
}

/// <summary>One worker of a pool: the release it serves (none: the model on its command line), loads, or failed to load.</summary>
public sealed record ConsolePoolWorker(string WorkerId, string? Release, bool Serving, string? Loading, string? FailedRelease, string? Failure);

/// <summary>
/// The web console: the page and its assets at <c>/</c> and <c>/console/*</c> (embedded in the ingress, no
/// CDN, no build step), a server-sent event stream at <c>/api/console/stream</c>, the releases and pools at
/// <c>/api/console/releases</c>, and operator actions at <c>POST /api/console/actions/{verb}</c>, which need the
/// operator token and a reason and are passed to the promoter as the matching <c>qwen.ctl.*</c> request.
/// </summary>
public static class ConsoleEndpoints
{
    /// <summary>The verbs the console may send; everything else stays with <c>qwen.ctl.*</c>.</summary>
    public static readonly IReadOnlyList<string> Actions =
        [Rollouts.Verbs.Start, Rollouts.Verbs.Promote, Rollouts.Verbs.Pause, Rollouts.Verbs.Resume, Rollouts.Verbs.Rollback, Rollouts.Verbs.Abort, Rollouts.Verbs.SetWeight,
         Rollouts.Verbs.Deploy, Rollouts.Verbs.Pin, Rollouts.Verbs.Unpin];

    /// <summary>Longest session id a pin action may name (as the ingress accepts session ids).</summary>
    public const int MaxSessionChars = 128;

    /// <summary>Longest release id a deploy action may name (release ids are KV keys of at most 64 characters).</summary>
    public const int MaxReleaseChars = 64;

    private static readonly Dictionary<string, string> Assets = new(StringComparer.Ordinal)
    {
        ["/"] = "index.html",
        ["/console/app.js"] = "app.js",
        ["/console/app.css"] = "app.css",
        ["/console/icon.svg"] = "icon.svg",
        // Browsers ask for /favicon.ico on their own; answer it rather than log a 404 in the console.
        ["/favicon.ico"] = "icon.svg",
    };

    public static IEndpointRouteBuilder MapConsole(this IEndpointRouteBuilder app)
    {
        foreach (var (route, file) in Assets)
            app.MapGet(route, (HttpContext http) => ServeAssetAsync(http, file));
        app.MapGet("/api/console/config", (IInferenceClient client, IOptions<ConsoleOptions> options, IOptions<IngressOptions> ingress) =>
            TypedResults.Json(new ConsoleConfig(client.InstanceId, !string.IsNullOrEmpty(options.Value.OperatorToken), ingress.Value.Colours, Actions),
                ConsoleJson.Default.ConsoleConfig));
        app.MapGet("/api/console/stream", StreamAsync);
        app.MapGet("/api/console/releases", ReleasesAsync);
        app.MapPost("/api/console/actions/{verb}", ActAsync);
        return app;
    }

    private static async Task ServeAssetAsync(HttpContext http, string file)
    {
        await using var stream = typeof(ConsoleEndpoints).Assembly.GetManifestResourceStream($"console/{file}");
        if (stream is null)
        {
            await JsonAnswers.WriteErrorAsync(http, new ApiError(404, "not_found", $"The console asset {file} is missing from this build."));
            return;
        }
        http.Response.ContentType = Path.GetExtension(file) switch
        {
            ".html" => "text/html; charset=utf-8",
            ".js" => "text/javascript; charset=utf-8",
            ".css" => "text/css; charset=utf-8",
            ".svg" => "image/svg+xml",
            _ => "application/octet-stream",
        };
        http.Response.Headers.CacheControl = "no-cache";
        http.Response.Headers.XContentTypeOptions = "nosniff";
        http.Response.Headers["Referrer-Policy"] = "no-referrer";
        http.Response.Headers.ContentSecurityPolicy = "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
        await stream.CopyToAsync(http.Response.Body, http.RequestAborted);
    }

    private static async Task StreamAsync(HttpContext http, ConsoleHub hub)
    {
        http.Response.ContentType = "text/event-stream";
        http.Response.Headers.CacheControl = "no-cache";
        http.Response.Headers["X-Accel-Buffering"] = "no";
        // Ends with the client or with the ingress's shutdown: an open console must not hold the graceful stop (and the
        // answers still finishing in it) until the host's shutdown timeout.
        using var either = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted,
            http.RequestServices.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping);
        var ct = either.Token;
        var feed = hub.Subscribe(ct);
        try
        {
            await http.Response.WriteAsync(": console feed\n\n", ct);
            await http.Response.Body.FlushAsync(ct);
            await foreach (var m in feed.ReadAllAsync(ct))
            {
                await http.Response.WriteAsync($"event: {m.Event}\ndata: {m.Data}\n\n", ct);
                await http.Response.Body.FlushAsync(ct);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// The releases panel's data: asks the promoter (<c>qwen.ctl.releases</c>, over the operator bus like the actions) for
    /// the registered releases and each colour's pool. Read-only, like the stream; 503 when no promoter answers.
    /// </summary>
    private static async Task ReleasesAsync(HttpContext http, OperatorBus bus, IOptions<ConsoleOptions> options, ILoggerFactory loggers)
    {
        ControlReply reply;
        try
        {
            reply = await bus.Control.SendAsync(Rollouts.Verbs.Releases, new ControlRequest(), options.Value.ActionTimeout, http.RequestAborted);
        }
        catch (Exception e) when (e is NatsNoRespondersException or NatsNoReplyException or NatsException)
        {
            IngressLog.ConsoleReleasesUnavailable(loggers.CreateLogger("QwenNats.Ingress.OperatorConsole"), e.Message);
            await JsonAnswers.WriteErrorAsync(http, new ApiError(503, "promoter_unavailable", $"No promoter answered qwen.ctl.{Rollouts.Verbs.Releases}: {e.Message}"));
            return;
        }
        if (!reply.Ok)
        {
            await JsonAnswers.WriteErrorAsync(http, new ApiError(502, reply.Code ?? "promoter_error", reply.Error ?? "The promoter could not list the releases."));
            return;
        }
        await JsonAnswers.WriteAsync(http, 200, new ConsoleReleases(
            (reply.Releases ?? []).Select(ConsoleRelease.From).ToArray(),
            (reply.Pools ?? []).Select(ConsolePool.From).ToArray()), ConsoleJson.Default.ConsoleReleases);
    }

    private static async Task ActAsync(HttpContext http, string verb, OperatorBus bus, IOptions<ConsoleOptions> options, IOptions<IngressOptions> ingress,
        Routing.SessionPins pins, ILoggerFactory loggers)
    {
        var o = options.Value;
        if (!Actions.Contains(verb, StringComparer.Ordinal))
        {
            await JsonAnswers.WriteErrorAsync(http, new ApiError(404, "unknown_action", $"'{verb}' is not a console action; use one of {string.Join(", ", Actions)}."));
            return;
        }
        if (string.IsNullOrEmpty(o.OperatorToken))
        {
            await JsonAnswers.WriteErrorAsync(http, new ApiError(403, "console_read_only", "This console is read-only: no operator token is configured (Console:OperatorToken)."));
            return;
        }
        var given = OperatorToken(http);
        if (given is null)
        {
            await JsonAnswers.WriteErrorAsync(http, new ApiError(401, "operator_token_required", "Operator actions need the operator token (Authorization: Bearer <token>)."));
            return;
        }
        if (!SameSecret(given, o.OperatorToken))
        {
            await JsonAnswers.WriteErrorAsync(http, new ApiError(401, "invalid_operator_token", "The operator token is not valid."));
            return;
        }
        var (doc, readError) = await JsonBodyReader.ReadAsync(http, 16_384);
        if (doc is null)
        {
            await JsonAnswers.WriteErrorAsync(http, readError!);
            return;
        }
        ControlRequest request;
        using (doc)
        {
            if (!TryParseAction(doc.RootElement, verb, o, ingress.Value.Colours, out request, out var error))
            {
                await JsonAnswers.WriteErrorAsync(http, error!);
                return;
            }
        }
        ControlReply reply;
        try
        {
            reply = await bus.Control.SendAsync(verb, request, o.ActionTimeout, http.RequestAborted);
        }
        catch (Exception e) when (e is NatsNoRespondersException or NatsNoReplyException or NatsException)
        {
            await JsonAnswers.WriteErrorAsync(http, new ApiError(503, "promoter_unavailable", $"No promoter answered qwen.ctl.{verb}: {e.Message}"));
            return;
        }
        IngressLog.ConsoleAction(loggers.CreateLogger("QwenNats.Ingress.OperatorConsole"), verb, request.Actor, reply.Ok ? "ok" : reply.Code);
        if (!reply.Ok)
        {
            await JsonAnswers.WriteErrorAsync(http, new ApiError(409, reply.Code ?? "refused", reply.Error ?? "The promoter refused the action."));
            return;
        }
        // A pin changed through this ingress applies here before the console hears of it (elsewhere: when the watch brings it).
        if (request.Session is { } pinned)
            pins.Invalidate(SessionKeys.For(pinned));
        await JsonAnswers.WriteAsync(http, 200, reply, QwenJsonContext.Default.ControlReply);
    }

    /// <summary>
    /// Validates an action body: a reason is required; start may name a candidate, set-weight needs a weight, deploy
    /// needs a <c>colour</c> (one of <paramref name="colours"/>) and a <c>release</c> id.
    /// </summary>
    public static bool TryParseAction(JsonElement root, string verb, ConsoleOptions options, IReadOnlyList<string> colours, out ControlRequest request, out ApiError? error)
    {
        request = null!;
        error = null;
        if (root.ValueKind != JsonValueKind.Object)
        {
            error = ApiError.Invalid("The body must be a JSON object with a 'reason'.");
            return false;
        }
        var reason = root.TryGetProperty("reason", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString()!.Trim() : "";
        if (reason.Length == 0)
        {
            error = new ApiError(400, "reason_required", "Every operator action needs a reason; it is written to the audit log.", "reason");
            return false;
        }
        if (reason.Length > options.MaxReasonChars || reason.Any(char.IsControl))
        {
            error = ApiError.Invalid($"The reason must be at most {options.MaxReasonChars} characters without control characters.", "reason");
            return false;
        }
        string? candidate = null;
        if (root.TryGetProperty("candidate", out var c) && c.ValueKind != JsonValueKind.Null)
        {
            if (c.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(c.GetString()))
            {
                error = ApiError.Invalid("'candidate' must be a colour name.", "candidate");
                return false;
            }
            candidate = c.GetString();
        }
        int? weight = null;
        if (root.TryGetProperty("weight", out var w) && w.ValueKind != JsonValueKind.Null)
        {
            if (w.ValueKind != JsonValueKind.Number || !w.TryGetInt32(out var value))
            {
                error = ApiError.Invalid("'weight' must be an integer percent.", "weight");
                return false;
            }
            weight = value;
        }
        if (verb == Rollouts.Verbs.SetWeight && weight is null)
        {
            error = ApiError.Invalid("set-weight needs a 'weight'.", "weight");
            return false;
        }
        string? colour = null, release = null;
        if (verb == Rollouts.Verbs.Deploy)
        {
            colour = root.TryGetProperty("colour", out var k) && k.ValueKind == JsonValueKind.String ? k.GetString()!.Trim() : "";
            if (!colours.Contains(colour, StringComparer.Ordinal))
            {
                error = ApiError.Invalid($"deploy needs a 'colour', one of: {string.Join(", ", colours)}.", "colour");
                return false;
            }
            release = root.TryGetProperty("release", out var id) && id.ValueKind == JsonValueKind.String ? id.GetString()!.Trim() : "";
            if (release.Length == 0 || release.Length > MaxReleaseChars || release.Any(char.IsControl))
            {
                error = ApiError.Invalid($"deploy needs a 'release': a registered release id of at most {MaxReleaseChars} characters.", "release");
                return false;
            }
        }
        string? session = null;
        if (verb is Rollouts.Verbs.Pin or Rollouts.Verbs.Unpin)
        {
            // A tester's switch: the console's own session to a colour (the candidate) and back, audited by the promoter.
            session = root.TryGetProperty("session", out var sid) && sid.ValueKind == JsonValueKind.String ? sid.GetString()!.Trim() : "";
            if (session.Length == 0 || session.Length > MaxSessionChars || session.Any(char.IsControl))
            {
                error = ApiError.Invalid($"{verb} needs a 'session' of at most {MaxSessionChars} characters.", "session");
                return false;
            }
            if (verb == Rollouts.Verbs.Pin)
            {
                colour = root.TryGetProperty("colour", out var pc) && pc.ValueKind == JsonValueKind.String ? pc.GetString()!.Trim() : "";
                if (!colours.Contains(colour, StringComparer.Ordinal))
                {
                    error = ApiError.Invalid($"pin needs a 'colour', one of: {string.Join(", ", colours)}.", "colour");
                    return false;
                }
            }
        }
        var full = root.TryGetProperty("full", out var f) && f.ValueKind == JsonValueKind.True;
        request = new ControlRequest
        {
            Reason = reason, Actor = options.Actor, Candidate = candidate, Weight = weight, Full = full ? true : null, Colour = colour, Release = release,
            Session = session,
        };
        return true;
    }

    private static string? OperatorToken(HttpContext http)
    {
        var header = http.Request.Headers.Authorization.ToString();
        if (header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            var token = header["Bearer ".Length..].Trim();
            return token.Length > 0 ? token : null;
        }
        return null;
    }

    /// <summary>Compares secrets in constant time (hashes first, so lengths do not leak either).</summary>
    public static bool SameSecret(string given, string expected) =>
        CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(given)), SHA256.HashData(Encoding.UTF8.GetBytes(expected)));
}

/// <summary>The connection console actions travel on: the operator's own NATS user when configured.</summary>
public sealed class OperatorBus : IAsyncDisposable
{
    private readonly NatsConnection? _own;

    public OperatorBus(NatsConnection ingress, IOptions<ConsoleOptions> console, IOptions<QwenNats.Messaging.NatsOptions> nats, ILoggerFactory loggers)
    {
        var o = console.Value;
        if (string.IsNullOrEmpty(o.NatsUser))
        {
            Connection = ingress;
            return;
        }
        _own = new NatsConnection(QwenNats.Messaging.QwenConnection.Options(nats.Value.Url, "console-operator", o.NatsUser, o.NatsPassword, loggers: loggers));
        Connection = _own;
    }

    public NatsConnection Connection { get; }

    /// <summary>The operator API client on <see cref="Connection"/>.</summary>
    public QwenNats.Messaging.Control.ControlClient Control => _control ??= new(Connection);

    private QwenNats.Messaging.Control.ControlClient? _control;

    public ValueTask DisposeAsync() => _own?.DisposeAsync() ?? ValueTask.CompletedTask;
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ConsoleTick))]
[JsonSerializable(typeof(ConsoleConfig))]
[JsonSerializable(typeof(ConsoleReleases))]
internal sealed partial class ConsoleJson : JsonSerializerContext;
