using System.Text.Json;
using System.Text.Json.Serialization;

namespace QwenNats.Messaging;

/// <summary>
/// A versioned prompt profile (deploy/profiles/*.json): how both tasks are asked of the model
/// and with which sampling defaults. Shipping a new profile is one kind of new version.
/// </summary>
/// <remarks>Its parts have setters, not <c>init</c>: System.Text.Json's source generator sets init-only properties in
/// an object initializer, so a field a profile leaves out would get the type's default (a temperature of 0, a null
/// stop list) instead of the default written here.</remarks>
public sealed record PromptProfile
{
    public required string Version { get; set; }
    public string Description { get; set; } = "";
    public ChatTemplateSpec Template { get; set; } = new();
    public required ChatProfile Chat { get; set; }
    public required SentimentProfile Sentiment { get; set; }

    public static PromptProfile Load(string path)
    {
        if (string.IsNullOrWhiteSpace(path))
            throw new InvalidOperationException("Worker:ProfilePath is not set; point it at a prompt profile such as deploy/profiles/v1.json.");
        if (!File.Exists(path))
            throw new FileNotFoundException($"Prompt profile '{path}' does not exist.", path);
        PromptProfile? profile;
        try
        {
            profile = JsonSerializer.Deserialize(File.ReadAllText(path), ProfileJsonContext.Default.PromptProfile);
        }
        catch (JsonException e)
        {
            throw new InvalidOperationException($"Prompt profile '{path}' is not valid: {e.Message}", e);
        }
        if (profile is null)
            throw new InvalidOperationException($"Prompt profile '{path}' is empty.");
        profile.Validate(path);
        return profile;
    }

    public void Validate(string source)
    {
        // JSON may say null where the type has a default: named here, before anything reads them.
        if (NullFields().ToList() is { Count: > 0 } nulls)
            throw new InvalidOperationException($"Prompt profile '{source}' is not valid: {string.Join(", ", nulls)} must not be null");
        var problems = new List<string>();
        if (string.IsNullOrWhiteSpace(Version)) problems.Add("version is empty");
        else if (Version.Length > 64 || Version.Any(c => c is <= ' ' or >= (char)0x7F))
            problems.Add("version must be 1 to 64 visible ASCII characters (answers name it in their X-Qwen-Profile header)");
        if (Sentiment.Labels.Count < 2) problems.Add("sentiment.labels needs at least two labels");
        if (Sentiment.Labels.Distinct(StringComparer.Ordinal).Count() != Sentiment.Labels.Count) problems.Add("sentiment.labels has duplicates");
        if (Sentiment.Labels.Any(string.IsNullOrWhiteSpace)) problems.Add("sentiment.labels has an empty label");
        if (!Sentiment.UserTemplate.Contains("{input}", StringComparison.Ordinal)) problems.Add("sentiment.user_template must contain {input}");
        if (Chat.MaxTokens <= 0) problems.Add("chat.max_tokens must be positive");
        if (Chat.Temperature < 0) problems.Add("chat.temperature must not be negative");
        if (Chat.TopP is <= 0 or > 1) problems.Add("chat.top_p must be in (0, 1]");
        if (Chat.History.Overflow is not (HistoryPolicy.DropOldest or HistoryPolicy.Refuse))
            problems.Add($"chat.history.overflow must be '{HistoryPolicy.DropOldest}' or '{HistoryPolicy.Refuse}'");
        if (Chat.History.AnswerRoom < 1) problems.Add("chat.history.answer_room must be at least 1");
        foreach (var (name, part) in Template.Parts())
            if (!part.Contains("{content}", StringComparison.Ordinal)) problems.Add($"template.{name} must contain {{content}}");
        if (problems.Count > 0)
            throw new InvalidOperationException($"Prompt profile '{source}' is not valid: {string.Join("; ", problems)}");
    }

    private IEnumerable<string> NullFields()
    {
        if (Version is null) yield return "version";
        if (Description is null) yield return "description";
        if (Chat is null) yield return "chat";
        else
        {
            if (Chat.SystemPrompt is null) yield return "chat.system_prompt";
            if (Chat.Stop is null) yield return "chat.stop";
            else if (Chat.Stop.Any(s => s is null)) yield return "an entry of chat.stop";
            if (Chat.History is null) yield return "chat.history";
            else if (Chat.History.Overflow is null) yield return "chat.history.overflow";
        }
        if (Sentiment is null) yield return "sentiment";
        else
        {
            if (Sentiment.SystemPrompt is null) yield return "sentiment.system_prompt";
            if (Sentiment.UserTemplate is null) yield return "sentiment.user_template";
            if (Sentiment.AnswerPrefix is null) yield return "sentiment.answer_prefix";
            if (Sentiment.Labels is null) yield return "sentiment.labels";
            else if (Sentiment.Labels.Any(l => l is null)) yield return "an entry of sentiment.labels";
        }
        if (Template is null) yield return "template";
        else
            foreach (var (name, part) in Template.Parts().Append(("generation_prompt", Template.GenerationPrompt)))
                if (part is null) yield return $"template.{name}";
    }
}

public sealed record ChatProfile
{
    public string SystemPrompt { get; set; } = "";
    public double Temperature { get; set; } = 0.7;
    public double TopP { get; set; } = 0.9;
    public int MaxTokens { get; set; } = 256;
    public IReadOnlyList<string> Stop { get; set; } = [];
    /// <summary>What happens when a conversation no longer fits the context.</summary>
    public HistoryPolicy History { get; set; } = new();
}

/// <summary>
/// The <c>chat.history</c> section of a profile: a conversation longer than the worker's context either loses
/// its oldest turns (the system prompt and the newest user message are always kept) or is refused.
/// </summary>
public sealed record HistoryPolicy
{
    public const string DropOldest = "drop_oldest";
    public const string Refuse = "refuse";

    /// <summary><see cref="DropOldest"/> (default) or <see cref="Refuse"/> (400 <c>context_length_exceeded</c>).</summary>
    public string Overflow { get; set; } = DropOldest;

    /// <summary>Tokens left free for the answer: older turns are dropped until the prompt leaves at least this many
    /// (or the request's <c>max_tokens</c>, if smaller).</summary>
    public int AnswerRoom { get; set; } = 64;
}

public sealed record SentimentProfile
{
    public string SystemPrompt { get; set; } = "";
    /// <summary>The user turn; <c>{input}</c> is replaced by the text to classify.</summary>
    public string UserTemplate { get; set; } = "{input}";
    /// <summary>Text placed after the assistant's generation prompt, before the label.</summary>
    public string AnswerPrefix { get; set; } = "";
    /// <summary>The labels; each is scored as a continuation of the prompt.</summary>
    public IReadOnlyList<string> Labels { get; set; } = [];
}

/// <summary>
/// The fallback chat template for models whose GGUF has none (or when the profile asks for it).
/// Each part holds <c>{content}</c>.
/// </summary>
public sealed record ChatTemplateSpec
{
    /// <summary>Use the GGUF's own chat template when it has one.</summary>
    public bool UseModelTemplate { get; set; } = true;
    public string System { get; set; } = "<|im_start|>system\n{content}<|im_end|>\n";
    public string User { get; set; } = "<|im_start|>user\n{content}<|im_end|>\n";
    public string Assistant { get; set; } = "<|im_start|>assistant\n{content}<|im_end|>\n";
    public string GenerationPrompt { get; set; } = "<|im_start|>assistant\n";

    public IEnumerable<(string Name, string Part)> Parts()
    {
        yield return ("system", System);
        yield return ("user", User);
        yield return ("assistant", Assistant);
    }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, ReadCommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true)]
[JsonSerializable(typeof(PromptProfile))]
public sealed partial class ProfileJsonContext : JsonSerializerContext;
