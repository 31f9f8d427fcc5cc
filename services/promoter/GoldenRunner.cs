using System.Text.Json;
using Microsoft.Extensions.Logging;
using QwenNats.Messaging;

namespace QwenNats.Promoter;

/// <summary>One labelled case of deploy/golden/sentiment.jsonl.</summary>
public sealed record GoldenCase(string Id, string Text, string Label, string Kind, string Lang);

/// <summary>
/// Runs the golden set (labelled sentiment cases) against colours through their work queues, the same
/// path live traffic takes, and reports accuracy per colour.
/// </summary>
public sealed partial class GoldenRunner(InferenceClient client, ILogger<GoldenRunner> logger)
{
    public static IReadOnlyList<GoldenCase> Load(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"Golden set '{path}' does not exist.", path);
        var cases = new List<GoldenCase>();
        foreach (var (line, n) in File.ReadLines(path).Select((l, i) => (l, i + 1)))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            string Get(string name) => r.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : "";
            var c = new GoldenCase(Get("id"), Get("text"), Get("label"), Get("kind"), Get("lang"));
            if (c.Text.Length == 0 || c.Label.Length == 0)
                throw new InvalidOperationException($"{path}:{n}: every case needs 'text' and 'label'.");
            cases.Add(c);
        }
        return cases;
    }

    public async Task<GoldenReport> RunAsync(IReadOnlyList<GoldenCase> cases, IEnumerable<string> colours, TimeSpan timeout, CancellationToken ct)
    {
        var scores = new List<GoldenScore>();
        foreach (var colour in colours)
            scores.Add(await RunColourAsync(cases, colour, timeout, ct));
        return new GoldenReport(cases.Count, scores, DateTimeOffset.UtcNow);
    }

    private async Task<GoldenScore> RunColourAsync(IReadOnlyList<GoldenCase> cases, string colour, TimeSpan timeout, CancellationToken ct)
    {
        var run = Guid.NewGuid().ToString("N")[..8];
        await client.Ready.WaitAsync(timeout, ct);
        var calls = new List<(GoldenCase Case, Task<InferReply?> Final)>();
        foreach (var c in cases)
        {
            var start = await client.TryStartAsync(InferenceQueue.Scoring, colour, new InferRequest
            {
                Id = $"g{run}{c.Id}", Task = InferTasks.Sentiment, Input = c.Text, ReplyTo = "",
            }, timeout, ct);
            if (!start.Started)
            {
                NotStarted(logger, colour, start.Code, start.Message);
                calls.Add((c, Task.FromResult<InferReply?>(null)));
                continue;
            }
            calls.Add((c, FinalAsync(start.Call, ct)));
        }
        var results = new Dictionary<string, InferReply>();
        foreach (var (c, final) in calls)
            if (await final is { } reply)
                results[c.Id] = reply;
        var answered = results.Values.Count(r => r.Result is not null);
        if (answered < cases.Count)
            Missing(logger, colour, cases.Count - answered, timeout);
        var correct = 0;
        var errors = 0;
        string? profile = null, release = null, sha = null;
        foreach (var c in cases)
        {
            if (!results.TryGetValue(c.Id, out var r) || r.Result is null) { errors++; continue; }
            profile ??= r.Result.ProfileVersion;
            release ??= r.Result.Release;
            sha ??= r.Result.ModelSha256;
            if (r.Result.Label == c.Label) correct++;
        }
        var accuracy = cases.Count == 0 ? 0 : Math.Round((double)correct / cases.Count, 4);
        Scored(logger, colour, profile, correct, cases.Count, errors);
        return new GoldenScore(colour, profile, cases.Count, correct, errors, accuracy) { Release = release, ModelSha256 = sha };
    }

    private static async Task<InferReply?> FinalAsync(InferenceCall call, CancellationToken ct)
    {
        await using (call)
        {
            await foreach (var reply in call.ReadAsync(ct))
                if (reply.IsFinal)
                    return reply;
        }
        return null;
    }

    [LoggerMessage(EventId = 1292, Level = LogLevel.Warning, Message = "Golden set on {Colour}: a case was not queued ({Code}: {Reason})")]
    private static partial void NotStarted(ILogger logger, string colour, string code, string reason);

    [LoggerMessage(EventId = 1293, Level = LogLevel.Warning, Message = "Golden set on {Colour}: {Missing} answers missing (errors, or no answer within {Timeout})")]
    private static partial void Missing(ILogger logger, string colour, int missing, TimeSpan timeout);

    [LoggerMessage(EventId = 1294, Level = LogLevel.Information, Message = "Golden set on {Colour} ({Profile}): {Correct}/{Total} correct, {Errors} errors")]
    private static partial void Scored(ILogger logger, string colour, string? profile, int correct, int total, int errors);
}
