using System.Text;
using Microsoft.Extensions.Logging;
using QwenNats.Messaging;

namespace QwenNats.Promoter;

/// <summary>One labelled case of deploy/golden/sentiment.jsonl.</summary>
public sealed record GoldenCase(string Id, string Text, string Label, string Kind, string Lang);

/// <summary>
/// Sends golden (or an operator's comparison) inputs to one colour on its low-priority shadow queue — never the
/// live work queue, so a golden run never delays a client — and collects what it answered, with the text checks'
/// findings. Inputs no worker takes before the deadline are reported as not run, not as wrong answers; a
/// previous partial result's answers are kept and only the rest is sent again (the answers are deterministic:
/// greedy labels, a fixed seed per chat prompt).
/// </summary>
public sealed partial class GoldenRunner(InferenceClient client, PromoterSettings settings, TimeProvider clock, ILogger<GoldenRunner> logger)
{
    private PromoterOptions O => settings.Options;

    /// <summary>The sentiment golden set (every case labelled).</summary>
    public static IReadOnlyList<GoldenCase> Load(string path) =>
        LoadSentiment(path).Select(i => new GoldenCase(i.Id, i.Text, i.Label!, i.Kind ?? "", i.Lang ?? "")).ToArray();

    /// <summary>deploy/golden/sentiment.jsonl: sentiment inputs, each with its expected label.</summary>
    public static IReadOnlyList<GoldenInput> LoadSentiment(string path)
    {
        var inputs = GoldenInputs.Load(path, InferTasks.Sentiment);
        if (inputs.FirstOrDefault(i => i.Task != InferTasks.Sentiment || i.Label is null) is { } bad)
            throw new GoldenInputsException($"{path}: case '{bad.Id}': every case of the sentiment golden set needs 'text' and 'label'.");
        return inputs;
    }

    /// <summary>deploy/golden/chat.jsonl: chat prompts (the answers are checked, not matched).</summary>
    public static IReadOnlyList<GoldenInput> LoadChat(string path)
    {
        var inputs = GoldenInputs.Load(path, InferTasks.Chat);
        if (inputs.FirstOrDefault(i => i.Task != InferTasks.Chat) is { } bad)
            throw new GoldenInputsException($"{path}: '{bad.Id}' is not a chat prompt; the chat golden set holds chat prompts only.");
        return inputs;
    }

    /// <summary>
    /// Runs <paramref name="inputs"/> on <paramref name="colour"/> within <paramref name="timeout"/>. Answers of
    /// <paramref name="previous"/> (the same colour's partial result for the same fingerprint) are kept.
    /// </summary>
    public async Task<GoldenResult> RunAsync(string colour, IReadOnlyList<GoldenInput> inputs, GoldenResult? previous, TimeSpan timeout, CancellationToken ct)
    {
        var kept = new Dictionary<string, GoldenAnswer>(StringComparer.Ordinal);
        foreach (var a in previous?.Answers ?? [])
            if (a.Answered) kept[a.Id] = a;
        var run = Guid.NewGuid().ToString("N")[..8];
        var deadline = clock.GetUtcNow() + timeout;
        await client.Ready.WaitAsync(timeout, ct);
        using var window = new SemaphoreSlim(O.GoldenInFlight, O.GoldenInFlight);
        var calls = new List<Task<(GoldenAnswer Answer, InferResult? Result)>>();
        for (var n = 0; n < inputs.Count; n++)
        {
            var input = inputs[n];
            if (kept.TryGetValue(input.Id, out var have))
            {
                calls.Add(Task.FromResult<(GoldenAnswer, InferResult?)>((have, null)));
                continue;
            }
            var left = deadline - clock.GetUtcNow();
            if (left <= TimeSpan.Zero || !await window.WaitAsync(left, ct))
            {
                calls.Add(Task.FromResult<(GoldenAnswer, InferResult?)>((NotRun(input), null)));
                continue;
            }
            calls.Add(OneAsync(colour, input, $"g{run}n{n}", deadline, window, ct));
        }
        var done = await Task.WhenAll(calls);

        var results = done.Where(d => d.Result is not null).Select(d => d.Result!).ToArray();
        // The answers count as one identity's only when every one (and any kept from before) came from the same fingerprint.
        var prints = results.Select(r => r.Fingerprint).ToList();
        if (kept.Count > 0) prints.Add(previous!.Fingerprint);
        var distinct = prints.Distinct().ToArray();
        var first = results.FirstOrDefault();
        var result = new GoldenResult
        {
            Colour = colour,
            Fingerprint = distinct is [{ } one] ? one : null,
            InputsDigest = GoldenKeys.InputsDigest(inputs),
            Release = first?.Release ?? previous?.Release,
            ModelSha256 = first?.ModelSha256 ?? previous?.ModelSha256,
            Profile = first?.ProfileVersion ?? previous?.Profile,
            Answers = done.Select(d => d.Answer).ToArray(),
            ComputedAt = clock.GetUtcNow(),
        };
        var notRun = result.Answers.Count(a => !a.Taken);
        var failed = result.Answers.Count(a => a.Taken && !a.Answered);
        Ran(logger, colour, result.Profile, inputs.Count, kept.Count, failed, notRun);
        return result;
    }

    private async Task<(GoldenAnswer Answer, InferResult? Result)> OneAsync(string colour, GoldenInput input, string id, DateTimeOffset deadline,
        SemaphoreSlim window, CancellationToken ct)
    {
        try
        {
            var request = input.Task == InferTasks.Sentiment
                ? new InferRequest { Id = id, Task = InferTasks.Sentiment, Input = input.Text, ReplyTo = "" }
                : new InferRequest
                {
                    Id = id, Task = InferTasks.Chat, Messages = [new ChatMessage(ChatRoles.User, input.Text)], ReplyTo = "",
                    Sampling = new SamplingParams { Seed = Seed(input.Id), MaxTokens = input.MaxTokens ?? O.GoldenChatMaxTokens },
                };
            while (true)
            {
                var left = deadline - clock.GetUtcNow();
                if (left <= TimeSpan.Zero)
                    return (NotRun(input), null);
                var start = await client.TryStartAsync(InferenceQueue.Shadow, colour, request, left, ct);
                if (start.Started)
                    return await FinalAsync(input, start.Call, ct);
                if (start.Code != ErrorCodes.Overloaded)
                {
                    NotQueued(logger, colour, start.Code, start.Message);
                    return (NotRun(input), null);
                }
                // The shadow queue is small and shared with mirrored traffic: wait for room.
                await Task.Delay(TimeSpan.FromMilliseconds(200), clock, ct);
            }
        }
        finally
        {
            window.Release();
        }
    }

    private static async Task<(GoldenAnswer, InferResult?)> FinalAsync(GoldenInput input, InferenceCall call, CancellationToken ct)
    {
        InferReply? final = null;
        await using (call)
        {
            await foreach (var reply in call.ReadAsync(ct))
            {
                if (!reply.IsFinal) continue;
                final = reply;
                break;
            }
        }
        var taken = call.Accepted is not null;
        if (final?.Result is not { } r)
        {
            var code = final?.Error?.Code ?? ErrorCodes.DeadlineExceeded;
            // Taken and failed (an error, or never answered) is the colour's doing; never taken is capacity.
            return (new GoldenAnswer { Id = input.Id, Task = input.Task, Error = code, Taken = taken || final?.Error?.WorkerId is not null }, null);
        }
        var answer = input.Task == InferTasks.Sentiment
            ? new GoldenAnswer { Id = input.Id, Task = input.Task, Label = r.Label, Confidence = r.Confidence, FinishReason = r.FinishReason, TotalMs = Math.Round(r.TotalMs, 1) }
            : new GoldenAnswer
            {
                Id = input.Id, Task = input.Task, Text = r.Text, TextChars = r.Text.Length, FinishReason = r.FinishReason, TotalMs = Math.Round(r.TotalMs, 1),
                Defects = TextChecks.Defects(input.Text, r.Text, r.FinishReason),
            };
        return (answer, r);
    }

    private static GoldenAnswer NotRun(GoldenInput input) =>
        new() { Id = input.Id, Task = input.Task, Error = ErrorCodes.DeadlineExceeded, Taken = false };

    /// <summary>A chat prompt's seed: the same for every run and both colours (FNV-1a of its id).</summary>
    public static uint Seed(string id)
    {
        var hash = 2166136261u;
        foreach (var b in Encoding.UTF8.GetBytes(id))
            hash = (hash ^ b) * 16777619u;
        return hash;
    }

    [LoggerMessage(EventId = 5292, Level = LogLevel.Warning, Message = "Golden run on {Colour}: an input was not queued ({Code}: {Reason})")]
    private static partial void NotQueued(ILogger logger, string colour, string code, string reason);

    [LoggerMessage(EventId = 5294, Level = LogLevel.Information, Message = "Golden run on {Colour} ({Profile}): {Total} inputs, {Kept} kept from an earlier partial run, {Failed} failed, {NotRun} not taken by a worker in time")]
    private static partial void Ran(ILogger logger, string colour, string? profile, int total, int kept, int failed, int notRun);
}
