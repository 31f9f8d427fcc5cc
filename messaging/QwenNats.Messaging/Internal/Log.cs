using Microsoft.Extensions.Logging;

namespace QwenNats.Messaging.Internal;

/// <summary>Source-generated log messages of the messaging library. Event ids 1000-1999 belong to it.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1000, Level = LogLevel.Warning, Message = "{What} failed (attempt {Attempt}); retrying in {DelayMs:F0} ms")]
    public static partial void RetryingAfterFailure(ILogger logger, string what, int attempt, double delayMs, Exception? exception);
}
