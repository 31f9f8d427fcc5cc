namespace QwenNats.Worker;

/// <summary>
/// Finds stop strings in streamed text. Text that could still be the start of a stop string is
/// held back, so a client never sees part of a stop string; the stop string itself is never emitted.
/// </summary>
public sealed class StopMatcher(IReadOnlyList<string> stops)
{
    private readonly string[] _stops = stops.Where(s => !string.IsNullOrEmpty(s)).Distinct(StringComparer.Ordinal).ToArray();
    private string _pending = "";

    public bool Stopped { get; private set; }

    /// <summary>Adds text; returns what can be emitted now.</summary>
    public string Push(string text)
    {
        if (Stopped || text.Length == 0)
            return "";
        var buffer = _pending + text;
        var first = -1;
        foreach (var stop in _stops)
        {
            var at = buffer.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first))
                first = at;
        }
        if (first >= 0)
        {
            Stopped = true;
            _pending = "";
            return buffer[..first];
        }
        var hold = LongestStopPrefixSuffix(buffer);
        _pending = buffer[^hold..];
        return buffer[..^hold];
    }

    /// <summary>Whatever was held back, at the end of generation.</summary>
    public string Flush()
    {
        var rest = Stopped ? "" : _pending;
        _pending = "";
        return rest;
    }

    private int LongestStopPrefixSuffix(string buffer)
    {
        var best = 0;
        foreach (var stop in _stops)
        {
            for (var len = Math.Min(stop.Length - 1, buffer.Length); len > best; len--)
            {
                if (buffer.AsSpan(buffer.Length - len).SequenceEqual(stop.AsSpan(0, len)))
                {
                    best = len;
                    break;
                }
            }
        }
        return best;
    }
}
