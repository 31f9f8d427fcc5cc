using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Options;
using NATS.Client.JetStream;
using NATS.Client.JetStream.Models;
using NATS.Client.KeyValueStore;
using QwenNats.Messaging;
using QwenNats.Ingress.OpenAi;

namespace QwenNats.Ingress.OperatorConsole;

/// <summary>One server-sent event for the console: its name and its JSON data.</summary>
public sealed record ConsoleMessage(string Event, string Data);

/// <summary>The figures the console refreshes every <see cref="ConsoleOptions.PushInterval"/>.</summary>
public sealed record ConsoleTick(
    DateTimeOffset At,
    IReadOnlyList<ColourLatency> Latency,
    IReadOnlyDictionary<string, int> Workers,
    IReadOnlyList<ModelEntry> Pools,
    ShadowCounters Shadow);

/// <summary>
/// Everything the console shows live, gathered once per ingress and fanned out to every open console:
/// the rollout state (the ingress's own KV watch), the judge's latest verdict (a KV watch on
/// <c>qwen_judge</c>), the audit log (an ordered consumer on <c>QWEN_EVENTS</c>) and a periodic tick of
/// latency per colour, workers and mirror counters. Browsers never talk to NATS.
/// </summary>
public sealed class ConsoleHub : BackgroundService
{
    private readonly Routing.RolloutView _view;
    private readonly Messaging.Topology.TopologyClient _topology;
    private readonly INatsJSContext _js;
    private readonly WorkerRegistry _workers;
    private readonly ShadowMirror _mirror;
    private readonly RecentLatency _latency;
    private readonly ConsoleOptions _options;
    private readonly ILogger<ConsoleHub> _logger;
    private readonly Lock _gate = new();
    private readonly List<Channel<ConsoleMessage>> _subscribers = [];
    private readonly LinkedList<RolloutEvent> _events = new();
    private Verdict? _verdict;

    public ConsoleHub(Routing.RolloutView view, Messaging.Topology.TopologyClient topology, INatsJSContext js, WorkerRegistry workers, ShadowMirror mirror,
        RecentLatency latency, IOptions<ConsoleOptions> options, ILogger<ConsoleHub> logger)
    {
        (_view, _topology, _js, _workers, _mirror, _latency, _options, _logger) = (view, topology, js, workers, mirror, latency, options.Value, logger);
        _view.Changed += state => Publish(State(state));
    }

    public int Subscribers
    {
        get { lock (_gate) return _subscribers.Count; }
    }

    /// <summary>A new console's feed: the current picture first, then every change as it happens.</summary>
    public ChannelReader<ConsoleMessage> Subscribe(CancellationToken ct)
    {
        var channel = Channel.CreateBounded<ConsoleMessage>(new BoundedChannelOptions(256) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });
        lock (_gate)
        {
            channel.Writer.TryWrite(State(_view.Current));
            if (_verdict is { } v) channel.Writer.TryWrite(VerdictMessage(v));
            foreach (var e in _events) channel.Writer.TryWrite(EventMessage(e));
            channel.Writer.TryWrite(Tick());
            _subscribers.Add(channel);
        }
        ct.Register(() =>
        {
            lock (_gate) _subscribers.Remove(channel);
            channel.Writer.TryComplete();
        });
        return channel.Reader;
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(
            KeepAsync("judge verdicts", WatchVerdictsAsync, stoppingToken),
            KeepAsync("audit events", FollowEventsAsync, stoppingToken),
            TickAsync(stoppingToken));

    private async Task TickAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(_options.PushInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
                if (Subscribers > 0)
                    Publish(Tick());
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    /// <summary>Runs a follower until shutdown, starting it again a second after it fails (bucket or stream missing, NATS away).</summary>
    private async Task KeepAsync(string what, Func<CancellationToken, Task> follow, CancellationToken ct)
    {
        var quiet = false;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await follow(ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                if (!quiet) IngressLog.ConsoleFeedUnavailable(_logger, what, e);
                quiet = true;
            }
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(1), ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task WatchVerdictsAsync(CancellationToken ct)
    {
        var store = await _topology.BucketAsync(Judging.Bucket, ct);
        await foreach (var entry in store.WatchAsync<Verdict>(Judging.LatestKey, cancellationToken: ct))
        {
            if (entry.Value is not { } verdict) continue;
            lock (_gate) _verdict = verdict;
            Publish(VerdictMessage(verdict));
        }
    }

    private async Task FollowEventsAsync(CancellationToken ct)
    {
        var stream = await _topology.StreamAsync(Rollouts.EventsStream, ct);
        var last = stream.Info.State.LastSeq;
        var start = last >= (ulong)_options.EventsBacklog ? last - (ulong)_options.EventsBacklog + 1 : 1;
        // Resume after what was already seen when the follower restarts.
        lock (_gate)
            if (_events.Count > 0)
                start = Math.Max(start, _lastSequence + 1);
        var consumer = await _js.CreateOrderedConsumerAsync(Rollouts.EventsStream, new NatsJSOrderedConsumerOpts
        {
            DeliverPolicy = ConsumerConfigDeliverPolicy.ByStartSequence,
            OptStartSeq = start,
        }, ct);
        await foreach (var msg in consumer.ConsumeAsync<RolloutEvent>(cancellationToken: ct))
        {
            if (msg.Data is not { } e) continue;
            lock (_gate)
            {
                _lastSequence = msg.Metadata?.Sequence.Stream ?? _lastSequence;
                _events.AddLast(e);
                while (_events.Count > _options.EventsBacklog)
                    _events.RemoveFirst();
            }
            Publish(EventMessage(e));
        }
    }

    private ulong _lastSequence;

    private void Publish(ConsoleMessage message)
    {
        lock (_gate)
            foreach (var s in _subscribers)
                s.Writer.TryWrite(message);
    }

    private ConsoleTick TickValue() => new(
        DateTimeOffset.UtcNow,
        _latency.Snapshot(Environment.TickCount64),
        _workers.Live().GroupBy(w => w.Colour).ToDictionary(g => g.Key, g => g.Count()),
        _workers.Live().GroupBy(w => (w.ModelId, w.Colour, w.ProfileVersion))
            .Select(g => new ModelEntry(g.Key.ModelId, "model", 0, "qwen-nats", g.Key.Colour, g.Key.ProfileVersion, g.Count()))
            .OrderBy(e => e.Colour, StringComparer.Ordinal).ToArray(),
        new ShadowCounters(_mirror.Sent, _mirror.Compared, _mirror.Dropped));

    private ConsoleMessage Tick() => new("tick", JsonSerializer.Serialize(TickValue(), ConsoleJson.Default.ConsoleTick));

    private static ConsoleMessage State(RolloutState s) => new("state", JsonSerializer.Serialize(s, QwenJsonContext.Default.RolloutState));

    private static ConsoleMessage VerdictMessage(Verdict v) => new("verdict", JsonSerializer.Serialize(v, QwenJsonContext.Default.Verdict));

    private static ConsoleMessage EventMessage(RolloutEvent e) => new("event", JsonSerializer.Serialize(e, QwenJsonContext.Default.RolloutEvent));
}
