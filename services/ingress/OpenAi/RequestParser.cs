using System.Text.Json;
using QwenNats.Messaging;
using QwenNats.Messaging.Grammars;

namespace QwenNats.Ingress.OpenAi;

/// <summary>
/// Validates request bodies by hand from a <see cref="JsonDocument"/>, so every problem — invalid
/// JSON, a missing or wrong-typed field, an unknown role, a value out of range — becomes a 400 that
/// names the field, never an exception.
/// </summary>
public static partial class RequestParser
{
    public const int MaxStopSequences = 4;

    public static bool TryParseChat(JsonElement root, int maxTokensLimit, out ChatCompletionRequest request, out ApiError? error, int maxPromptChars = 65_536)
    {
        request = null!;
        error = null;
        if (root.ValueKind != JsonValueKind.Object)
            return Fail(ApiError.Invalid("The request body must be a JSON object."), out error);
        if (!CheckChatFields(root, out error))
            return false;

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
            if (role is "tool" or "function")
                return Fail(new ApiError(400, UnsupportedParameter,
                    $"'{param}.role' is '{role}': the models here do not call tools, so there are no tool results to read. Put the result in a user message instead.", $"{param}.role"), out error);
            if (role == "developer") role = ChatRoles.System;
            if (!ChatRoles.IsKnown(role))
                return Fail(ApiError.Invalid($"'{param}.role' is '{Truncate(roleEl.GetString())}'; expected system, developer, user or assistant.", $"{param}.role"), out error);
            if (!CheckMessageFields(m, param, out error))
                return false;
            if (!m.TryGetProperty("content", out var contentEl))
                return Fail(ApiError.Invalid($"'{param}.content' is required.", $"{param}.content"), out error);
            if (!TryReadContent(contentEl, $"{param}.content", out var content, out error))
                return false;
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
        if (!TryParseSampling(root, maxTokensLimit, out var sampling, out error)) return false;
        if (!TryOptionalBool(root, "stream", out var stream, out error)) return false;
        if (!TryStreamOptions(root, stream ?? false, out var includeUsage, out error)) return false;
        if (!TryOptionalBool(root, "logprobs", out var logprobs, out error)) return false;
        if (!TryOptionalInt(root, "top_logprobs", 0, MaxTopLogprobs, out var topLogprobs, out error)) return false;
        if (topLogprobs is not null && logprobs != true)
            return Fail(ApiError.Invalid("'top_logprobs' needs 'logprobs': true.", "top_logprobs"), out error);

        request = new ChatCompletionRequest(messages, model, sampling with
        {
            Logprobs = logprobs == true ? true : null,
            TopLogprobs = logprobs == true ? (int)(topLogprobs ?? 0) : null,
        }, stream ?? false, includeUsage, user);
        return true;
    }

    /// <summary>
    /// The sampling fields chat, completions and WebSocket turns share (<see cref="SamplingFields"/>): temperature,
    /// top_p, max_tokens (max_completion_tokens where max_tokens is absent), seed, stop, presence and frequency
    /// penalties, logit_bias and response_format. Which of them a request may send at all is its endpoint's field
    /// table; this reads and checks whichever are present.
    /// </summary>
    public static bool TryParseSampling(JsonElement root, int maxTokensLimit, out SamplingParams sampling, out ApiError? error)
    {
        sampling = new SamplingParams();
        if (!TryOptionalNumber(root, "temperature", 0, 2, out var temperature, out error)) return false;
        if (!TryOptionalNumber(root, "top_p", 0, 1, out var topP, out error)) return false;
        if (topP is 0) return Fail(ApiError.Invalid("'top_p' must be greater than 0.", "top_p"), out error);
        if (!TryOptionalInt(root, "max_tokens", 1, maxTokensLimit, out var maxTokens, out error)) return false;
        if (maxTokens is null && !TryOptionalInt(root, "max_completion_tokens", 1, maxTokensLimit, out maxTokens, out error)) return false;
        if (!TryOptionalInt(root, "seed", 0, uint.MaxValue, out var seed, out error)) return false;
        if (!TryStop(root, out var stop, out error)) return false;
        if (!TryOptionalNumber(root, "presence_penalty", -2, 2, out var presencePenalty, out error)) return false;
        if (!TryOptionalNumber(root, "frequency_penalty", -2, 2, out var frequencyPenalty, out error)) return false;
        if (!TryLogitBias(root, out var logitBias, out error)) return false;
        if (!TryResponseFormat(root, out var responseFormat, out error)) return false;
        sampling = new SamplingParams
        {
            Temperature = temperature,
            TopP = topP,
            MaxTokens = (int?)maxTokens,
            Stop = stop,
            Seed = seed is null ? null : (uint)seed.Value,
            PresencePenalty = presencePenalty is 0 ? null : presencePenalty,
            FrequencyPenalty = frequencyPenalty is 0 ? null : frequencyPenalty,
            LogitBias = logitBias,
            ResponseFormat = responseFormat,
        };
        return true;
    }

    /// <summary>The fields <see cref="TryParseSampling"/> reads.</summary>
    public static IReadOnlySet<string> SamplingFields { get; } = new HashSet<string>(StringComparer.Ordinal)
    {
        "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "stop",
        "presence_penalty", "frequency_penalty", "logit_bias", "response_format",
    };

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

    /// <summary>An OpenAI field this server knows but cannot honour with the value sent.</summary>
    public const string UnsupportedParameter = "unsupported_parameter";

    /// <summary>A field that is not part of OpenAI's chat-completions request (OpenAI refuses these too).</summary>
    public const string UnknownParameter = "unknown_parameter";

    public enum FieldStatus { Supported, Ignored, Refused }

    /// <summary>How one top-level chat field is treated. <c>Accepts</c> says which non-null values pass for
    /// an ignored or refused field (null always passes: it means "not set"); <c>Refusal</c> says why any
    /// other value is refused and what to send instead.</summary>
    private sealed record FieldRule(FieldStatus Status, Func<JsonElement, bool>? Accepts = null, string? Refusal = null);

    private static bool IsFalse(JsonElement e) => e.ValueKind == JsonValueKind.False;
    private static bool IsTrue(JsonElement e) => e.ValueKind == JsonValueKind.True;
    private static bool IsEmptyArray(JsonElement e) => e.ValueKind == JsonValueKind.Array && e.GetArrayLength() == 0;
    private static bool IsString(JsonElement e, params string[] values) => e.ValueKind == JsonValueKind.String && values.Contains(e.GetString(), StringComparer.Ordinal);
    private static bool IsTextOnly(JsonElement e) => e.ValueKind == JsonValueKind.Array && e.GetArrayLength() == 1 && IsString(e[0], "text");
    private static bool Never(JsonElement e) => false;

    /// <summary>
    /// Every top-level field of OpenAI's chat-completions request and what this server does with it.
    /// A field not listed here is refused as unknown. README.md's field table lists the same fields.
    /// </summary>
    private static readonly Dictionary<string, FieldRule> ChatFieldRules = new(StringComparer.Ordinal)
    {
        ["messages"] = new(FieldStatus.Supported),
        ["model"] = new(FieldStatus.Supported),
        ["temperature"] = new(FieldStatus.Supported),
        ["top_p"] = new(FieldStatus.Supported),
        ["max_tokens"] = new(FieldStatus.Supported),
        ["max_completion_tokens"] = new(FieldStatus.Supported),
        ["stop"] = new(FieldStatus.Supported),
        ["seed"] = new(FieldStatus.Supported),
        ["stream"] = new(FieldStatus.Supported),
        ["stream_options"] = new(FieldStatus.Supported),
        ["user"] = new(FieldStatus.Supported),
        ["response_format"] = new(FieldStatus.Supported),
        ["presence_penalty"] = new(FieldStatus.Supported),
        ["frequency_penalty"] = new(FieldStatus.Supported),
        ["logit_bias"] = new(FieldStatus.Supported),
        ["logprobs"] = new(FieldStatus.Supported),
        ["top_logprobs"] = new(FieldStatus.Supported),

        // Metadata that cannot change the answer: accepted and ignored.
        ["metadata"] = new(FieldStatus.Ignored, e => e.ValueKind == JsonValueKind.Object,
            "'metadata' must be an object of string values; it is accepted and ignored (completions are not stored)."),
        ["store"] = new(FieldStatus.Ignored, IsFalse,
            "'store': true is not supported: completions are not stored and cannot be fetched later. Remove it or send false."),
        ["service_tier"] = new(FieldStatus.Ignored, e => IsString(e, "auto", "default"),
            "'service_tier' accepts only 'auto' or 'default': every request is served in one tier here. Remove it or send 'auto'."),

        // Fields whose non-default values would change the answer and cannot be honoured: refused.
        ["tools"] = new(FieldStatus.Refused, IsEmptyArray,
            "'tools' is not supported: the models here do not call tools. Remove it (or send []) and put the tools' results in the messages instead."),
        ["tool_choice"] = new(FieldStatus.Refused, e => IsString(e, "none"),
            "'tool_choice' is not supported: the models here do not call tools. Remove it or send 'none'."),
        ["functions"] = new(FieldStatus.Refused, IsEmptyArray,
            "'functions' is not supported: the models here do not call functions. Remove it (or send []) and put the results in the messages instead."),
        ["function_call"] = new(FieldStatus.Refused, e => IsString(e, "none"),
            "'function_call' is not supported: the models here do not call functions. Remove it or send 'none'."),
        ["n"] = new(FieldStatus.Refused, e => e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out var n) && n == 1,
            "'n' is not supported: one choice is generated per request. Remove it or send 1, and send several requests for several answers."),
        ["audio"] = new(FieldStatus.Refused, Never,
            "'audio' is not supported: answers are text only. Remove it."),
        ["modalities"] = new(FieldStatus.Refused, IsTextOnly,
            "'modalities' is not supported beyond text: answers are text only. Remove it or send [\"text\"]."),
        ["prediction"] = new(FieldStatus.Refused, Never,
            "'prediction' is not supported: predicted outputs are not used. Remove it."),
        ["parallel_tool_calls"] = new(FieldStatus.Refused, IsTrue,
            "'parallel_tool_calls' is not supported: the models here do not call tools. Remove it."),
        ["web_search_options"] = new(FieldStatus.Refused, Never,
            "'web_search_options' is not supported: this server does not search the web. Remove it and put the facts the answer needs in the messages."),
        ["reasoning_effort"] = new(FieldStatus.Refused, Never,
            "'reasoning_effort' is not supported: the models here have no separate reasoning phase to tune. Remove it."),
    };

    /// <summary>Every known top-level chat field and its status (README.md's field table lists the same).</summary>
    public static IReadOnlyDictionary<string, FieldStatus> ChatFields { get; } = ChatFieldRules.ToDictionary(r => r.Key, r => r.Value.Status, StringComparer.Ordinal);

    /// <summary>Refuses any unknown field, and any ignored or refused field whose value is neither null nor an accepted one.</summary>
    private static bool CheckChatFields(JsonElement root, out ApiError? error) => CheckFields(root, ChatFieldRules, out error);

    private static bool CheckFields(JsonElement root, Dictionary<string, FieldRule> rules, out ApiError? error)
    {
        error = null;
        foreach (var field in root.EnumerateObject())
        {
            if (!rules.TryGetValue(field.Name, out var rule))
                return Fail(new ApiError(400, UnknownParameter,
                    $"Unknown parameter: '{Truncate(field.Name)}'. This server refuses fields it does not know rather than ignoring them; remove it (README.md lists the supported fields).",
                    Truncate(field.Name)), out error);
            if (rule.Status == FieldStatus.Supported || field.Value.ValueKind == JsonValueKind.Null || rule.Accepts!(field.Value))
                continue;
            if (field.Name == "metadata")
                return Fail(ApiError.Invalid(rule.Refusal!, field.Name), out error);
            return Fail(new ApiError(400, UnsupportedParameter, rule.Refusal!, field.Name), out error);
        }
        return true;
    }

    /// <summary>
    /// <c>stream_options</c> as OpenAI specifies it: only with <c>stream: true</c>; <c>include_usage</c> (default
    /// false) adds a last chunk with the usage; <c>include_obfuscation</c> is accepted and ignored (no padding is sent).
    /// </summary>
    private static bool TryStreamOptions(JsonElement root, bool stream, out bool includeUsage, out ApiError? error)
    {
        includeUsage = false;
        error = null;
        if (!root.TryGetProperty("stream_options", out var so) || so.ValueKind == JsonValueKind.Null)
            return true;
        if (so.ValueKind != JsonValueKind.Object)
            return Fail(ApiError.Invalid("'stream_options' must be an object.", "stream_options"), out error);
        if (!stream)
            return Fail(ApiError.Invalid("'stream_options' is only allowed when 'stream' is true.", "stream_options"), out error);
        foreach (var option in so.EnumerateObject())
        {
            var param = $"stream_options.{Truncate(option.Name)}";
            if (option.Name is not ("include_usage" or "include_obfuscation"))
                return Fail(new ApiError(400, UnknownParameter, $"Unknown parameter: '{param}'. Only include_usage and include_obfuscation are known.", param), out error);
            if (option.Value.ValueKind == JsonValueKind.Null)
                continue;
            if (option.Value.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                return Fail(ApiError.Invalid($"'{param}' must be a boolean.", param), out error);
            if (option.Name == "include_usage")
                includeUsage = option.Value.GetBoolean();
        }
        return true;
    }

    /// <summary>Most alternatives <c>top_logprobs</c> may ask for (OpenAI's limit).</summary>
    public const int MaxTopLogprobs = 20;

    /// <summary>Most entries of <c>logit_bias</c> (OpenAI's limit).</summary>
    public const int MaxLogitBiasEntries = 300;

    /// <summary>
    /// <c>logit_bias</c>: an object of token ids (decimal strings) to numbers in -100..100, at most
    /// <see cref="MaxLogitBiasEntries"/>. Whether an id is in the model's vocabulary only the worker knows.
    /// </summary>
    private static bool TryLogitBias(JsonElement root, out IReadOnlyDictionary<int, double>? bias, out ApiError? error)
    {
        bias = null;
        error = null;
        if (!root.TryGetProperty("logit_bias", out var el) || el.ValueKind == JsonValueKind.Null)
            return true;
        if (el.ValueKind != JsonValueKind.Object)
            return Fail(ApiError.Invalid("'logit_bias' must be an object of token ids to numbers between -100 and 100.", "logit_bias"), out error);
        var map = new Dictionary<int, double>();
        foreach (var entry in el.EnumerateObject())
        {
            var param = $"logit_bias.{Truncate(entry.Name)}";
            if (map.Count == MaxLogitBiasEntries)
                return Fail(ApiError.Invalid($"'logit_bias' has more than {MaxLogitBiasEntries} entries.", "logit_bias"), out error);
            if (!int.TryParse(entry.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var token))
                return Fail(ApiError.Invalid($"'{param}': a key of 'logit_bias' must be a token id (a non-negative integer).", param), out error);
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetDouble(out var v) || v < -100 || v > 100)
                return Fail(ApiError.Invalid($"'{param}' must be a number between -100 and 100.", param), out error);
            if (!map.TryAdd(token, v))
                return Fail(ApiError.Invalid($"'{param}': token {token} appears twice in 'logit_bias'.", param), out error);
        }
        bias = map.Count == 0 ? null : map;
        return true;
    }

    /// <summary>
    /// <c>response_format</c>: <c>{"type":"text"}</c> (the default), <c>{"type":"json_object"}</c> or
    /// <c>{"type":"json_schema","json_schema":{"name","description"?,"schema","strict"?}}</c>. A schema is checked
    /// here (a keyword that cannot be honoured is refused, <c>param</c> giving its path); the worker builds the
    /// grammar from it.
    /// </summary>
    private static bool TryResponseFormat(JsonElement root, out ResponseFormat? format, out ApiError? error)
    {
        format = null;
        error = null;
        const string Param = "response_format";
        if (!root.TryGetProperty(Param, out var el) || el.ValueKind == JsonValueKind.Null)
            return true;
        if (el.ValueKind != JsonValueKind.Object || !el.TryGetProperty("type", out var typeEl) || typeEl.ValueKind != JsonValueKind.String)
            return Fail(ApiError.Invalid("'response_format' must be an object with a string 'type': text, json_object or json_schema.", Param), out error);
        var type = typeEl.GetString();
        string[] allowed = type switch
        {
            "text" or ResponseFormat.JsonObject => ["type"],
            ResponseFormat.JsonSchema => ["type", "json_schema"],
            _ => [],
        };
        if (allowed.Length == 0)
            return Fail(ApiError.Invalid($"'response_format.type' is '{Truncate(type)}'; expected text, json_object or json_schema.", "response_format.type"), out error);
        foreach (var extra in el.EnumerateObject())
            if (!allowed.Contains(extra.Name, StringComparer.Ordinal))
                return Fail(new ApiError(400, UnknownParameter, $"Unknown parameter: 'response_format.{Truncate(extra.Name)}' (type {type} takes {string.Join(", ", allowed)}).",
                    $"response_format.{Truncate(extra.Name)}"), out error);
        if (type == "text")
            return true;
        if (type == ResponseFormat.JsonObject)
        {
            format = new ResponseFormat { Type = ResponseFormat.JsonObject };
            return true;
        }

        const string JsParam = "response_format.json_schema";
        if (!el.TryGetProperty("json_schema", out var js) || js.ValueKind != JsonValueKind.Object)
            return Fail(ApiError.Invalid("'response_format.json_schema' is required with type json_schema and must be an object.", JsParam), out error);
        foreach (var p in js.EnumerateObject())
            if (p.Name is not ("name" or "description" or "schema" or "strict"))
                return Fail(new ApiError(400, UnknownParameter, $"Unknown parameter: '{JsParam}.{Truncate(p.Name)}' (known: name, description, schema, strict).",
                    $"{JsParam}.{Truncate(p.Name)}"), out error);
        if (!js.TryGetProperty("name", out var nameEl) || nameEl.ValueKind != JsonValueKind.String || !IsSchemaName(nameEl.GetString()!))
            return Fail(ApiError.Invalid("'response_format.json_schema.name' is required: 1 to 64 letters, digits, '_' or '-'.", $"{JsParam}.name"), out error);
        if (js.TryGetProperty("description", out var d) && d.ValueKind is not (JsonValueKind.String or JsonValueKind.Null))
            return Fail(ApiError.Invalid("'response_format.json_schema.description' must be a string.", $"{JsParam}.description"), out error);
        if (js.TryGetProperty("strict", out var strict) && strict.ValueKind is not (JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null))
            return Fail(ApiError.Invalid("'response_format.json_schema.strict' must be a boolean.", $"{JsParam}.strict"), out error);
        if (!js.TryGetProperty("schema", out var schema) || schema.ValueKind != JsonValueKind.Object)
            return Fail(ApiError.Invalid("'response_format.json_schema.schema' is required and must be a JSON Schema object.", $"{JsParam}.schema"), out error);
        if (!JsonGrammar.TryFromSchema(schema, $"{JsParam}.schema", out _, out var problem))
            return Fail(new ApiError(400, problem!.Unsupported ? UnsupportedParameter : ErrorCodes.InvalidRequest, problem.Message, problem.Param), out error);
        format = new ResponseFormat { Type = ResponseFormat.JsonSchema, Name = nameEl.GetString(), Schema = schema.GetRawText() };
        return true;
    }

    private static bool IsSchemaName(string name) =>
        name.Length is >= 1 and <= 64 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-');

    /// <summary>Text for the model may hold any Unicode text, tabs and line breaks, but no other control characters (NUL, escape…).</summary>
    public static bool CheckText(string text, string param, out ApiError? error)
    {
        error = null;
        foreach (var c in text)
            if (char.IsControl(c) && c is not ('\t' or '\n' or '\r'))
                return Fail(ApiError.Invalid($"'{param}' contains control character U+{(int)c:X4}; only tabs and line breaks are allowed.", param), out error);
        return true;
    }

    /// <summary>
    /// A message's <c>content</c>: a string, or an array of text parts (<c>{"type":"text","text":"..."}</c>), read as
    /// their texts one after the other. Any other part (image_url, input_audio, file, refusal) is refused naming it,
    /// and so is any other field of a text part: nothing in a message is dropped silently.
    /// </summary>
    private static bool TryReadContent(JsonElement el, string param, out string content, out ApiError? error)
    {
        content = "";
        error = null;
        if (el.ValueKind == JsonValueKind.String)
        {
            content = el.GetString()!;
            return true;
        }
        if (el.ValueKind != JsonValueKind.Array)
            return Fail(ApiError.Invalid($"'{param}' must be a string or an array of text parts.", param), out error);
        var sb = new System.Text.StringBuilder();
        var i = 0;
        foreach (var part in el.EnumerateArray())
        {
            var partParam = $"{param}[{i++}]";
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
                return Fail(ApiError.Invalid($"'{partParam}' must be an object with a string 'type' (a text part: {{\"type\":\"text\",\"text\":\"...\"}}).", partParam), out error);
            if (type.GetString() != "text")
                return Fail(new ApiError(400, UnsupportedParameter,
                    $"'{partParam}.type' is '{Truncate(type.GetString())}': only text parts are supported (the models here read text only). Send the content as text.", $"{partParam}.type"), out error);
            foreach (var field in part.EnumerateObject())
                if (field.Name is not ("type" or "text"))
                    return Fail(new ApiError(400, UnknownParameter, $"Unknown parameter: '{partParam}.{Truncate(field.Name)}'. A text part has only 'type' and 'text'.",
                        $"{partParam}.{Truncate(field.Name)}"), out error);
            if (!part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                return Fail(ApiError.Invalid($"'{partParam}.text' is required and must be a string.", $"{partParam}.text"), out error);
            sb.Append(text.GetString());
        }
        content = sb.ToString();
        return true;
    }

    /// <summary>
    /// The fields of one message besides <c>role</c> and <c>content</c>. OpenAI's <c>name</c>, <c>tool_calls</c>,
    /// <c>tool_call_id</c>, <c>function_call</c>, <c>refusal</c> and <c>audio</c> cannot be honoured (the prompt
    /// template has no place for names; the models call no tools) and are refused with 400
    /// <c>unsupported_parameter</c> naming them (<c>messages[0].tool_calls</c>) unless null (or <c>tool_calls: []</c>);
    /// any other field is refused as unknown.
    /// </summary>
    private static bool CheckMessageFields(JsonElement message, string param, out ApiError? error)
    {
        error = null;
        foreach (var field in message.EnumerateObject())
        {
            var name = $"{param}.{Truncate(field.Name)}";
            if (field.Name is "role" or "content")
                continue;
            if (!MessageFieldRefusals.TryGetValue(field.Name, out var refusal))
                return Fail(new ApiError(400, UnknownParameter,
                    $"Unknown parameter: '{name}'. A message has role and content (README.md lists the message fields).", name), out error);
            if (field.Value.ValueKind == JsonValueKind.Null || (field.Name == "tool_calls" && IsEmptyArray(field.Value)))
                continue;
            return Fail(new ApiError(400, UnsupportedParameter, $"'{name}' is not supported: {refusal}", name), out error);
        }
        return true;
    }

    /// <summary>OpenAI's message fields this server knows but cannot honour, and why (README.md's message field table).</summary>
    private static readonly Dictionary<string, string> MessageFieldRefusals = new(StringComparer.Ordinal)
    {
        ["name"] = "the prompt template has no place for a participant's name. Remove it, or write the name into the content.",
        ["tool_calls"] = "the models here do not call tools. Remove it (or send []) and put the tools' results in the messages as text.",
        ["tool_call_id"] = "the models here do not call tools, so there is no tool call to answer. Remove it.",
        ["function_call"] = "the models here do not call functions. Remove it.",
        ["refusal"] = "a refusal is not read back into the conversation. Remove it (or send null) and put the text in 'content'.",
        ["audio"] = "answers are text only, so there is no earlier audio answer to refer to. Remove it.",
    };

    /// <summary>Every field a message may carry and its status (README.md's message field table lists the same).</summary>
    public static IReadOnlyDictionary<string, FieldStatus> MessageFields { get; } =
        new[] { "role", "content" }.ToDictionary(f => f, _ => FieldStatus.Supported, StringComparer.Ordinal)
            .Concat(MessageFieldRefusals.Keys.ToDictionary(f => f, _ => FieldStatus.Refused, StringComparer.Ordinal))
            .ToDictionary(StringComparer.Ordinal);

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
