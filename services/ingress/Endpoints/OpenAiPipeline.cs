using System.Text.Json;
using QwenNats.Messaging;
using QwenNats.Ingress.OpenAi;

namespace QwenNats.Ingress.Endpoints;

/// <summary>
/// The steps every OpenAI-style endpoint (chat, completions) takes the same way: read and parse the JSON body, route
/// the request (a tester's colour, the session's pin or the rollout), publish it on the live queue, and the
/// Server-Sent Events framing (headers, an error after the stream started, the closing <c>[DONE]</c>). Each step
/// writes the OpenAI-style error itself and returns null when the request goes no further.
/// </summary>
internal static class OpenAiPipeline
{
    public delegate bool Parser<T>(JsonElement root, int maxTokensLimit, out T request, out ApiError? error, int maxPromptChars);

    /// <summary>The parsed request and its route, or null (the error is written).</summary>
    public static async Task<(T Request, RouteResult Route)?> ReadAndRouteAsync<T>(HttpContext http, RequestRouting routing, IngressOptions o, Parser<T> parse, Func<T, string?> user)
    {
        var (doc, readError) = await JsonBodyReader.ReadAsync(http, o.MaxBodyBytes);
        if (doc is null)
        {
            await JsonAnswers.WriteErrorAsync(http, readError!);
            return null;
        }
        T request;
        using (doc)
        {
            if (!parse(doc.RootElement, o.MaxTokensLimit, out request, out var parseError, o.MaxPromptChars))
            {
                await JsonAnswers.WriteErrorAsync(http, parseError!);
                return null;
            }
        }
        RequestTimes.Parsed(http);
        var (route, routeError) = await routing.RouteAsync(http, user(request), http.Request.Headers[RequestRouting.ColourHeader]);
        if (route is null)
        {
            await JsonAnswers.WriteErrorAsync(http, routeError!);
            return null;
        }
        RequestTimes.Routed(http);
        return (request, route);
    }

    /// <summary>Publishes the request on the route's live queue: the call, or null (the refusal is written, with Retry-After).</summary>
    public static async Task<InferenceCall?> StartAsync(HttpContext http, IInferenceClient client, RouteResult route, InferRequest draft, IngressOptions o)
    {
        var start = await client.TryStartAsync(InferenceQueue.Live, route.Colour, draft, o.RequestTimeout, http.RequestAborted);
        RequestRouting.StartPinWrite(http);
        if (start.Started)
            return start.Call;
        ServedBy.Stamp(http, route.Colour, null, null, draft.Id);
        await JsonAnswers.WriteErrorAsync(http, new ApiError(start.Status, start.Code, start.Message), o.RetryAfterSeconds);
        return null;
    }

    /// <summary>Starts the event stream once a worker took the request: who serves it, and headers that stop proxies buffering.</summary>
    public static async Task StartEventsAsync(HttpContext http, InferenceCall call, InferAccepted a)
    {
        ServedBy.Stamp(http, a.Colour, a.ProfileVersion, a.WorkerId, call.Id, a.Release);
        http.Response.StatusCode = 200;
        http.Response.ContentType = "text/event-stream; charset=utf-8";
        http.Response.Headers.CacheControl = "no-cache";
        http.Response.Headers["X-Accel-Buffering"] = "no";
        await http.Response.StartAsync(http.RequestAborted);
    }

    /// <summary>A failure of a streamed request: an error answer before the stream started, an error event and [DONE] after.</summary>
    public static async Task StreamErrorAsync(HttpContext http, InferenceCall call, InferError e, bool started, IngressOptions o)
    {
        var error = ApiError.FromInfer(e);
        if (!started)
        {
            ServedBy.Stamp(http, e.Colour ?? call.Colour, null, e.WorkerId, call.Id);
            await JsonAnswers.WriteErrorAsync(http, error, o.RetryAfterSeconds);
            return;
        }
        await http.Response.WriteAsync($"data: {JsonSerializer.Serialize(error.ToBody(), IngressJson.Context.ErrorBody)}\n\n", http.RequestAborted);
        await EndEventsAsync(http);
    }

    /// <summary>A failure of a request answered whole: its error answer.</summary>
    public static Task ErrorAsync(HttpContext http, InferenceCall call, InferError e, IngressOptions o)
    {
        ServedBy.Stamp(http, e.Colour ?? call.Colour, call.Accepted?.ProfileVersion, e.WorkerId, call.Id);
        return JsonAnswers.WriteErrorAsync(http, ApiError.FromInfer(e), o.RetryAfterSeconds);
    }

    public static async Task EndEventsAsync(HttpContext http)
    {
        await http.Response.WriteAsync("data: [DONE]\n\n", http.RequestAborted);
        await http.Response.Body.FlushAsync(http.RequestAborted);
    }

    /// <summary>One event with a JSON payload, flushed at once.</summary>
    public static async Task SendEventAsync(HttpContext http, string json)
    {
        await http.Response.WriteAsync($"data: {json}\n\n", http.RequestAborted);
        await http.Response.Body.FlushAsync(http.RequestAborted);
    }
}
