namespace QwenNats.Ingress;

/// <summary>Source-generated log messages of the ingress's endpoints, mirror and console (event ids 2200-2299).</summary>
internal static partial class IngressLog
{
    [LoggerMessage(EventId = 2200, Level = LogLevel.Warning, Message = "Shadow sample of {RequestId} not recorded")]
    public static partial void SampleNotRecorded(ILogger logger, string requestId, Exception exception);

    [LoggerMessage(EventId = 2201, Level = LogLevel.Information, Message = "Console feed of {What} not available yet")]
    public static partial void ConsoleFeedUnavailable(ILogger logger, string what, Exception exception);

    [LoggerMessage(EventId = 2202, Level = LogLevel.Information, Message = "Console action {Verb} by {Actor}: {Outcome}")]
    public static partial void ConsoleAction(ILogger logger, string verb, string? actor, string? outcome);

    [LoggerMessage(EventId = 2205, Level = LogLevel.Debug, Message = "Console releases list: no promoter answered ({Why})")]
    public static partial void ConsoleReleasesUnavailable(ILogger logger, string why);

    [LoggerMessage(EventId = 2203, Level = LogLevel.Debug, Message = "WebSocket of session {SessionId} ended")]
    public static partial void WebSocketEnded(ILogger logger, string sessionId, Exception exception);

    [LoggerMessage(EventId = 2204, Level = LogLevel.Information, Message = "Turn {RequestId} failed: {Code}")]
    public static partial void TurnFailed(ILogger logger, string requestId, string code);
}
