using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.JetStream.Models;
using NATS.Client.KeyValueStore;
using QwenNats.Messaging;
using QwenNats.Messaging.Internal;
using QwenNats.Messaging.Topology;
using QwenNats.ServiceDefaults;

namespace QwenNats.Judge;

/// <summary>
/// Consumes <c>QWEN_SAMPLES</c> durably, keeps a scorecard per rollout step (persisted in KV
/// <c>qwen_judge</c> once per batch, before the batch's samples are acked), and every interval publishes the verdict of the
/// current step on <c>qwen.judge.verdict</c> — with every value, threshold and sample count behind it.
/// </summary>
public sealed partial class JudgeService(
    NatsConnection nats,
    TopologyClient topology,
    IOptions<JudgeOptions> options,
    TimeProvider clock,
    QwenMetrics metrics,
    ILogger<JudgeService> logger) : BackgroundService
{
    private readonly Prometheus.Counter _samples = metrics.Factory.CreateCounter("qwen_judge_samples_total", "Samples applied to a scorecard.");
    private readonly Prometheus.Counter _persists = metrics.Factory.CreateCounter("qwen_judge_scorecard_writes_total", "Scorecards written to KV (once per batch of samples).");
    private readonly Prometheus.Counter _verdicts = metrics.Factory.CreateCounter("qwen_judge_verdicts_total", "Verdicts published, by outcome.", ["outcome"]);
    private readonly Prometheus.Gauge _checks = metrics.Factory.CreateGauge("qwen_judge_check_value", "Latest value of each check of the current step (agreement, latency ratios, ...).", ["check"]);

    private readonly RolloutPolicy _policy = RolloutPolicy.Load(options.Value.PolicyPath);
    private readonly SemaphoreSlim _gate = new(1, 1);
    private INatsKVStore _cards = null!;
    private Scorecard? _card;
    /// <summary><see cref="_card"/> counts samples that are not yet in KV (nor acked).</summary>
    private bool _dirty;

    public static string CardKey(string rolloutId) => $"card_{rolloutId}";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var consumer = await Retry.UntilDoneAsync(logger, "Binding the judge's samples consumer and scorecards", async ct =>
        {
            await nats.ConnectAsync();
            await topology.EnsureOwnedAsync(Owners.Judge, null, ct);
            _cards = await topology.BucketAsync(Judging.Bucket, ct);
            var bound = await topology.ConsumerAsync(Judging.SamplesStream, Judging.JudgeConsumer, ct);
            topology.MarkBound();
            return bound;
        }, stoppingToken);
        LogConsuming(logger, Judging.SamplesStream, _policy.MinSamples, _policy.FalseAlarmRate, _policy.MissRate, _policy.FalseRollbackBound());
        await Task.WhenAll(ConsumeAsync(consumer, stoppingToken), EvaluateLoopAsync(stoppingToken));
    }

    /// <summary>
    /// Applies samples to the scorecard in memory and persists the card, then acks the samples it counts,
    /// once per batch: when the consumer has nothing more pending on the server, or after
    /// <see cref="JudgeOptions.PersistEvery"/> samples. A sample is acked only once the card that counts it is in
    /// KV; if the judge stops before that, the sample is delivered again and, its sequence not being among the
    /// persisted card's, counted once, even when newer samples were counted before it came back.
    /// </summary>
    private Task ConsumeAsync(INatsJSConsumer consumer, CancellationToken stoppingToken) =>
        Retry.KeepRunningAsync(logger, "Sample consumption", async ct =>
        {
            var unacked = new List<INatsJSMsg<ShadowSample>>();
            try
            {
                await foreach (var msg in consumer.ConsumeAsync<ShadowSample>(opts: new NatsJSConsumeOpts { MaxMsgs = 64 }, cancellationToken: ct))
                {
                    if (msg.Data is { } sample && msg.Metadata is { } meta)
                    {
                        using var scope = logger.BeginScope(new Dictionary<string, object?> { ["request_id"] = sample.Id, ["rollout_id"] = sample.RolloutId });
                        await ApplyAsync(sample, meta.Sequence.Stream, ct);
                        LogSampleApplied(logger, sample.Task, sample.Phase, sample.Step, sample.Candidate.Error ?? "answered");
                    }
                    unacked.Add(msg);
                    if (msg.Metadata is not { NumPending: > 0 } || unacked.Count >= options.Value.PersistEvery)
                    {
                        await PersistAsync(ct);
                        foreach (var m in unacked)
                            await m.AckAsync(cancellationToken: ct);
                        unacked.Clear();
                    }
                }
            }
            catch when (unacked.Count > 0)
            {
                // Samples applied in memory but not persisted: forget them; they are delivered again.
                await ForgetUnpersistedAsync();
                throw;
            }
        }, stoppingToken);

    /// <summary>Adds a sample to its step's scorecard (in memory); old steps and seen samples are skipped.</summary>
    private async Task ApplyAsync(ShadowSample sample, ulong sequence, CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            if (_card is not null && _card.RolloutId != sample.RolloutId && _dirty)
                await PutCardAsync(_card, ct); // another rollout's sample: the current card is saved before it is set aside
            var card = await LoadAsync(sample.RolloutId, ct);
            if (card is not null && (card.Phase, card.Step) != (sample.Phase, sample.Step))
            {
                if (IsLater(sample, card)) card = null;
                else
                {
                    // An earlier step's sample: not counted, but recorded as seen, so the card's ranges stay whole.
                    if (card.MarkSeen(sequence)) (_card, _dirty) = (card, true);
                    return;
                }
            }
            card ??= new Scorecard { RolloutId = sample.RolloutId, Phase = sample.Phase, Step = sample.Step };
            if (!card.Add(sample, sequence, _policy))
                return;
            _samples.Inc();
            _card = card;
            _dirty = true;
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task PersistAsync(CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            if (_card is not null && _dirty)
                await PutCardAsync(_card, ct);
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task PutCardAsync(Scorecard card, CancellationToken ct)
    {
        await _cards.PutAsync(CardKey(card.RolloutId), card, serializer: JudgeJson.Scorecard, cancellationToken: ct);
        _persists.Inc();
        _dirty = false;
    }

    private async Task ForgetUnpersistedAsync()
    {
        await _gate.WaitAsync();
        try
        {
            if (_dirty) (_card, _dirty) = (null, false); // reloaded from KV on the next sample
        }
        finally
        {
            _gate.Release();
        }
    }

    private static bool IsLater(ShadowSample s, Scorecard c) =>
        s.Step > c.Step || (s.Step == c.Step && s.Phase == RolloutPhase.Canary && c.Phase == RolloutPhase.Shadow);

    private async Task<Scorecard?> LoadAsync(string rolloutId, CancellationToken ct)
    {
        if (_card?.RolloutId == rolloutId)
            return _card;
        var entry = await _cards.TryGetEntryAsync(CardKey(rolloutId), serializer: JudgeJson.Scorecard, cancellationToken: ct);
        return entry.Success ? entry.Value.Value : null;
    }

    private async Task EvaluateLoopAsync(CancellationToken ct)
    {
        INatsKVStore? rollouts = null;
        using var timer = new PeriodicTimer(options.Value.EvaluateInterval);
        while (await timer.WaitForNextTickAsync(ct))
        {
            try
            {
                rollouts ??= await topology.BucketAsync(Rollouts.Bucket, ct);
                var entry = await rollouts.TryGetEntryAsync<RolloutState>(Rollouts.StateKey, cancellationToken: ct);
                if (!entry.Success || entry.Value.Value is not { RolloutId: { } id } state || state.Phase is not (RolloutPhase.Shadow or RolloutPhase.Canary))
                    continue;
                Verdict verdict;
                await _gate.WaitAsync(ct);
                try
                {
                    var card = await LoadAsync(id, ct);
                    if (card is null || (card.Phase, card.Step) != (state.Phase, state.Step))
                        card = new Scorecard { RolloutId = id, Phase = state.Phase, Step = state.Step };
                    verdict = Evaluator.Evaluate(card, _policy, clock.GetUtcNow());
                }
                finally
                {
                    _gate.Release();
                }
                await _cards.PutAsync(Judging.LatestKey, verdict, cancellationToken: ct);
                await nats.PublishAsync(Judging.VerdictSubject, verdict, cancellationToken: ct);
                _verdicts.WithLabels(verdict.Outcome).Inc();
                foreach (var check in verdict.Checks)
                    if (check.Value is { } value) _checks.WithLabels(check.Name).Set(value);
                LogVerdict(logger, verdict.Outcome, verdict.RolloutId, verdict.Step, verdict.Reason);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogEvaluationFailed(logger, e);
                rollouts = null;
            }
        }
    }
}

/// <summary>The scorecard's JSON, stored in KV.</summary>
[System.Text.Json.Serialization.JsonSourceGenerationOptions(PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.SnakeCaseLower)]
[System.Text.Json.Serialization.JsonSerializable(typeof(Scorecard))]
public sealed partial class JudgeJsonContext : System.Text.Json.Serialization.JsonSerializerContext;

internal static class JudgeJson
{
    public static readonly NatsJsonContextSerializer<Scorecard> Scorecard = new(JudgeJsonContext.Default);
}
