using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;
using QwenNats.Ingress.OpenAi;

namespace QwenNats.Ingress;

/// <summary>Reads a bounded JSON request body: the document, or the 400/413 that says why not.</summary>
public static class JsonBodyReader
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

    private static string FirstSentence(string message)
    {
        var cut = message.IndexOf(". ", StringComparison.Ordinal);
        return cut > 0 ? message[..(cut + 1)] : message;
    }
}
