using NATS.Client.Core;
using QwenNats.Ingress.OpenAi;
using QwenNats.Messaging;

namespace QwenNats.Ingress;

/// <summary>
/// The last line of defence: whatever escapes a handler becomes an OpenAI-shaped error, never a bare 500 page.
/// Bad input is answered 4xx by the handlers; what reaches here is the ingress's own trouble: a NATS failure is
/// 503 <c>bus_unavailable</c> (with <c>Retry-After</c>), anything else 500 <c>internal_error</c>.
/// </summary>
public sealed partial class ErrorBoundary(RequestDelegate next, ILogger<ErrorBoundary> logger)
{
    public async Task InvokeAsync(HttpContext http)
    {
        RequestTimes.Begin(http);
        try
        {
            await next(http);
            if (http.Response.StatusCode == StatusCodes.Status405MethodNotAllowed && !http.Response.HasStarted)
                await JsonAnswers.WriteErrorAsync(http, new ApiError(405, "method_not_allowed", $"{http.Request.Method} is not allowed on {http.Request.Path}."));
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
        }
        catch (BadHttpRequestException e)
        {
            await JsonAnswers.WriteErrorAsync(http, e.StatusCode == 413 ? JsonBodyReader.TooLarge(0) with { Message = "The request body is too large." } : ApiError.Invalid(e.Message));
        }
        catch (NatsException e)
        {
            LogBusFailure(logger, e, http.Request.Method, http.Request.Path);
            await JsonAnswers.WriteErrorAsync(http, new ApiError(StatusCodes.Status503ServiceUnavailable, ErrorCodes.BusUnavailable, "The ingress could not reach NATS; retry after the time in Retry-After."));
        }
        catch (Exception e)
        {
            LogUnhandled(logger, e, http.Request.Method, http.Request.Path);
            await JsonAnswers.WriteErrorAsync(http, new ApiError(StatusCodes.Status500InternalServerError, ErrorCodes.InternalError, "The ingress failed to handle this request."));
        }
    }

    [LoggerMessage(EventId = 2000, Level = LogLevel.Error, Message = "Unhandled error on {Method} {Path}")]
    private static partial void LogUnhandled(ILogger logger, Exception exception, string method, string path);

    [LoggerMessage(EventId = 2001, Level = LogLevel.Warning, Message = "NATS failure on {Method} {Path}")]
    private static partial void LogBusFailure(ILogger logger, Exception exception, string method, string path);
}
