using Microsoft.Extensions.Options;
using NATS.Client.JetStream;
using NATS.Client.JetStream.Models;
using NATS.Client.KeyValueStore;
using QwenNats.Messaging;
using QwenNats.Messaging.Topology;

namespace QwenNats.Promoter;

/// <summary>The promoter's JetStream resources: the rollout and session buckets and the audit stream.</summary>
public sealed class RolloutStore(TopologyClient topology, INatsJSContext js, IOptions<PromoterOptions> options, TimeProvider clock) : IRolloutLog
{
    private INatsKVStore? _rollout;
    private INatsKVStore? _sessions;

    public INatsKVStore Rollout => _rollout ?? throw new InvalidOperationException("RolloutStore is not initialised.");
    public INatsKVStore Sessions => _sessions ?? throw new InvalidOperationException("RolloutStore is not initialised.");

    /// <summary>Creates (or updates) the promoter's buckets and audit stream from the topology table, and writes the initial state when there is none.</summary>
    public async Task EnsureAsync(CancellationToken ct)
    {
        var o = options.Value;
        await topology.EnsureOwnedAsync(Owners.Promoter, null, ct);
        _rollout = await topology.BucketAsync(Rollouts.Bucket, ct);
        _sessions = await topology.BucketAsync(Rollouts.SessionsBucket, ct);
        topology.MarkBound();

        var initial = new RolloutState { Live = o.InitialLive, LiveVersion = 0, Reason = "initial state", Actor = "promoter", Since = clock.GetUtcNow() };
        await _rollout.TryCreateAsync(Rollouts.StateKey, initial, cancellationToken: ct);
    }

    public async Task<(RolloutState State, ulong Revision)> GetAsync(CancellationToken ct)
    {
        var entry = await Rollout.GetEntryAsync<RolloutState>(Rollouts.StateKey, cancellationToken: ct);
        return (entry.Value ?? throw new InvalidOperationException("The rollout state is empty."), entry.Revision);
    }

    /// <summary>Compare-and-set: false when someone else wrote since <paramref name="revision"/>.</summary>
    public async Task<bool> TryUpdateAsync(RolloutState state, ulong revision, CancellationToken ct) =>
        (await Rollout.TryUpdateAsync(Rollouts.StateKey, state, revision, cancellationToken: ct)).Success;

    public async Task AppendAsync(RolloutEvent e, CancellationToken ct)
    {
        var ack = await js.PublishAsync(Rollouts.Event(e.Trigger), e,
            opts: new NatsJSPubOpts { MsgId = $"{e.State.RolloutId ?? "none"}-{e.State.Version}" }, cancellationToken: ct);
        ack.EnsureSuccess();
    }

    /// <summary>
    /// Records an access event beside the rollout's transitions (a pin set or removed): the rollout's state at the
    /// time, unchanged (<c>from</c> = <c>to</c>), under its own message id so it is never taken for a transition's
    /// duplicate.
    /// </summary>
    public async Task RecordAccessAsync(string trigger, string reason, string actor, CancellationToken ct)
    {
        var (state, _) = await GetAsync(ct);
        var e = new RolloutEvent
        {
            Trigger = trigger, From = state.Phase, To = state.Phase, State = state, Reason = reason, Actor = actor, Cause = "operator",
            At = clock.GetUtcNow(),
        };
        var ack = await js.PublishAsync(Rollouts.Event(trigger), e, opts: new NatsJSPubOpts { MsgId = $"{trigger}-{Guid.NewGuid():N}" }, cancellationToken: ct);
        ack.EnsureSuccess();
    }

    /// <summary>The judge's latest verdict, when a judge has published one.</summary>
    public async Task<Verdict?> LatestVerdictAsync(CancellationToken ct)
    {
        try
        {
            var bucket = await topology.BucketAsync(Judging.Bucket, ct);
            var entry = await bucket.TryGetEntryAsync<Verdict>(Judging.LatestKey, cancellationToken: ct);
            return entry.Success ? entry.Value.Value : null;
        }
        catch (TopologyMissingException)
        {
            return null;
        }
    }

    /// <summary>The last <paramref name="limit"/> events, oldest first.</summary>
    public async Task<IReadOnlyList<RolloutEvent>> HistoryAsync(int limit, CancellationToken ct)
    {
        var stream = await topology.StreamAsync(Rollouts.EventsStream, ct);
        var state = stream.Info.State;
        if (state.Messages == 0 || limit <= 0)
            return [];
        var start = Math.Max(state.FirstSeq, state.LastSeq >= (ulong)limit ? state.LastSeq - (ulong)limit + 1 : 1);
        var consumer = await js.CreateOrderedConsumerAsync(Rollouts.EventsStream, new NatsJSOrderedConsumerOpts
        {
            DeliverPolicy = ConsumerConfigDeliverPolicy.ByStartSequence,
            OptStartSeq = start,
        }, ct);
        var events = new List<RolloutEvent>(limit);
        await foreach (var msg in consumer.FetchAsync<RolloutEvent>(new NatsJSFetchOpts { MaxMsgs = limit, Expires = TimeSpan.FromSeconds(2) }, cancellationToken: ct))
        {
            if (msg.Data is { } e) events.Add(e);
            if (msg.Metadata?.Sequence.Stream >= state.LastSeq) break;
        }
        return events;
    }
}
