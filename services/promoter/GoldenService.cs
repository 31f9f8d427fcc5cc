using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using QwenNats.Messaging;

namespace QwenNats.Promoter;

/// <summary>
/// Golden results per release identity. A colour's answers to the golden sets depend only on what its workers
/// serve (model, whole profile, faults: their <see cref="WorkerHeartbeat.Fingerprint"/>) and on the inputs, so a
/// complete result is stored in <see cref="Releases.Bucket"/> under <see cref="GoldenKeys.Key"/> and the gate
/// reuses it: the live colour's result was normally computed when that release was itself the candidate, and
/// its pool — busy with live traffic — is asked to run the set on its low-priority queue only when nothing is
/// stored. A partial run's answers are kept (in memory) and the next attempt sends only the rest. While it leads,
/// the promoter also computes, in the background, the result of any colour whose release has none stored yet
/// (<c>Promoter:GoldenPrecompute</c>): a release deployed to the idle colour has its result before its rollout starts.
/// </summary>
public sealed partial class GoldenService(GoldenRunner runner, ReleaseCatalog releases, WorkerRegistry workers, PromoterSettings settings, ILogger<GoldenService> logger)
{
    private readonly ConcurrentDictionary<string, GoldenResult> _partial = new(StringComparer.Ordinal);
    // One run per key at a time: a gate, an operator's golden and the background precompute join the same run.
    private readonly ConcurrentDictionary<string, Lazy<Task<Outcome>>> _running = new(StringComparer.Ordinal);
    // Keys known to be stored (the precompute does not look again).
    private readonly ConcurrentDictionary<string, bool> _stored = new(StringComparer.Ordinal);
    private Task _precompute = Task.CompletedTask;
    private CancellationTokenSource? _precomputeStop;
    private string? _precomputeColour;

    /// <summary>A colour's result: from the store or run now; <see cref="Key"/> is null when it cannot be stored.</summary>
    public sealed record Outcome(GoldenResult Result, bool Stored, string? Key);

    /// <summary>The fingerprint every serving worker of the colour reports; null when none serves or they differ (a switch in progress).</summary>
    public string? Fingerprint(string colour) =>
        workers.Live(colour).Select(w => w.Fingerprint).Distinct().ToArray() is [{ } one] ? one : null;

    /// <summary>
    /// The colour's answers to <paramref name="inputs"/>: the stored result when <paramref name="useStored"/> and one
    /// exists for what the colour serves now; otherwise a run on its shadow queue (stored when complete).
    /// </summary>
    public async Task<Outcome> ResultAsync(string colour, IReadOnlyList<GoldenInput> inputs, bool useStored, CancellationToken ct)
    {
        var digest = GoldenKeys.InputsDigest(inputs);
        var fingerprint = Fingerprint(colour);
        var key = fingerprint is null ? null : GoldenKeys.Key(fingerprint, digest);
        if (key is not null && useStored && await releases.GoldenAsync(key, ct) is { } stored
            && stored.Fingerprint == fingerprint && stored.InputsDigest == digest && stored.IsComplete(inputs.Count))
        {
            Reused(logger, colour, key, stored.ComputedAt);
            return new Outcome(stored with { Colour = colour }, true, key);
        }
        if (key is null)
        {
            NotStorable(logger, colour);
            return new Outcome(await runner.RunAsync(colour, inputs, null, settings.Options.GoldenTimeout, ct), false, null);
        }
        var mine = new Lazy<Task<Outcome>>(() => RunKeyedAsync(colour, inputs, key, fingerprint!, ct));
        var running = _running.GetOrAdd(key, mine);
        try
        {
            var outcome = await running.Value.WaitAsync(ct);
            return outcome with { Result = outcome.Result with { Colour = colour } };
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested && !ReferenceEquals(running, mine))
        {
            // The run joined was a background one, stopped because its colour became a rollout's candidate: run our own.
            _running.TryRemove(KeyValuePair.Create(key, running));
            return await ResultAsync(colour, inputs, useStored, ct);
        }
        finally
        {
            if (ReferenceEquals(running, mine))
                _running.TryRemove(KeyValuePair.Create(key, mine));
        }
    }

    private async Task<Outcome> RunKeyedAsync(string colour, IReadOnlyList<GoldenInput> inputs, string key, string fingerprint, CancellationToken ct)
    {
        var previous = _partial.TryGetValue(key, out var partial) ? partial : null;
        var result = await runner.RunAsync(colour, inputs, previous, settings.Options.GoldenTimeout, ct);
        if (result.Fingerprint != fingerprint)
        {
            NotStorable(logger, colour);
            return new Outcome(result, false, null);
        }
        if (result.IsComplete(inputs.Count) && !result.Answers.Any(a => a.Error is ErrorCodes.WorkerLost or ErrorCodes.BusUnavailable or ErrorCodes.Cancelled))
        {
            await releases.StoreGoldenAsync(key, Compact(result), ct);
            _partial.TryRemove(key, out _);
            _stored[key] = true;
            StoredResult(logger, colour, key);
        }
        else
        {
            _partial[key] = result;
        }
        return new Outcome(result, false, key);
    }

    /// <summary>
    /// Called on the leader's tick: when the last background run is done, starts one for the first colour whose
    /// release has no stored result (on its low-priority queue). Never for a rollout's <paramref name="candidate"/>,
    /// whose free slots belong to mirrored traffic (the gate runs its set when the judge has passed it): a background
    /// run on a colour that becomes the candidate is stopped. Ends with <paramref name="ct"/> (leadership).
    /// </summary>
    public void Precompute(IReadOnlyList<string> colours, string? candidate, CancellationToken ct)
    {
        if (candidate is not null && _precomputeColour == candidate && !_precompute.IsCompleted)
            _precomputeStop?.Cancel();
        if (!settings.Options.GoldenPrecompute || settings.Golden is not { Count: > 0 } inputs || !_precompute.IsCompleted || ct.IsCancellationRequested)
            return;
        var digest = GoldenKeys.InputsDigest(inputs);
        var missing = colours.Where(c => c != candidate).Select(c => (Colour: c, Print: Fingerprint(c)))
            .FirstOrDefault(c => c.Print is not null && !_stored.ContainsKey(GoldenKeys.Key(c.Print, digest)) && !_running.ContainsKey(GoldenKeys.Key(c.Print, digest)));
        if (missing.Colour is null)
            return;
        _precomputeStop?.Dispose();
        _precomputeStop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        _precomputeColour = missing.Colour;
        _precompute = PrecomputeAsync(missing.Colour, inputs, GoldenKeys.Key(missing.Print!, digest), _precomputeStop.Token);
    }

    private async Task PrecomputeAsync(string colour, IReadOnlyList<GoldenInput> inputs, string key, CancellationToken ct)
    {
        try
        {
            await Task.Yield();
            if (await releases.GoldenAsync(key, ct) is { } stored && stored.IsComplete(inputs.Count))
            {
                _stored[key] = true;
                return;
            }
            Precomputing(logger, colour, key);
            await ResultAsync(colour, inputs, useStored: true, ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            PrecomputeStopped(logger, colour);
        }
        catch (Exception e)
        {
            PrecomputeFailed(logger, colour, e);
        }
    }

    /// <summary>
    /// The gate before a rollout leaves Shadow: both colours' results (stored ones reused), decided by
    /// <see cref="GoldenGate.Decide"/>; the reason says where each result came from.
    /// </summary>
    public async Task<GoldenGateDecision> GateAsync(IReadOnlyList<GoldenInput> inputs, string live, string candidate, CancellationToken ct)
    {
        var both = await Task.WhenAll(ResultAsync(live, inputs, true, ct), ResultAsync(candidate, inputs, true, ct));
        var decision = GoldenGate.Decide(both[0].Result, both[1].Result, inputs, settings.Policy);
        var source = $"live {live}: {Source(both[0])}; candidate {candidate}: {Source(both[1])}";
        if (decision.Outcome == Judging.Outcomes.Inconclusive)
            source += $"; each attempt waits Promoter:GoldenTimeout {settings.Options.GoldenTimeout} and keeps the answers it got";
        return decision with { Reason = $"{decision.Reason} ({source})" };
    }

    private static string Source(Outcome o) =>
        o.Stored ? $"stored result of {o.Result.ComputedAt:u} reused"
        : o.Key is null ? "run now, not stored (its workers do not all serve the same model, profile and faults)"
        : "run now on its low-priority queue";

    /// <summary>What is stored: chat texts cut to <c>Promoter:GoldenStoredTextChars</c> (the defects were found on the whole answer).</summary>
    private GoldenResult Compact(GoldenResult r) =>
        r with { Answers = r.Answers.Select(a => Comparison.Cut(a, settings.Options.GoldenStoredTextChars)!).ToArray() };

    [LoggerMessage(EventId = 5290, Level = LogLevel.Information, Message = "Golden set on {Colour}: reusing the stored result {Key} computed at {At}")]
    private static partial void Reused(ILogger logger, string colour, string key, DateTimeOffset at);

    [LoggerMessage(EventId = 5291, Level = LogLevel.Information, Message = "Golden set on {Colour}: stored the complete result as {Key}")]
    private static partial void StoredResult(ILogger logger, string colour, string key);

    [LoggerMessage(EventId = 5295, Level = LogLevel.Information, Message = "Golden set on {Colour}: no stored result for what it serves ({Key}); computing it in the background on its low-priority queue")]
    private static partial void Precomputing(ILogger logger, string colour, string key);

    [LoggerMessage(EventId = 5297, Level = LogLevel.Information, Message = "Golden set on {Colour}: the background run stopped (the colour became a rollout's candidate, or leadership ended)")]
    private static partial void PrecomputeStopped(ILogger logger, string colour);

    [LoggerMessage(EventId = 5296, Level = LogLevel.Warning, Message = "Golden set on {Colour}: the background run failed; it is tried again on a later tick")]
    private static partial void PrecomputeFailed(ILogger logger, string colour, Exception exception);

    [LoggerMessage(EventId = 5293, Level = LogLevel.Warning, Message = "Golden set on {Colour}: the answers came from workers serving different things (or none reports a fingerprint); not stored")]
    private static partial void NotStorable(ILogger logger, string colour);
}
