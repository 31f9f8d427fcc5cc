using Microsoft.Extensions.Options;
using QwenNats.Ingress.OpenAi;

namespace QwenNats.Ingress.Routing;

/// <summary>Where one request goes: its colour and session.</summary>
public sealed record RouteResult(string Colour, string Session, RouteReason Reason);

public sealed partial class RequestRouting(IOptions<IngressOptions> options, RolloutView view, SessionRouter router, AccessAudit audit, ILogger<RequestRouting> logger)
{
    public const string ColourHeader = "X-Qwen-Colour";
    public const string ProfileHeader = "X-Qwen-Profile";
    public const string WorkerHeader = "X-Qwen-Worker";
    /// <summary>The release that answered (absent for a worker serving a model from its command line).</summary>
    public const string ReleaseHeader = "X-Qwen-Release";
    /// <summary>Response: the oldest messages left out because the conversation did not fit the context.</summary>
    public const string TrimmedHeader = "X-Qwen-Trimmed-Messages";
    public const string SessionHeader = "X-Session-Id";
    public const string RequestIdHeader = "X-Request-Id";
    public const string RouteHeader = "X-Qwen-Route";
    public const string SessionCookie = "qwen_sid";
    private const int MaxSessionIdLength = 128;

    /// <summary>The colour serving live traffic.</summary>
    public string LiveColour => view.Current.Live;

    /// <summary>
    /// The colour for this request: a tester's explicit colour when one is named (the operator token or an API key
    /// with the tester scope; 403 <c>colour_choice_forbidden</c> for anyone else; validated, no pin change, logged and
    /// recorded in the audit log by <see cref="AccessAudit"/>),
    /// otherwise the session's pinned colour or a new pin from the rollout state.
    /// </summary>
    /// <param name="userParam">What <paramref name="user"/> is called where the client sent it (the body's <c>user</c>, a
    /// WebSocket's <c>session</c> query parameter), for the error about one too long.</param>
    public async Task<(RouteResult? Route, ApiError? Error)> RouteAsync(HttpContext http, string? user, string? requested, string userParam = "user")
    {
        // A session id too long to use is refused, not ignored: ignored, every request of the conversation would get a
        // new session, and a canary would move its turns between colours.
        if (TooLong(http.Request.Headers[SessionHeader].FirstOrDefault()))
            return (null, ApiError.Invalid($"{SessionHeader} is longer than {MaxSessionIdLength} characters.", SessionHeader));
        if (TooLong(user))
            return (null, ApiError.Invalid($"'{userParam}' (the session id) is longer than {MaxSessionIdLength} characters.", userParam));
        var caller = Security.Caller.Of(http);
        if (!string.IsNullOrEmpty(requested) && caller is not { MayChooseColour: true })
        {
            ColourRefused(logger, caller?.Name ?? "anonymous", http.Request.Path.Value ?? "");
            return (null, Security.ApiKeys.ColourChoiceForbidden(caller));
        }
        if (!TryResolveColour(requested, out var colour, out var error))
            return (null, error);
        var session = ResolveSession(http, user, out var isNew);
        if (!string.IsNullOrEmpty(requested))
        {
            ColourOverride(logger, caller!.Name, colour, LiveColour, session, http.Request.Path.Value ?? "");
            audit.ColourChosen(caller.Name, colour, session, http.Request.Path.Value ?? "");
            return (new RouteResult(colour, session, RouteReason.Explicit), null);
        }
        var (decision, pinWrite) = await router.RouteAsync(session, isNew, http.RequestAborted);
        if (!http.Response.HasStarted)
        {
            http.Response.Headers[RouteHeader] = decision.Reason.ToString();
            // The pin is written while the request runs (started by StartPinWrite once the work is published); the
            // answer, and with it the session cookie, waits for it.
            if (pinWrite != PinWrite.None)
            {
                http.Features.Set(pinWrite);
                http.Response.OnStarting(static write => ((PinWrite)write).Start(), pinWrite);
            }
        }
        return (new RouteResult(decision.Colour, session, decision.Reason), null);
    }

    /// <summary>Starts writing the request's session pin, if it has one to write: called once its work is published, so the
    /// write does not queue in front of the work.</summary>
    public static void StartPinWrite(HttpContext http) => http.Features.Get<PinWrite>()?.Start();

    /// <summary>An explicit colour (operators' testing) or the live colour.</summary>
    public bool TryResolveColour(string? requested, out string colour, out ApiError? error)
    {
        error = null;
        colour = LiveColour;
        if (string.IsNullOrEmpty(requested))
            return true;
        var wanted = requested.Trim().ToLowerInvariant();
        if (!options.Value.Colours.Contains(wanted, StringComparer.Ordinal))
        {
            error = ApiError.Invalid($"Unknown colour '{Shorten(requested)}'; known colours: {string.Join(", ", options.Value.Colours)}.", ColourHeader);
            return false;
        }
        colour = wanted;
        return true;
    }

    /// <summary>The session: header, cookie or OpenAI <c>user</c>; a new id (set as a cookie) when there is none, which
    /// carries the rollout state version it is routed under (<see cref="MadeSessionId"/>, <see cref="SessionRouter.NewSessionId"/>).</summary>
    public string ResolveSession(HttpContext http, string? user) => ResolveSession(http, user, out _);

    /// <param name="isNew">Whether the id was made up here (the request named no session).</param>
    public string ResolveSession(HttpContext http, string? user, out bool isNew)
    {
        string? id = http.Request.Headers[SessionHeader].FirstOrDefault();
        if (!IsUsable(id)) id = http.Request.Cookies[SessionCookie];
        if (!IsUsable(id)) id = user;
        isNew = !IsUsable(id);
        if (!isNew)
            return id!;
        id = router.NewSessionId();
        if (!http.Response.HasStarted)
            http.Response.Cookies.Append(SessionCookie, id, new CookieOptions { HttpOnly = true, SameSite = SameSiteMode.Lax, Path = "/" });
        return id;
    }

    private static bool IsUsable(string? id) => !string.IsNullOrWhiteSpace(id) && id.Length <= MaxSessionIdLength;

    private static bool TooLong(string? id) => id is { Length: > MaxSessionIdLength } && !string.IsNullOrWhiteSpace(id);

    private static string Shorten(string s) => s.Length <= 32 ? s : s[..32] + "…";

    [LoggerMessage(EventId = 1150, Level = LogLevel.Information, Message = "Colour override: {Caller} chose {Colour} (live {Live}) for session {Session} on {Path}")]
    private static partial void ColourOverride(ILogger logger, string caller, string colour, string live, string session, string path);

    [LoggerMessage(EventId = 1151, Level = LogLevel.Warning, Message = "Colour choice refused: {Caller} may not choose a colour ({Path})")]
    private static partial void ColourRefused(ILogger logger, string caller, string path);
}
