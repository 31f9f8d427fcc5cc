using Microsoft.Extensions.Options;
using QwenNats.Messaging;
using QwenNats.Ingress.OpenAi;

namespace QwenNats.Ingress.Endpoints;

/// <summary><c>POST /v1/sentiment</c> <c>{"input": "..."}</c>: one of the profile's labels with a confidence.</summary>
public static class SentimentEndpoints
{
    public static IEndpointRouteBuilder MapSentimentApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/sentiment", HandleAsync);
        return app;
    }

    private static async Task HandleAsync(HttpContext http, IInferenceClient client, RequestRouting routing, IOptions<IngressOptions> options)
    {
        var o = options.Value;
        var (doc, readError) = await JsonBodyReader.ReadAsync(http, o.MaxBodyBytes);
        if (doc is null)
        {
            await JsonAnswers.WriteErrorAsync(http, readError!);
            return;
        }
        string input;
        string? user = null;
        using (doc)
        {
            if (!RequestParser.TryParseSentiment(doc.RootElement, o.MaxInputChars, out input, out var parseError))
            {
                await JsonAnswers.WriteErrorAsync(http, parseError!);
                return;
            }
            if (doc.RootElement.TryGetProperty("user", out var u) && u.ValueKind == System.Text.Json.JsonValueKind.String)
                user = u.GetString();
        }
        RequestTimes.Parsed(http);
        var (route, routeError) = await routing.RouteAsync(http, user, http.Request.Headers[RequestRouting.ColourHeader]);
        if (route is null)
        {
            await JsonAnswers.WriteErrorAsync(http, routeError!);
            return;
        }
        RequestTimes.Routed(http);
        var colour = route.Colour;

        var id = ServedBy.NewId("sent");
        var started = DateTimeOffset.UtcNow;
        var start = await client.TryStartAsync(InferenceQueue.Live, colour, new InferRequest
        {
            Id = id, SessionId = route.Session, Task = InferTasks.Sentiment, Input = input, ReplyTo = "",
        }, o.RequestTimeout, http.RequestAborted);
        RequestRouting.StartPinWrite(http);
        if (!start.Started)
        {
            ServedBy.Stamp(http, colour, null, null, id);
            await JsonAnswers.WriteErrorAsync(http, new ApiError(start.Status, start.Code, start.Message), o.RetryAfterSeconds);
            return;
        }
        var call = start.Call;

        await using (call)
        {
            await foreach (var reply in call.ReadAsync(http.RequestAborted))
            {
                if (reply.Result is { Label: { } label } r)
                {
                    ServedBy.Stamp(http, r.Colour, r.ProfileVersion, r.WorkerId, id, r.Release);
                    RequestTimes.Stamp(http, o, call, r);
                    await JsonAnswers.WriteAsync(http, 200, new SentimentResponse(
                        label, r.Confidence ?? 0, r.Scores ?? new Dictionary<string, double>(), r.Colour, r.ModelId, r.ProfileVersion, r.WorkerId,
                        Math.Round((DateTimeOffset.UtcNow - started).TotalMilliseconds, 3)), IngressJson.Context.SentimentResponse);
                    return;
                }
                var error = reply.Error ?? (reply.Result is not null ? new InferError { Id = id, Code = ErrorCodes.InternalError, Message = "The worker answered without a label." } : null);
                if (error is not null)
                {
                    ServedBy.Stamp(http, error.Colour ?? colour, call.Accepted?.ProfileVersion, error.WorkerId, id);
                    await JsonAnswers.WriteErrorAsync(http, ApiError.FromInfer(error), o.RetryAfterSeconds);
                    return;
                }
            }
        }
    }
}
