namespace QwenNats.Messaging.Internal;

/// <summary>The project's one percentile convention: nearest rank on sorted values.</summary>
public static class Percentiles
{
    /// <summary>
    /// Nearest-rank percentile of ascending <paramref name="sorted"/> values for <paramref name="q"/> in [0, 1]:
    /// the smallest value with at least a <paramref name="q"/> share of values at or below it. 0 when there are none.
    /// </summary>
    public static double NearestRank(IReadOnlyList<double> sorted, double q)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(q, 0);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(q, 1);
        if (sorted.Count == 0) return 0;
        var rank = (int)Math.Ceiling(q * sorted.Count) - 1;
        return sorted[Math.Clamp(rank, 0, sorted.Count - 1)];
    }

    /// <summary>Sorts a copy of <paramref name="values"/> and takes its nearest-rank percentile.</summary>
    public static double Of(IEnumerable<double> values, double q)
    {
        var sorted = values.ToArray();
        Array.Sort(sorted);
        return NearestRank(sorted, q);
    }
}
