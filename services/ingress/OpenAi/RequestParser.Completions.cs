using System.Text.Json;
using QwenNats.Messaging;

namespace QwenNats.Ingress.OpenAi;

/// <summary>A validated legacy completion request (<c>POST /v1/completions</c>).</summary>
public sealed record CompletionRequest(
    string Prompt,
    string? Model,
    SamplingParams Sampling,
    bool Stream,
    bool IncludeUsage,
    bool Echo,
    int? Logprobs,
    string? User);

public static partial class RequestParser
{
    /// <summary>Most alternatives the legacy <c>logprobs</c> integer may ask for (OpenAI's limit).</summary>
    public const int MaxCompletionLogprobs = 5;

    private static bool IsOne(JsonElement e) => e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out var n) && n == 1;

    /// <summary>
    /// Every field of OpenAI's legacy completions request and what this server does with it. A field not listed
    /// here is refused as unknown. README.md's completions field table lists the same fields.
    /// </summary>
    private static readonly Dictionary<string, FieldRule> CompletionFieldRules = new(StringComparer.Ordinal)
    {
        ["prompt"] = new(FieldStatus.Supported),
        ["model"] = new(FieldStatus.Supported),
        ["temperature"] = new(FieldStatus.Supported),
        ["top_p"] = new(FieldStatus.Supported),
        ["max_tokens"] = new(FieldStatus.Supported),
        ["stop"] = new(FieldStatus.Supported),
        ["seed"] = new(FieldStatus.Supported),
        ["stream"] = new(FieldStatus.Supported),
        ["stream_options"] = new(FieldStatus.Supported),
        ["user"] = new(FieldStatus.Supported),
        ["presence_penalty"] = new(FieldStatus.Supported),
        ["frequency_penalty"] = new(FieldStatus.Supported),
        ["logit_bias"] = new(FieldStatus.Supported),
        ["logprobs"] = new(FieldStatus.Supported),
        ["echo"] = new(FieldStatus.Supported),

        ["suffix"] = new(FieldStatus.Refused, e => e.ValueKind == JsonValueKind.String && e.GetString()!.Length == 0,
            "'suffix' is not supported: the models here cannot fill in text before a suffix. Remove it (or send \"\") and put all the text in 'prompt'."),
        ["best_of"] = new(FieldStatus.Refused, IsOne,
            "'best_of' is not supported: one completion is generated per request. Remove it or send 1."),
        ["n"] = new(FieldStatus.Refused, IsOne,
            "'n' is not supported: one choice is generated per request. Remove it or send 1, and send several requests for several answers."),
    };

    /// <summary>Every known completions field and its status (README.md's completions field table lists the same).</summary>
    public static IReadOnlyDictionary<string, FieldStatus> CompletionFields { get; } =
        CompletionFieldRules.ToDictionary(r => r.Key, r => r.Value.Status, StringComparer.Ordinal);

    /// <summary>
    /// Validates a legacy completions body: <c>prompt</c> one string (arrays of strings or of token ids are refused,
    /// naming <c>prompt</c>), the shared sampling fields, <c>logprobs</c> an integer 0 to 5, <c>echo</c>, streaming.
    /// </summary>
    public static bool TryParseCompletion(JsonElement root, int maxTokensLimit, out CompletionRequest request, out ApiError? error, int maxPromptChars = 65_536)
    {
        request = null!;
        error = null;
        if (root.ValueKind != JsonValueKind.Object)
            return Fail(ApiError.Invalid("The request body must be a JSON object."), out error);
        if (!CheckFields(root, CompletionFieldRules, out error))
            return false;

        if (!root.TryGetProperty("prompt", out var promptEl) || promptEl.ValueKind == JsonValueKind.Null)
            return Fail(ApiError.Invalid("'prompt' is required: the text to continue.", "prompt"), out error);
        if (promptEl.ValueKind == JsonValueKind.Array)
            return Fail(new ApiError(400, UnsupportedParameter,
                "'prompt' as an array (several prompts, or token ids) is not supported: one completion is generated per request. Send one string, and one request per prompt.",
                "prompt"), out error);
        if (promptEl.ValueKind != JsonValueKind.String)
            return Fail(ApiError.Invalid("'prompt' must be a string.", "prompt"), out error);
        var prompt = promptEl.GetString()!;
        if (prompt.Length == 0)
            return Fail(ApiError.Invalid("'prompt' must not be empty.", "prompt"), out error);
        if (prompt.Length > maxPromptChars)
            return Fail(new ApiError(400, PromptTooLong, $"'prompt' has {prompt.Length} characters; the limit is {maxPromptChars}.", "prompt"), out error);
        if (!CheckText(prompt, "prompt", out error))
            return false;

        if (!TryOptionalString(root, "model", out var model, out error)) return false;
        if (!TryOptionalString(root, "user", out var user, out error)) return false;
        if (!TryParseSampling(root, maxTokensLimit, out var sampling, out error)) return false;
        if (!TryOptionalBool(root, "stream", out var stream, out error)) return false;
        if (!TryStreamOptions(root, stream ?? false, out var includeUsage, out error)) return false;
        if (!TryOptionalBool(root, "echo", out var echo, out error)) return false;
        if (!TryOptionalInt(root, "logprobs", 0, MaxCompletionLogprobs, out var logprobs, out error)) return false;
        if (echo == true && logprobs is not null)
            return Fail(new ApiError(400, UnsupportedParameter,
                "'echo' together with 'logprobs' is not supported: the log-probabilities of the prompt's tokens are not computed. Send one of them.", "echo"), out error);

        request = new CompletionRequest(prompt, model, sampling with
        {
            Logprobs = logprobs is null ? null : true,
            TopLogprobs = logprobs is null ? null : (int)logprobs.Value,
        }, stream ?? false, includeUsage, echo ?? false, (int?)logprobs, user);
        return true;
    }
}
