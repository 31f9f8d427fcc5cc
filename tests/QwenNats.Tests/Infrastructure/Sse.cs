using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace QwenNats.Tests.Infrastructure;

public static class Api
{
    public static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    /// <summary>A chat request; <paramref name="includeUsage"/> adds <c>stream_options.include_usage</c>.</summary>
    public static string ChatBody(string content, int maxTokens = 24, bool stream = false, double temperature = 0, bool? includeUsage = null)
    {
        var body = new Dictionary<string, object>
        {
            ["messages"] = new[] { new Dictionary<string, string> { ["role"] = "user", ["content"] = content } },
            ["max_tokens"] = maxTokens,
            ["temperature"] = temperature,
            ["stream"] = stream,
        };
        if (includeUsage is { } u)
            body["stream_options"] = new Dictionary<string, bool> { ["include_usage"] = u };
        return JsonSerializer.Serialize(body);
    }

    public static HttpRequestMessage Post(string path, string body, string? colour = null, string? session = null)
    {
        var req = new HttpRequestMessage(HttpMethod.Post, path) { Content = Json(body) };
        if (colour is not null) ChooseColour(req, colour);
        if (session is not null) req.Headers.Add("X-Session-Id", session);
        return req;
    }

    /// <summary>Asks for a colour as a tester does: with the test ingress's operator token (choosing is a privilege).</summary>
    public static void ChooseColour(HttpRequestMessage req, string colour, string token = QwenSystem.OperatorToken)
    {
        req.Headers.Add("X-Qwen-Colour", colour);
        req.Headers.Authorization = new("Bearer", token);
    }

    public static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    /// <summary>Reads an SSE body into its data payloads (without the <c>data: </c> prefix).</summary>
    public static async Task<List<string>> ReadEventsAsync(HttpResponseMessage response, CancellationToken ct)
    {
        var events = new List<string>();
        await using var stream = await response.Content.ReadAsStreamAsync(ct);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        while (await reader.ReadLineAsync(ct) is { } line)
        {
            if (line.StartsWith("data: ", StringComparison.Ordinal))
                events.Add(line["data: ".Length..]);
        }
        return events;
    }

    public static string Header(HttpResponseMessage r, string name) =>
        r.Headers.TryGetValues(name, out var v) ? v.First() : r.Content.Headers.TryGetValues(name, out var c) ? c.First() : "";

    public static MediaTypeHeaderValue? ContentType(HttpResponseMessage r) => r.Content.Headers.ContentType;
}
