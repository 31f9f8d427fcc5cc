using Microsoft.Extensions.Logging;

namespace QwenNats.Ingress.Routing;

public sealed partial class SessionRouter
{
    [LoggerMessage(EventId = 2110, Level = LogLevel.Warning, Message = "Reading the pin of a session failed; routing to live without it")]
    private static partial void LogPinUnreadable(ILogger logger, Exception? exception);

    [LoggerMessage(EventId = 2111, Level = LogLevel.Warning, Message = "Writing the pin of a session failed")]
    private static partial void LogPinNotWritten(ILogger logger, Exception exception);
}
