using System.Buffers;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.AspNetCore.Http.Features;
using QwenNats.Messaging;
using QwenNats.Ingress.OpenAi;

namespace QwenNats.Ingress;

/// <summary>Reading bounded JSON bodies and writing JSON answers and OpenAI-shaped errors.</summary>
public static class HttpJson
{
    private static readonly JsonDocumentOptions DocOptions = new() { MaxDepth = 64 };

    /// <summary>Reads at most <paramref name="maxBytes"/> and parses it; a 413 or 400 otherwise.</summary>
    public static async Task<(JsonDocument? Doc, ApiError? Error)> ReadAsync(HttpContext http, long maxBytes)
    {
        if (http.Request.ContentLength > maxBytes)
            return (null, TooLarge(maxBytes));
        var feature = http.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (feature is { IsReadOnly: false })
            feature.MaxRequestBodySize = maxBytes;
        var buffer = new ArrayBufferWriter<byte>(4096);
        try
        {
            while (true)
            {
                var memory = buffer.GetMemory(16384);
                var read = await http.Request.Body.ReadAsync(memory, http.RequestAborted);
                if (read == 0) break;
                buffer.Advance(read);
                if (buffer.WrittenCount > maxBytes)
                    return (null, TooLarge(maxBytes));
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return (null, TooLarge(maxBytes));
        }
        catch (BadHttpRequestException e)
        {
            return (null, ApiError.Invalid($"The request body could not be read: {e.Message}"));
        }
        if (buffer.WrittenCount == 0)
            return (null, ApiError.Invalid("The request body is empty; a JSON object is required."));
        if (!System.Text.Unicode.Utf8.IsValid(buffer.WrittenSpan))
            return (null, new ApiError(400, "invalid_json", "The request body is not valid UTF-8."));
        try
        {
            return (JsonDocument.Parse(buffer.WrittenMemory, DocOptions), null);
        }
        catch (JsonException e)
        {
            return (null, new ApiError(400, "invalid_json", $"The request body is not valid JSON: {FirstSentence(e.Message)}"));
        }
        catch (ArgumentException e)
        {
            return (null, new ApiError(400, "invalid_json", $"The request body is not valid UTF-8 JSON: {FirstSentence(e.Message)}"));
        }
    }

    public static ApiError TooLarge(long maxBytes) => new(413, "body_too_large", $"The request body is larger than the limit of {maxBytes} bytes.");

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

    private static string FirstSentence(string message)
    {
        var cut = message.IndexOf(". ", StringComparison.Ordinal);
        return cut > 0 ? message[..(cut + 1)] : message;
    }

    public static string NewId(string prefix) => $"{prefix}-{Guid.NewGuid():N}";

    public static long Now() => DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public static void Stamp(HttpContext http, string colour, string? profile, string? worker, string requestId)
    {
        if (http.Response.HasStarted) return;
        http.Response.Headers[RequestRouting.ColourHeader] = colour;
        if (profile is not null) http.Response.Headers[RequestRouting.ProfileHeader] = profile;
        if (worker is not null) http.Response.Headers[RequestRouting.WorkerHeader] = worker;
        http.Response.Headers[RequestRouting.RequestIdHeader] = requestId;
    }

    public static InferError Synthetic(string id, string code, string message) => new() { Id = id, Code = code, Message = message };
}
