namespace QwenNats.Messaging;

/// <summary>
/// Checks that read chat answers themselves; pure. Shared by the judge (the <c>chat_defects</c> check on mirrored
/// pairs) and the promoter (the golden chat gate and <c>qwen.ctl.compare</c>), so both call the same thing a defect.
/// </summary>
public static class TextChecks
{
    /// <summary>Names of the defects <see cref="Defects"/> reports, in the order it reports them.</summary>
    public static class Names
    {
        public const string Empty = "empty";
        public const string BrokenUtf8 = "broken_utf8";
        public const string Looping = "looping";
        public const string CutOff = "cut_off";
        public const string Refusal = "refusal";
        public const string WrongLanguage = "wrong_language";
        /// <summary>Paired only (<see cref="PairDefects"/>): the candidate sounds different from live.</summary>
        public const string Tone = "tone";
    }

    /// <summary>
    /// Every defect of one chat answer: empty, broken UTF-8, runaway repetition, cut at <c>max_tokens</c>
    /// (<paramref name="finishReason"/> <c>length</c>), a refusal, or another writing system than the user's message.
    /// </summary>
    public static IReadOnlyList<string> Defects(string? userText, string? answer, string? finishReason)
    {
        var found = new List<string>(2);
        if (IsEmpty(answer)) found.Add(Names.Empty);
        if (IsBrokenUtf8(answer)) found.Add(Names.BrokenUtf8);
        if (IsRepetitive(answer)) found.Add(Names.Looping);
        if (finishReason == FinishReasons.Length) found.Add(Names.CutOff);
        if (IsRefusal(answer)) found.Add(Names.Refusal);
        if (IsWrongLanguage(userText, answer)) found.Add(Names.WrongLanguage);
        return found;
    }

    /// <summary>Defects the candidate's answer has that live's answer to the same input has not: what the judge counts.</summary>
    public static IReadOnlyList<string> NewDefects(IReadOnlyList<string> live, IReadOnlyList<string> candidate) =>
        candidate.Where(d => !live.Contains(d, StringComparer.Ordinal)).ToArray();

    /// <summary>
    /// What the candidate's answer has that live's answer to the same input has not: its new defects, then a
    /// changed tone (<see cref="Tone.Change"/>, named <c>tone: …</c>).
    /// </summary>
    public static IReadOnlyList<string> PairDefects(string? userText, string? liveText, string? liveFinish, string? candidateText, string? candidateFinish)
    {
        var found = NewDefects(Defects(userText, liveText, liveFinish), Defects(userText, candidateText, candidateFinish)).ToList();
        if (Tone.Change(liveText, candidateText) is { } tone)
            found.Add($"{Names.Tone}: {tone}");
        return found;
    }

    public static bool IsEmpty(string? text) => string.IsNullOrWhiteSpace(text);

    /// <summary>Replacement characters or lone surrogates: text that was cut inside a UTF-8 sequence.</summary>
    public static bool IsBrokenUtf8(string? text)
    {
        if (text is null) return false;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (c == '\uFFFD') return true;
            if (char.IsHighSurrogate(c) && (i + 1 >= text.Length || !char.IsLowSurrogate(text[i + 1]))) return true;
            if (char.IsLowSurrogate(c) && (i == 0 || !char.IsHighSurrogate(text[i - 1]))) return true;
        }
        return false;
    }

    /// <summary>Runaway repetition: a long answer whose word (or CJK character) trigrams are mostly repeats.</summary>
    public static bool IsRepetitive(string? text, int minUnits = 12, double maxRepeatShare = 0.6)
    {
        var units = Units(text);
        if (units.Count < minUnits) return false;
        var grams = new List<string>(units.Count);
        for (var i = 0; i + 2 < units.Count; i++)
            grams.Add($"{units[i]}\u0001{units[i + 1]}\u0001{units[i + 2]}");
        var distinct = grams.Distinct(StringComparer.Ordinal).Count();
        return 1.0 - (double)distinct / grams.Count > maxRepeatShare;
    }

    /// <summary>The writing system most of a text's letters are in: <c>"cjk"</c>, <c>"latin"</c>, or null when it has too few letters to tell.</summary>
    public static string? Script(string? text, int minLetters = 4)
    {
        if (text is null) return null;
        int cjk = 0, latin = 0;
        foreach (var c in text)
        {
            if (c is >= '\u4E00' and <= '\u9FFF' or >= '\u3400' and <= '\u4DBF' or >= '\u3040' and <= '\u30FF' or >= '\uAC00' and <= '\uD7AF') cjk++;
            else if (char.IsAsciiLetter(c) || (c is >= '\u00C0' and <= '\u024F')) latin++;
        }
        // A CJK character carries about as much as a Latin word: weigh them so mixed text leans the right way.
        if (cjk + latin < minLetters && cjk < 2) return null;
        return cjk * 4 >= latin ? "cjk" : "latin";
    }

    /// <summary>
    /// The answer is in another writing system than the user's last message (a Chinese question answered in
    /// English, or the reverse). Unknown when either is too short to tell.
    /// </summary>
    public static bool IsWrongLanguage(string? userText, string? answer)
    {
        var asked = Script(userText);
        var answered = Script(answer);
        return asked is not null && answered is not null && asked != answered;
    }

    private static readonly string[] RefusalMarkers =
    [
        "i'm sorry, but i can't", "i am sorry, but i can't", "i cannot help with", "i can't help with", "i can't assist with",
        "i cannot assist with", "i'm unable to", "i am unable to", "as an ai language model", "i won't be able to",
        "抱歉,我无法", "抱歉，我无法", "对不起,我不能", "对不起，我不能", "我无法回答", "我不能回答", "作为一个ai", "作为一个人工智能", "我无法提供", "我不能提供",
    ];

    /// <summary>The answer opens with a refusal (English or Chinese) instead of answering.</summary>
    public static bool IsRefusal(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return false;
        var head = text.Trim().ToLowerInvariant();
        if (head.Length > 160) head = head[..160];
        return RefusalMarkers.Any(m => head.Contains(m, StringComparison.Ordinal));
    }

    /// <summary>Character-trigram Jaccard similarity in [0, 1].</summary>
    public static double Similarity(string? a, string? b)
    {
        var ga = Trigrams(a ?? "");
        var gb = Trigrams(b ?? "");
        if (ga.Count == 0 && gb.Count == 0) return 1;
        var inter = ga.Count(gb.Contains);
        return (double)inter / (ga.Count + gb.Count - inter);
    }

    private static HashSet<string> Trigrams(string s)
    {
        var set = new HashSet<string>(StringComparer.Ordinal);
        var t = s.Trim().ToLowerInvariant();
        for (var i = 0; i + 3 <= t.Length; i++) set.Add(t.Substring(i, 3));
        return set;
    }

    private static List<string> Units(string? text)
    {
        var units = new List<string>();
        if (text is null) return units;
        var word = new System.Text.StringBuilder();
        foreach (var c in text)
        {
            if (c >= '\u3400' && c <= '\u9FFF')
            {
                if (word.Length > 0) { units.Add(word.ToString()); word.Clear(); }
                units.Add(c.ToString());
            }
            else if (char.IsWhiteSpace(c) || char.IsPunctuation(c))
            {
                if (word.Length > 0) { units.Add(word.ToString()); word.Clear(); }
            }
            else
            {
                word.Append(char.ToLowerInvariant(c));
            }
        }
        if (word.Length > 0) units.Add(word.ToString());
        return units;
    }
}
