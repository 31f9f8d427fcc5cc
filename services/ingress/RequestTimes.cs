using System.Globalization;
using System.Text;
using QwenNats.Messaging;

namespace QwenNats.Ingress;

/// <summary>
/// Where one request's time went, stage by stage (Unix microseconds, <see cref="UnixMicros"/>): set when the request
/// enters the ingress's pipeline, then marked as it is parsed and routed; the publish and reply times come from its
/// <see cref="InferenceCall"/>, the worker's from <see cref="WorkerTimes"/> in the result. Sent as a
/// <c>Server-Timing</c> header (<c>Ingress:ServerTiming</c>) on answers that are not streamed.
/// </summary>
public sealed class RequestTimes(long startUs)
{
    public long StartUs { get; } = startUs;
    public long ParsedUs { get; private set; }
    public long RoutedUs { get; private set; }

    public static RequestTimes? Of(HttpContext http) => http.Features.Get<RequestTimes>();

    public static void Begin(HttpContext http) => http.Features.Set(new RequestTimes(UnixMicros.Now()));

    public static void Parsed(HttpContext http)
    {
        if (Of(http) is { } t) t.ParsedUs = UnixMicros.Now();
    }

    public static void Routed(HttpContext http)
    {
        if (Of(http) is { } t) t.RoutedUs = UnixMicros.Now();
    }

    /// <summary>
    /// The stages of a request answered by <paramref name="call"/>, in milliseconds, in the order they happen:
    /// <c>parse</c> (body read and parsed), <c>route</c> (colour and session pin), <c>publish</c> (from routed to
    /// the direct offer written to the connection, or to JetStream's acknowledgement of the queued work message),
    /// <c>deliver</c> (from the publish to the worker's NATS client handing it over; overlaps <c>publish</c>'s
    /// acknowledgement), <c>worker-in</c> (to a job in the decode
    /// loop: acceptance reply, prompt, tokens), <c>infer</c> (the worker's <c>total_ms</c>), <c>worker-out</c> (result
    /// to NATS), <c>reply</c> (NATS to this ingress's socket reader), <c>handoff</c> (from the reader to this request),
    /// <c>respond</c> (to this header) and <c>total</c>.
    /// Stages that cross processes use both machines' clocks; an unknown time leaves its stage out.
    /// </summary>
    public static string? Header(HttpContext http, InferenceCall call, InferResult result)
    {
        if (Of(http) is not { } t) return null;
        var now = UnixMicros.Now();
        var sb = new StringBuilder(256);
        void Stage(string name, long from, long to)
        {
            if (from <= 0 || to <= 0) return;
            if (sb.Length > 0) sb.Append(", ");
            sb.Append(name).Append(";dur=").Append(((to - from) / 1000.0).ToString("0.###", CultureInfo.InvariantCulture));
        }
        Stage("parse", t.StartUs, t.ParsedUs);
        Stage("route", t.ParsedUs, t.RoutedUs);
        Stage("publish", t.RoutedUs, call.AckedUs);
        if (result.Times is { } w)
        {
            Stage("deliver", call.PublishedUs, w.ReceivedUs);
            Stage("worker-in", w.ReceivedUs, w.StartedUs);
            Stage("infer", w.StartedUs, w.FinishedUs);
            Stage("worker-out", w.FinishedUs, w.SentUs);
            Stage("reply", w.SentUs, call.FinalArrivedUs);
            Stage("handoff", call.FinalArrivedUs, call.FinalUs);
        }
        Stage("respond", call.FinalUs, now);
        Stage("total", t.StartUs, now);
        return sb.ToString();
    }

    /// <summary>Sets the <c>Server-Timing</c> header for a result (when enabled and the answer has not started).</summary>
    public static void Stamp(HttpContext http, IngressOptions o, InferenceCall call, InferResult result)
    {
        if (o.ServerTiming && !http.Response.HasStarted && Header(http, call, result) is { } value)
            http.Response.Headers["Server-Timing"] = value;
    }
}
