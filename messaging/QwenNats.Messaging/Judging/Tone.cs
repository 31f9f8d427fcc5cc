namespace QwenNats.Messaging;

/// <summary>How an answer sounds, in the few ways a release can change it that rules can see; pure.</summary>
/// <param name="Rude">Insults or dismissal (English or Chinese).</param>
/// <param name="Shouting">Mostly capital letters, or a run of exclamation marks.</param>
/// <param name="Register">Chinese form of address: <c>"formal"</c> (您), <c>"informal"</c> (你 without 您), or null when the answer addresses no one.</param>
/// <param name="Emoji">Emoji or emoticons.</param>
public sealed record ToneProfile(bool Rude, bool Shouting, string? Register, bool Emoji);

/// <summary>
/// Tone: whether a candidate's answer sounds different from live's answer to the same prompt — ruder,
/// shouting, another form of address (您 ↔ 你), emoji where live had none. Each is compared with live's
/// answer, so a user's own tone that both colours mirror is not a change.
/// </summary>
public static class Tone
{
    private static readonly string[] RudeWords =
    [
        "stupid question", "dumb question", "useless question", "you idiot", "idiot", "moron", "shut up", "who cares",
        "nobody cares", "not my problem", "figure it out yourself", "go away", "leave me alone", "get lost", "ugh", "duh",
    ];

    private static readonly string[] RudeChinese =
    [
        "笨蛋", "白痴", "蠢问题", "你真蠢", "闭嘴", "滚开", "关我什么事", "烦死了", "废话", "无聊的问题", "懒得理你", "随便你",
    ];

    public static ToneProfile Of(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
            return new ToneProfile(false, false, null, false);
        return new ToneProfile(IsRude(text), IsShouting(text), Register(text), HasEmoji(text));
    }

    /// <summary>What changed from live's tone to the candidate's, or null when nothing did.</summary>
    public static string? Change(string? live, string? candidate)
    {
        var (l, c) = (Of(live), Of(candidate));
        if (c.Rude && !l.Rude) return "rude";
        if (c.Shouting && !l.Shouting) return "shouting";
        if (l.Register is not null && c.Register is not null && l.Register != c.Register) return $"address {l.Register} to {c.Register}";
        if (c.Emoji && !l.Emoji) return "emoji";
        return null;
    }

    public static bool IsRude(string text)
    {
        if (RudeChinese.Any(w => text.Contains(w, StringComparison.Ordinal)))
            return true;
        // Whole words only: "ugh" is not in "laugh", "dumb" not in "dumbbell".
        var words = " " + new string(text.ToLowerInvariant().Select(ch => char.IsLetter(ch) ? ch : ' ').ToArray()) + " ";
        words = System.Text.RegularExpressions.Regex.Replace(words, " +", " ");
        return RudeWords.Any(w => words.Contains($" {w} ", StringComparison.Ordinal));
    }

    public static bool IsShouting(string text, int minLetters = 12, double minCapitalShare = 0.6, int exclamations = 3)
    {
        if (text.Count(ch => ch is '!' or '！') >= exclamations)
            return true;
        int letters = 0, capitals = 0;
        foreach (var ch in text)
        {
            if (!char.IsAsciiLetter(ch)) continue;
            letters++;
            if (char.IsAsciiLetterUpper(ch)) capitals++;
        }
        return letters >= minLetters && capitals >= minCapitalShare * letters;
    }

    public static string? Register(string text) =>
        text.Contains('您') ? "formal" : text.Contains('你') ? "informal" : null;

    public static bool HasEmoji(string text)
    {
        for (var i = 0; i < text.Length; i++)
        {
            var cp = char.IsSurrogatePair(text, i) ? char.ConvertToUtf32(text, i) : text[i];
            // Emoticons, symbols and pictographs, transport, supplemental symbols; dingbats and misc symbols.
            if (cp is >= 0x1F300 and <= 0x1FAFF or >= 0x2600 and <= 0x27BF)
                return true;
        }
        return text.Contains(":)", StringComparison.Ordinal) || text.Contains(":-)", StringComparison.Ordinal)
            || text.Contains(":D", StringComparison.Ordinal) || text.Contains("^_^", StringComparison.Ordinal);
    }
}
