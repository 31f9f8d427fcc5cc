using System.Text.Json;
using QwenNats.Messaging;

namespace QwenNats.Ingress.OpenAi;

/// <summary>
/// Validates request bodies by hand from a <see cref="JsonDocument"/>, so every problem — invalid
/// JSON, a missing or wrong-typed field, an unknown role, a value out of range — becomes a 400 that
/// names the field, never an exception.
/// </summary>
public static class RequestParser
{
    public const int MaxStopSequences = 4;

    public static bool TryParseChat(JsonElement root, int maxTokensLimit, out ChatCompletionRequest request, out ApiError? error, int maxPromptChars = 65_536)
    {
        request = null!;
        error = null;
        if (root.ValueKind != JsonValueKind.Object)
            return Fail(ApiError.Invalid("The request body must be a JSON object."), out error);

        if (!root.TryGetProperty("messages", out var messagesEl))
            return Fail(ApiError.Invalid("'messages' is required.", "messages"), out error);
        if (messagesEl.ValueKind != JsonValueKind.Array)
            return Fail(ApiError.Invalid("'messages' must be an array.", "messages"), out error);
        if (messagesEl.GetArrayLength() == 0)
            return Fail(new ApiError(400, ErrorCodes.EmptyConversation, "'messages' must contain at least one message.", "messages"), out error);

        var messages = new List<ChatMessage>(messagesEl.GetArrayLength());
        var i = 0;
        foreach (var m in messagesEl.EnumerateArray())
        {
            var param = $"messages[{i}]";
            if (m.ValueKind != JsonValueKind.Object)
                return Fail(ApiError.Invalid($"'{param}' must be an object.", param), out error);
            if (!m.TryGetProperty("role", out var roleEl) || roleEl.ValueKind != JsonValueKind.String)
                return Fail(ApiError.Invalid($"'{param}.role' is required and must be a string.", $"{param}.role"), out error);
            var role = roleEl.GetString();
            if (role == "developer") role = ChatRoles.System;
            if (!ChatRoles.IsKnown(role))
                return Fail(ApiError.Invalid($"'{param}.role' is '{Truncate(roleEl.GetString())}'; expected system, user or assistant.", $"{param}.role"), out error);
            if (!m.TryGetProperty("content", out var contentEl))
                return Fail(ApiError.Invalid($"'{param}.content' is required.", $"{param}.content"), out error);
            if (!TryReadContent(contentEl, out var content))
                return Fail(ApiError.Invalid($"'{param}.content' must be a string or an array of text parts.", $"{param}.content"), out error);
            if (!CheckText(content, $"{param}.content", out error))
                return false;
            messages.Add(new ChatMessage(role!, content));
            i++;
        }
        var total = messages.Sum(m => (long)m.Content.Length);
        if (total > maxPromptChars)
            return Fail(new ApiError(400, PromptTooLong, $"The conversation has {total} characters; the limit is {maxPromptChars}.", "messages"), out error);
        if (messages[^1].Role == ChatRoles.Assistant)
            return Fail(ApiError.Invalid("The last message must come from the user or the system.", "messages"), out error);
        if (messages.All(m => string.IsNullOrWhiteSpace(m.Content)))
            return Fail(new ApiError(400, ErrorCodes.EmptyConversation, "Every message is empty.", "messages"), out error);

        if (!TryOptionalString(root, "model", out var model, out error)) return false;
        if (!TryOptionalString(root, "user", out var user, out error)) return false;
        if (!TryOptionalNumber(root, "temperature", 0, 2, out var temperature, out error)) return false;
        if (!TryOptionalNumber(root, "top_p", 0, 1, out var topP, out error)) return false;
        if (topP is 0) return Fail(ApiError.Invalid("'top_p' must be greater than 0.", "top_p"), out error);
        if (!TryOptionalInt(root, "max_tokens", 1, maxTokensLimit, out var maxTokens, out error)) return false;
        if (maxTokens is null && !TryOptionalInt(root, "max_completion_tokens", 1, maxTokensLimit, out maxTokens, out error)) return false;
        if (!TryOptionalInt(root, "seed", 0, uint.MaxValue, out var seed, out error)) return false;
        if (!TryOptionalInt(root, "n", 1, 1, out _, out error)) return false;
        if (!TryOptionalBool(root, "stream", out var stream, out error)) return false;
        if (!TryStop(root, out var stop, out error)) return false;

        var includeUsage = true;
        if (root.TryGetProperty("stream_options", out var so) && so.ValueKind == JsonValueKind.Object && so.TryGetProperty("include_usage", out var iu))
        {
            if (iu.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                return Fail(ApiError.Invalid("'stream_options.include_usage' must be a boolean.", "stream_options.include_usage"), out error);
            includeUsage = iu.GetBoolean();
        }

        request = new ChatCompletionRequest(messages, model, new SamplingParams
        {
            Temperature = temperature,
            TopP = topP,
            MaxTokens = (int?)maxTokens,
            Stop = stop,
            Seed = seed is null ? null : (uint)seed.Value,
        }, stream ?? false, includeUsage, user);
        return true;
    }

    public static bool TryParseSentiment(JsonElement root, int maxChars, out string input, out ApiError? error)
    {
        input = "";
        error = null;
        if (root.ValueKind != JsonValueKind.Object)
            return Fail(ApiError.Invalid("The request body must be a JSON object."), out error);
        if (!root.TryGetProperty("input", out var el))
            return Fail(ApiError.Invalid("'input' is required.", "input"), out error);
        if (el.ValueKind != JsonValueKind.String)
            return Fail(ApiError.Invalid("'input' must be a string.", "input"), out error);
        input = el.GetString()!;
        if (string.IsNullOrWhiteSpace(input))
            return Fail(ApiError.Invalid("'input' must not be empty.", "input"), out error);
        if (input.Length > maxChars)
            return Fail(new ApiError(400, PromptTooLong, $"'input' is longer than {maxChars} characters.", "input"), out error);
        return CheckText(input, "input", out error);
    }

    public const string PromptTooLong = "prompt_too_long";

    /// <summary>Text for the model may hold any Unicode text, tabs and line breaks, but no other control characters (NUL, escape…).</summary>
    public static bool CheckText(string text, string param, out ApiError? error)
    {
        error = null;
        foreach (var c in text)
            if (char.IsControl(c) && c is not ('\t' or '\n' or '\r'))
                return Fail(ApiError.Invalid($"'{param}' contains control character U+{(int)c:X4}; only tabs and line breaks are allowed.", param), out error);
        return true;
    }

    private static bool TryReadContent(JsonElement el, out string content)
    {
        content = "";
        if (el.ValueKind == JsonValueKind.String)
        {
            content = el.GetString()!;
            return true;
        }
        if (el.ValueKind != JsonValueKind.Array)
            return false;
        var sb = new System.Text.StringBuilder();
        foreach (var part in el.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object
                || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String || type.GetString() != "text"
                || !part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                return false;
            sb.Append(text.GetString());
        }
        content = sb.ToString();
        return true;
    }

    private static bool TryStop(JsonElement root, out IReadOnlyList<string>? stop, out ApiError? error)
    {
        stop = null;
        error = null;
        if (!root.TryGetProperty("stop", out var el) || el.ValueKind == JsonValueKind.Null)
            return true;
        if (el.ValueKind == JsonValueKind.String)
        {
            stop = el.GetString() is { Length: > 0 } s ? [s] : null;
            return true;
        }
        if (el.ValueKind != JsonValueKind.Array || el.GetArrayLength() > MaxStopSequences || el.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String || e.GetString()!.Length == 0))
            return Fail(ApiError.Invalid($"'stop' must be a non-empty string or an array of up to {MaxStopSequences} non-empty strings.", "stop"), out error);
        stop = el.EnumerateArray().Select(e => e.GetString()!).ToArray();
        return true;
    }

    private static bool TryOptionalString(JsonElement root, string name, out string? value, out ApiError? error)
    {
        value = null;
        error = null;
        if (!root.TryGetProperty(name, out var el) || el.ValueKind == JsonValueKind.Null) return true;
        if (el.ValueKind != JsonValueKind.String)
            return Fail(ApiError.Invalid($"'{name}' must be a string.", name), out error);
        value = el.GetString();
        return true;
    }

    private static bool TryOptionalBool(JsonElement root, string name, out bool? value, out ApiError? error)
    {
        value = null;
        error = null;
        if (!root.TryGetProperty(name, out var el) || el.ValueKind == JsonValueKind.Null) return true;
        if (el.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            return Fail(ApiError.Invalid($"'{name}' must be a boolean.", name), out error);
        value = el.GetBoolean();
        return true;
    }

    private static bool TryOptionalNumber(JsonElement root, string name, double min, double max, out double? value, out ApiError? error)
    {
        value = null;
        error = null;
        if (!root.TryGetProperty(name, out var el) || el.ValueKind == JsonValueKind.Null) return true;
        if (el.ValueKind != JsonValueKind.Number || !el.TryGetDouble(out var v) || double.IsNaN(v))
            return Fail(ApiError.Invalid($"'{name}' must be a number.", name), out error);
        if (v < min || v > max)
            return Fail(ApiError.Invalid($"'{name}' must be between {min} and {max}.", name), out error);
        value = v;
        return true;
    }

    private static bool TryOptionalInt(JsonElement root, string name, long min, long max, out long? value, out ApiError? error)
    {
        value = null;
        error = null;
        if (!root.TryGetProperty(name, out var el) || el.ValueKind == JsonValueKind.Null) return true;
        if (el.ValueKind != JsonValueKind.Number || !el.TryGetInt64(out var v))
            return Fail(ApiError.Invalid($"'{name}' must be an integer.", name), out error);
        if (v < min || v > max)
            return Fail(ApiError.Invalid($"'{name}' must be between {min} and {max}.", name), out error);
        value = v;
        return true;
    }

    private static bool Fail(ApiError e, out ApiError? error)
    {
        error = e;
        return false;
    }

    private static string Truncate(string? s) => s is null ? "" : s.Length <= 40 ? s : s[..40] + "…";
}
