using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using Xunit.Abstractions;

namespace QwenNats.Tests.Infrastructure;

/// <summary>What a drill checked: requests sent, answered, failed with a clear error (by code), and lost.</summary>
public sealed record DrillReport(string Drill, int Sent, int Succeeded, int FailedClearly, int Lost, IReadOnlyDictionary<string, int> Codes, double SlowestSeconds, IReadOnlyList<string> LostDetails)
{
    public override string ToString() =>
        $"{Drill}: sent {Sent}, succeeded {Succeeded}, failed with a clear error {FailedClearly} ({string.Join(", ", Codes.Select(c => $"{c.Key}×{c.Value}"))}), lost {Lost}; slowest {SlowestSeconds:F1} s";

    /// <summary>Prints the report (and what else the drill found, <paramref name="findings"/>) to the test output and to <c>artifacts/drills/&lt;drill&gt;.txt</c>.</summary>
    public void Publish(ITestOutputHelper output, string? findings = null)
    {
        var text = findings is null ? ToString() : ToString() + Environment.NewLine + findings;
        output.WriteLine(text);
        foreach (var d in LostDetails.Take(10)) output.WriteLine("  lost: " + d);
        var root = Environment.GetEnvironmentVariable("QWEN_ARTIFACTS");
        if (string.IsNullOrEmpty(root)) root = Path.Combine(Paths.RepoRoot, "artifacts");
        Directory.CreateDirectory(Path.Combine(root, "drills"));
        File.WriteAllText(Path.Combine(root, "drills", Drill + ".txt"), text + Environment.NewLine + string.Join(Environment.NewLine, LostDetails));
    }
}

/// <summary>
/// Client load for fault drills: loops of streamed chat and sentiment requests, each classified as
/// succeeded (a complete answer), failed clearly (an HTTP error or an SSE error event with an error code),
/// or lost (no answer before the client gives up, a broken connection or a malformed answer).
/// </summary>
public sealed class DrillLoad(HttpClient http, int maxTokens = 48)
{
    private readonly ConcurrentQueue<(string Outcome, string? Code, double Seconds, string? Detail, string? Worker, DateTimeOffset At)> _results = new();

    /// <summary>Runs <paramref name="loops"/> request loops until <paramref name="stop"/> fires.</summary>
    public Task RunAsync(int loops, CancellationToken stop) =>
        Task.WhenAll(Enumerable.Range(0, loops).Select(i => LoopAsync(i, stop)));

    public IReadOnlyList<(string Outcome, string? Code, double Seconds, string? Detail, string? Worker, DateTimeOffset At)> Results => _results.ToList();

    private async Task LoopAsync(int loop, CancellationToken stop)
    {
        var n = 0;
        while (!stop.IsCancellationRequested)
        {
            n++;
            var streamed = (loop + n) % 3 != 0;
            await OneAsync(streamed, $"drill-{loop}-{n}");
        }
    }

    public async Task OneAsync(bool streamed, string session)
    {
        var clock = Stopwatch.StartNew();
        try
        {
            using var req = streamed
                ? Api.Post("/v1/chat/completions", Api.ChatBody("Once upon a time", maxTokens, stream: true, temperature: 0.8), session: session)
                : Api.Post("/v1/sentiment", "{\"input\":\"What a lovely day\"}", session: session);
            using var r = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead);
            var worker = r.Headers.TryGetValues("X-Qwen-Worker", out var w) ? w.FirstOrDefault() : null;
            if (!r.IsSuccessStatusCode)
            {
                var body = await r.Content.ReadAsStringAsync();
                var code = ErrorCode(body);
                Add(code is null ? "lost" : "error", code, clock, code is null ? $"HTTP {(int)r.StatusCode} without an error body: {body[..Math.Min(body.Length, 200)]}" : null, worker);
                return;
            }
            if (!streamed)
            {
                var body = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;
                Add(body.TryGetProperty("label", out _) ? "ok" : "lost", null, clock, "sentiment without a label", worker);
                return;
            }
            using var cts = new CancellationTokenSource(http.Timeout);
            var events = await Api.ReadEventsAsync(r, cts.Token);
            if (events.Count == 0 || events[^1] != "[DONE]")
            {
                Add("lost", null, clock, $"stream ended without [DONE] after {events.Count} events", worker);
                return;
            }
            var error = events.Select(ErrorCode).FirstOrDefault(c => c is not null);
            Add(error is null ? "ok" : "error", error, clock, null, worker);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException or JsonException)
        {
            Add("lost", null, clock, $"{e.GetType().Name}: {e.Message}", null);
        }
    }

    private void Add(string outcome, string? code, Stopwatch clock, string? detail, string? worker) =>
        _results.Enqueue((outcome, code, clock.Elapsed.TotalSeconds, outcome == "lost" ? detail : null, worker, DateTimeOffset.UtcNow));

    private static string? ErrorCode(string body)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("error", out var e) && e.TryGetProperty("code", out var c)
                ? c.GetString()
                : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    public DrillReport Report(string drill)
    {
        var all = Results;
        return new DrillReport(drill, all.Count, all.Count(r => r.Outcome == "ok"), all.Count(r => r.Outcome == "error"), all.Count(r => r.Outcome == "lost"),
            all.Where(r => r.Code is not null).GroupBy(r => r.Code!).ToDictionary(g => g.Key, g => g.Count()),
            all.Count == 0 ? 0 : all.Max(r => r.Seconds), all.Where(r => r.Detail is not null).Select(r => r.Detail!).ToList());
    }
}
