using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using QwenNats.Ingress.OpenAi;

namespace QwenNats.Ingress;

/// <summary>Writes JSON answers and OpenAI-shaped errors (with <c>Retry-After</c> on 429/503).</summary>
public static class JsonAnswers
{
    public static Task WriteAsync<T>(HttpContext http, int status, T value, JsonTypeInfo<T> type)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "application/json; charset=utf-8";
        return JsonSerializer.SerializeAsync(http.Response.Body, value, type, http.RequestAborted);
    }

    public static Task WriteErrorAsync(HttpContext http, ApiError error, int retryAfterSeconds = 1)
    {
        if (http.Response.HasStarted)
            return Task.CompletedTask;
        if (error.Status is 503 or 429)
            http.Response.Headers.RetryAfter = retryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        // The rest of an oversized body is never read: close the connection after this answer, so the client
        // does not send its next request on a connection the server is about to drop.
        if (error.Status == StatusCodes.Status413PayloadTooLarge)
            http.Response.Headers.Connection = "close";
        return WriteAsync(http, error.Status, error.ToBody(), IngressJson.Context.ErrorBody);
    }
}
