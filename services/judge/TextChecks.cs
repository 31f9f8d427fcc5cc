namespace QwenNats.Judge;

/// <summary>Checks that read the answers themselves; pure.</summary>
public static class TextChecks
{
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

/// <summary>Statistics helpers; pure.</summary>
public static class Stats
{
    /// <summary>Wilson score interval lower bound of a proportion.</summary>
    public static double WilsonLower(int successes, int n, double z)
    {
        if (n == 0) return 0;
        var p = (double)successes / n;
        var z2 = z * z;
        var centre = p + z2 / (2 * n);
        var margin = z * Math.Sqrt(p * (1 - p) / n + z2 / (4.0 * n * n));
        return Math.Max(0, (centre - margin) / (1 + z2 / n));
    }

    /// <summary>Nearest-rank percentile.</summary>
    public static double Percentile(IReadOnlyCollection<double> values, double percentile)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.OrderBy(v => v).ToArray();
        var rank = (int)Math.Ceiling(percentile / 100 * sorted.Length) - 1;
        return sorted[Math.Clamp(rank, 0, sorted.Length - 1)];
    }
}
