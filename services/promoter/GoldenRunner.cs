using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using NATS.Client.JetStream;
using QwenNats.Messaging;
using QwenNats.ServiceDefaults;

namespace QwenNats.Promoter;

/// <summary>One labelled case of deploy/golden/sentiment.jsonl.</summary>
public sealed record GoldenCase(string Id, string Text, string Label, string Kind, string Lang);

/// <summary>
/// Runs the golden set (labelled sentiment cases) against colours through their work queues, the same
/// path live traffic takes, and reports accuracy per colour.
/// </summary>
public sealed class GoldenRunner(NatsConnection nats, INatsJSContext js, ServiceIdentity identity, ILogger<GoldenRunner> logger)
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
        var prefix = $"{identity.InstanceId}-golden-{run}";
        var results = new ConcurrentDictionary<string, InferReply>();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        await using var sub = await nats.SubscribeCoreAsync<InferReply>(Subjects.ReplyWildcard(prefix), cancellationToken: cts.Token);
        var deadline = DateTimeOffset.UtcNow + timeout;
        foreach (var c in cases)
        {
            var id = $"g{run}{c.Id}";
            var ack = await js.PublishAsync(Subjects.Infer(colour), new InferRequest
            {
                Id = id, Task = InferTasks.Sentiment, Input = c.Text, ReplyTo = Subjects.Reply(prefix, id),
                CreatedUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), DeadlineUnixMs = deadline.ToUnixTimeMilliseconds(),
            }, cancellationToken: cts.Token);
            ack.EnsureSuccess();
        }
        try
        {
            await foreach (var msg in sub.Msgs.ReadAllAsync(cts.Token))
            {
                if (msg.Data is { IsFinal: true } reply)
                    results[msg.Subject[(msg.Subject.LastIndexOf('.') + 1)..]] = reply;
                if (results.Count == cases.Count) break;
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            logger.LogWarning("Golden set on {Colour}: {Missing} answers missing after {Timeout}", colour, cases.Count - results.Count, timeout);
        }
        var correct = 0;
        var errors = 0;
        string? profile = null;
        foreach (var c in cases)
        {
            if (!results.TryGetValue($"g{run}{c.Id}", out var r) || r.Result is null) { errors++; continue; }
            profile ??= r.Result.ProfileVersion;
            if (r.Result.Label == c.Label) correct++;
        }
        var accuracy = cases.Count == 0 ? 0 : Math.Round((double)correct / cases.Count, 4);
        logger.LogInformation("Golden set on {Colour} ({Profile}): {Correct}/{Total} correct, {Errors} errors", colour, profile, correct, cases.Count, errors);
        return new GoldenScore(colour, profile, cases.Count, correct, errors, accuracy);
    }
}
