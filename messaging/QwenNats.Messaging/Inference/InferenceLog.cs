using Microsoft.Extensions.Logging;

namespace QwenNats.Messaging.Internal;

/// <summary>Log events of the inference client and registry: ids 1200-1299.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1200, Level = LogLevel.Information, Message = "Client {Instance} receiving replies on {Subject}")]
    public static partial void ReceivingReplies(ILogger logger, string instance, string subject);

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

}

internal static partial class Log
{
    [LoggerMessage(EventId = 1230, Level = LogLevel.Information, Message = "Worker {WorkerId} serving {Subject} with {Slots} slots")]
    public static partial void Serving(ILogger logger, string workerId, string subject, int slots);

    [LoggerMessage(EventId = 1231, Level = LogLevel.Warning, Message = "Fetching work failed; retrying")]
    public static partial void FetchFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1232, Level = LogLevel.Debug, Message = "Fetching shadow work failed")]
    public static partial void ShadowFetchFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1233, Level = LogLevel.Error, Message = "Unexpected failure handling a message; leaving it unacked for redelivery")]
    public static partial void HandlerFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1234, Level = LogLevel.Warning, Message = "Dropping an undecodable work message")]
    public static partial void Undecodable(ILogger logger, Exception? exception);

    [LoggerMessage(EventId = 1235, Level = LogLevel.Information, Message = "Skipping request whose deadline passed while queued ({QueueMs} ms)")]
    public static partial void SkippingExpired(ILogger logger, double queueMs);

    [LoggerMessage(EventId = 1236, Level = LogLevel.Information, Message = "Taking over a request another worker did not finish (attempt {Attempt})")]
    public static partial void TakingOver(ILogger logger, int attempt);

    [LoggerMessage(EventId = 1237, Level = LogLevel.Warning, Message = "Progress ack failed; trying again on the next tick")]
    public static partial void ProgressAckFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1238, Level = LogLevel.Debug, Message = "Heartbeat not sent")]
    public static partial void HeartbeatNotSent(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1239, Level = LogLevel.Information, Message = "Cancelling request {RequestId} at the client's request")]
    public static partial void Cancelling(ILogger logger, string requestId);

    [LoggerMessage(EventId = 1240, Level = LogLevel.Information, Message = "Draining {Count} requests in flight")]
    public static partial void Draining(ILogger logger, int count);

    [LoggerMessage(EventId = 1250, Level = LogLevel.Warning, Message = "A reply on {Subject} could not be decoded; dropped")]
    public static partial void ReplyUndecodable(ILogger logger, string subject, Exception exception);

    [LoggerMessage(EventId = 1260, Level = LogLevel.Warning, Message = "Live load of this machine on {Subject} not readable; listening again")]
    public static partial void HostLoadUnreadable(ILogger logger, string subject, Exception exception);

    [LoggerMessage(EventId = 1261, Level = LogLevel.Debug, Message = "Mirrored work {State}")]
    public static partial void MirrorsGate(ILogger logger, string state);

    [LoggerMessage(EventId = 1262, Level = LogLevel.Debug, Message = "Live load not sent")]
    public static partial void HostLoadNotSent(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1263, Level = LogLevel.Error, Message = "A listener for mirrored work being allowed again failed")]
    public static partial void OpenedListenerFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1264, Level = LogLevel.Information, Message = "Request {RequestId} was cancelled by its client while queued; dropped unrun")]
    public static partial void SkippingCancelled(ILogger logger, string requestId);

    [LoggerMessage(EventId = 1265, Level = LogLevel.Information, Message = "Request {RequestId} arrived as the worker stopped taking work (a release switch): given back to the queue for another worker")]
    public static partial void GaveBack(ILogger logger, string requestId);

    [LoggerMessage(EventId = 1241, Level = LogLevel.Warning, Message = "The direct offer subscription failed; subscribing again")]
    public static partial void DirectFailed(ILogger logger, Exception e);

    [LoggerMessage(EventId = 1242, Level = LogLevel.Debug, Message = "Could not answer a direct offer")]
    public static partial void DirectAnswerFailed(ILogger logger, Exception e);

    [LoggerMessage(EventId = 1243, Level = LogLevel.Information, Message = "Request {RequestId} offered directly was not accepted in time; queued in JetStream")]
    public static partial void DirectTimedOut(ILogger logger, string requestId);

    [LoggerMessage(EventId = 1244, Level = LogLevel.Warning, Message = "Worker {WorkerId} went away before answering request {RequestId}, which it had taken directly; queued in JetStream")]
    public static partial void DirectRequeued(ILogger logger, string workerId, string requestId);
}
