using QwenNats.Messaging;

namespace QwenNats.Ingress;

/// <summary>
/// What the ingress does around each live inference call: the request metrics and one log line per request
/// (never the user's text), with the request id for following it across services.
/// </summary>
public sealed partial class IngressInferenceObserver(IngressMetrics metrics, ILogger<IngressInferenceObserver> logger) : IInferenceObserver
{
    public void Refused(string colour, InferRequest draft, InferenceStart refusal) => metrics.Refused(colour, draft.Task, refusal.Status);

    public void Finished(InferenceCall call, InferReply final, TimeSpan elapsed)
    {
        metrics.Finished(call.Colour, call.Request.Task, final, elapsed, call.FirstOutputAfter);
        metrics.Deliveries.WithLabels(call.Colour, call.Delivery switch
        {
            InferenceDelivery.Direct => "direct",
            InferenceDelivery.Requeued => "requeued",
            _ => "queued",
        }).Inc();
        using var scope = logger.BeginScope(new Dictionary<string, object?> { ["request_id"] = call.Id, ["session_id"] = call.Request.SessionId });
        if (final.Result is { } r)
            Served(logger, call.Request.Task, r.Colour, r.ProfileVersion, r.WorkerId, elapsed.TotalMilliseconds, r.CompletionTokens, r.FinishReason);
        else if (final.Error is { } e)
            Failed(logger, call.Request.Task, e.Colour ?? call.Colour, e.Code, elapsed.TotalMilliseconds);
    }

    [LoggerMessage(EventId = 1290, Level = LogLevel.Information, Message = "Served {Task} from {Colour} ({Profile}, {Worker}) in {Ms:F0} ms, {Completion} tokens, {Finish}")]
    private static partial void Served(ILogger logger, string task, string colour, string profile, string worker, double ms, int completion, string? finish);

    [LoggerMessage(EventId = 1291, Level = LogLevel.Warning, Message = "Failed {Task} on {Colour}: {Code} after {Ms:F0} ms")]
    private static partial void Failed(ILogger logger, string task, string colour, string code, double ms);
}

/// <summary>
/// The ingress's inference client: the library's <see cref="InferenceClient"/> with live requests mirrored
/// to the rollout's candidate by <see cref="ShadowMirror"/> (a decorator, so neither depends on the other).
/// </summary>
public sealed class MirroringInferenceClient(InferenceClient inner, ShadowMirror mirror) : IInferenceClient
{
    public string InstanceId => inner.InstanceId;

    public Task Ready => inner.Ready;

    public async ValueTask<InferenceStart> TryStartAsync(InferenceQueue queue, string colour, InferRequest draft, TimeSpan timeout, CancellationToken ct)
    {
        var pair = queue == InferenceQueue.Live ? mirror.Begin(ref draft, colour) : null;
        InferenceStart start;
        try
        {
            start = await inner.TryStartAsync(queue, colour, draft, timeout, ct);
        }
        catch
        {
            pair?.Abandon();
            throw;
        }
        if (pair is null)
            return start;
        if (!start.Started)
        {
            pair.Abandon();
            return start;
        }
        start.Call.Finished += (_, final) => pair.SetLive(final);
        start.Call.Disposing += _ => pair.Abandon();
        pair.Launch();
        return start;
    }
}
