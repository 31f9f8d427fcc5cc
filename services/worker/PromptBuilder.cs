using QwenNats.Messaging;

namespace QwenNats.Worker;

/// <summary>Renders a conversation into prompt text.</summary>
public interface IChatFormatter
{
    string Format(IReadOnlyList<ChatMessage> messages);
}

/// <summary>The profile's own template: one part per role plus the generation prompt.</summary>
public sealed class ProfileChatFormatter(ChatTemplateSpec spec) : IChatFormatter
{
    public string Format(IReadOnlyList<ChatMessage> messages)
    {
        var sb = new System.Text.StringBuilder();
        foreach (var m in messages)
        {
            var part = m.Role switch
            {
                ChatRoles.System => spec.System,
                ChatRoles.User => spec.User,
                ChatRoles.Assistant => spec.Assistant,
                _ => throw new ArgumentException($"Unknown role '{m.Role}'", nameof(messages)),
            };
            sb.Append(part.Replace("{content}", m.Content, StringComparison.Ordinal));
        }
        sb.Append(spec.GenerationPrompt);
        return sb.ToString();
    }
}

/// <summary>
/// Client text cannot become control tokens: prompts are tokenized with special tokens enabled (the
/// templates need them), so markers such as <c>&lt;|im_start|&gt;</c> or <c>&lt;/s&gt;</c> typed by a user are
/// broken with a zero-width space and stay plain text — a user cannot close their turn and open a system one.
/// </summary>
public static class ClientText
{
    private const string ZeroWidthSpace = "\u200B";

    public static string Neutralize(string text)
    {
        if (text.IndexOf('<') < 0) return text;
        return text
            .Replace("<|", "<" + ZeroWidthSpace + "|", StringComparison.Ordinal)
            .Replace("|>", "|" + ZeroWidthSpace + ">", StringComparison.Ordinal)
            .Replace("<s>", "<" + ZeroWidthSpace + "s>", StringComparison.Ordinal)
            .Replace("</s>", "<" + ZeroWidthSpace + "/s>", StringComparison.Ordinal)
            .Replace("<unk>", "<" + ZeroWidthSpace + "unk>", StringComparison.Ordinal);
    }
}

/// <summary>Builds the prompts of both tasks from a profile; pure, so it is unit-tested without a model.</summary>
public sealed class PromptBuilder(PromptProfile profile, IChatFormatter formatter)
{
    public PromptProfile Profile => profile;

    /// <summary>The conversation, with the profile's system prompt first unless the caller sent its own.</summary>
    public string Chat(IReadOnlyList<ChatMessage> messages)
    {
        messages = messages.Select(m => m with { Content = ClientText.Neutralize(m.Content) }).ToList();
        var hasSystem = messages.Count > 0 && messages[0].Role == ChatRoles.System;
        if (hasSystem || string.IsNullOrEmpty(profile.Chat.SystemPrompt))
            return formatter.Format(messages);
        var withSystem = new List<ChatMessage>(messages.Count + 1) { new(ChatRoles.System, profile.Chat.SystemPrompt) };
        withSystem.AddRange(messages);
        return formatter.Format(withSystem);
    }

    /// <summary>
    /// A legacy completion's prompt: the client's text as it is, with no template and no system prompt (the model
    /// continues it). Like every client text, markers of control tokens stay plain text.
    /// </summary>
    public static string Raw(string prompt) => ClientText.Neutralize(prompt);

    /// <summary>The classification prompt; each label is scored as its continuation.</summary>
    public string Sentiment(string input)
    {
        var messages = new List<ChatMessage>(2);
        if (!string.IsNullOrEmpty(profile.Sentiment.SystemPrompt))
            messages.Add(new ChatMessage(ChatRoles.System, profile.Sentiment.SystemPrompt));
        messages.Add(new ChatMessage(ChatRoles.User, profile.Sentiment.UserTemplate.Replace("{input}", ClientText.Neutralize(input), StringComparison.Ordinal)));
        return formatter.Format(messages) + profile.Sentiment.AnswerPrefix;
    }
}
