using QwenNats.Messaging.Internal;
namespace QwenNats.Ingress.OperatorConsole;

/// <summary>One colour's request latency over the recent window.</summary>
public sealed record ColourLatency(string Colour, int Requests, int Errors, double P50Ms, double P95Ms);

/// <summary>
/// Latencies of the requests this ingress finished in the last <c>window</c>, by colour, for the console's
/// live chart. Bounded: beyond <c>capacity</c> entries the oldest are forgotten.
/// </summary>
public sealed class RecentLatency(TimeSpan window, int capacity = 4096)
{
    private readonly Queue<(long AtMs, string Colour, double Ms, bool Ok)> _entries = new();
    private readonly Lock _gate = new();

    public void Record(long atMs, string colour, double ms, bool ok)
    {
        lock (_gate)
        {
            _entries.Enqueue((atMs, colour, ms, ok));
            while (_entries.Count > capacity)
                _entries.Dequeue();
        }
    }

    /// <summary>Percentiles per colour over the entries no older than the window at <paramref name="nowMs"/>.</summary>
    public IReadOnlyList<ColourLatency> Snapshot(long nowMs)
    {
        List<(string Colour, double Ms, bool Ok)> recent;
        lock (_gate)
        {
            var oldest = nowMs - (long)window.TotalMilliseconds;
            while (_entries.Count > 0 && _entries.Peek().AtMs < oldest)
                _entries.Dequeue();
            recent = _entries.Select(e => (e.Colour, e.Ms, e.Ok)).ToList();
        }
        return recent.GroupBy(e => e.Colour, StringComparer.Ordinal)
            .OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g =>
            {
                var ok = g.Where(e => e.Ok).Select(e => e.Ms).Order().ToArray();
                return new ColourLatency(g.Key, g.Count(), g.Count(e => !e.Ok), Percentile(ok, 0.50), Percentile(ok, 0.95));
            })
            .ToList();
    }

    /// <summary>The project's nearest-rank percentile (<see cref="Percentiles"/>), shown to 0.1 ms.</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double q) => Math.Round(Percentiles.NearestRank(sorted, q), 1);
}
