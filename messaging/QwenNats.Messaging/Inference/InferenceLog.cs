using Microsoft.Extensions.Logging;

namespace QwenNats.Messaging.Internal;

/// <summary>Log events of the inference client and registry: ids 1200-1299.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1200, Level = LogLevel.Information, Message = "Client {Instance} receiving replies on {Subject}")]
    public static partial void ReceivingReplies(ILogger logger, string instance, string subject);

    [LoggerMessage(EventId = 1201, Level = LogLevel.Warning, Message = "Reply subscription not ready; retrying")]
    public static partial void ReplySubscriptionFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1202, Level = LogLevel.Warning, Message = "Publishing request {RequestId} failed")]
    public static partial void PublishFailed(ILogger logger, string requestId, Exception exception);

    [LoggerMessage(EventId = 1203, Level = LogLevel.Debug, Message = "Cancel for {RequestId} not sent")]
    public static partial void CancelNotSent(ILogger logger, string requestId, Exception exception);

    [LoggerMessage(EventId = 1210, Level = LogLevel.Information, Message = "Worker {WorkerId} joined the {Colour} pool (model {Model}, profile {Profile}, {Slots} slots)")]
    public static partial void WorkerJoined(ILogger logger, string workerId, string colour, string model, string profile, int slots);

    [LoggerMessage(EventId = 1211, Level = LogLevel.Information, Message = "Worker {WorkerId} ({Colour}) left")]
    public static partial void WorkerLeft(ILogger logger, string workerId, string colour);

    [LoggerMessage(EventId = 1212, Level = LogLevel.Warning, Message = "Worker {WorkerId} ({Colour}) stopped sending heartbeats; forgotten")]
    public static partial void WorkerForgotten(ILogger logger, string workerId, string colour);

    [LoggerMessage(EventId = 1213, Level = LogLevel.Warning, Message = "Heartbeat subscription failed; resubscribing")]
    public static partial void HeartbeatSubscriptionFailed(ILogger logger, Exception exception);
}
