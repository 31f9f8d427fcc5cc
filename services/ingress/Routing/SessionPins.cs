using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using NATS.Client.KeyValueStore;
using QwenNats.Messaging;
using QwenNats.Messaging.Topology;

namespace QwenNats.Ingress.Routing;

/// <summary>
/// This ingress's copy of the session pins (KV <c>qwen_sessions</c>), kept by a watch of the whole bucket so a
/// session's pin is read from memory instead of a KV round trip on every request. Pins written by any ingress
/// (and by the promoter: operator pins) arrive here within milliseconds; this ingress's own writes are in the
/// copy as soon as it makes them. The copy answers only once it has caught up with the bucket, and only for keys
/// it holds that are younger than the bucket's max age (KV expiry sends no marker): otherwise the caller reads
/// KV itself, as before. Memory: one entry per session active within the bucket's idle timeout, at most
/// <see cref="IngressOptions.PinCacheSize"/>. A key enters the copy only from the watch or from this ingress's own
/// write, never from a KV read, so what the copy holds is always the newest value it was sent; keys it does not
/// hold (the copy is full) are read from KV. A deleted key (an operator's unpin) is kept as deleted, not dropped, so
/// it is known as deleted rather than missing: the pin a made-up session id carries must not come back after an unpin.
/// The watch also reads the bucket's idle TTL (<see cref="Idle"/>), which bounds those implicit pins, even when the
/// copy is off (<see cref="IngressOptions.PinCacheSize"/> 0).
/// </summary>
public sealed partial class SessionPins(TopologyClient topology, TimeProvider clock, IOptions<IngressOptions> options, ILogger<SessionPins> logger) : BackgroundService
{
    private readonly int _capacity = options.Value.PinCacheSize;
    /// <summary>A null pin is a deleted key (a tombstone), kept like a pin until the bucket's max age ends it.</summary>
    private volatile ConcurrentDictionary<string, (SessionPin? Pin, DateTimeOffset Written)> _pins = new(StringComparer.Ordinal);
    private volatile bool _caughtUp;
    private TimeSpan _maxAge = TimeSpan.MaxValue;
    /// <summary>Ticks of the bucket's max age once read (<see cref="TimeSpan.MaxValue"/>: none); -1 until then.</summary>
    private long _idleTicks = -1;

    /// <summary>The pins bucket's idle TTL (its max age; <see cref="TimeSpan.MaxValue"/> when it has none), or null until read.</summary>
    public TimeSpan? Idle => Volatile.Read(ref _idleTicks) is var t and >= 0 ? TimeSpan.FromTicks(t) : null;

    /// <summary>Whether the copy has caught up with the bucket (until then every lookup misses).</summary>
    public bool CaughtUp => _caughtUp;

    /// <summary>Sessions in the copy.</summary>
    public int Count => _pins.Count;

    /// <summary>The pin of a session and when it was written, when the copy knows it; false sends the caller to KV.</summary>
    public bool TryGet(string key, out SessionPin pin, out DateTimeOffset written)
    {
        pin = null!;
        if (Lookup(key, out var p, out written) != StoredPin.Pinned)
            return false;
        pin = p!;
        return true;
    }

    /// <summary>
    /// What the copy knows of a session's key: its pin (and when it was written), that it was deleted, or null when the
    /// copy cannot tell (not caught up, not held, older than the bucket's max age): the caller reads KV.
    /// </summary>
    public StoredPin? Lookup(string key, out SessionPin? pin, out DateTimeOffset written)
    {
        pin = null;
        written = default;
        if (!_caughtUp || !_pins.TryGetValue(key, out var entry) || entry.Written + _maxAge <= clock.GetUtcNow())
            return null;
        (pin, written) = entry;
        return pin is null ? StoredPin.Deleted : StoredPin.Pinned;
    }

    /// <summary>This ingress wrote (or is writing) a pin: later requests here see it at once.</summary>
    public void Wrote(string key, SessionPin pin, DateTimeOffset at) => Put(_pins, key, (pin, at));

    private void Put(ConcurrentDictionary<string, (SessionPin?, DateTimeOffset)> map, string key, (SessionPin?, DateTimeOffset) value)
    {
        if (map.Count < _capacity || map.ContainsKey(key))
            map[key] = value;
    }

    /// <summary>
    /// The pin of a session was changed by someone else and this ingress knows it before its watch does (the console's
    /// pin actions): forget the copy's value, so the next request reads KV, until the watch brings the key back.
    /// </summary>
    public void Invalidate(string key) => _pins.TryRemove(key, out _);

    /// <summary>A write this ingress started failed: forget it, so the next request reads KV.</summary>
    public void Forget(string key, SessionPin pin)
    {
        if (_pins.TryGetValue(key, out var e) && ReferenceEquals(e.Pin, pin))
            _pins.TryRemove(new KeyValuePair<string, (SessionPin?, DateTimeOffset)>(key, e));
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var waiting = false;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                // Its own look-up of the bucket (not RolloutView's, which requests share at most once a second).
                INatsKVStore store;
                try
                {
                    store = await topology.BucketAsync(Rollouts.SessionsBucket, stoppingToken);
                }
                catch (TopologyMissingException)
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken);
                    continue;
                }
                var status = await store.GetStatusAsync(stoppingToken);
                _maxAge = status.Info.Config.MaxAge > TimeSpan.Zero ? status.Info.Config.MaxAge : TimeSpan.MaxValue;
                Volatile.Write(ref _idleTicks, _maxAge.Ticks);
                if (_capacity <= 0)
                    return; // no copy: only the idle TTL was wanted
                // A (re)started watch replays the bucket into a new copy, which replaces the old one once caught up;
                // until then lookups go to KV, so a half-replayed copy never answers.
                _caughtUp = false;
                var building = new ConcurrentDictionary<string, (SessionPin?, DateTimeOffset)>(StringComparer.Ordinal);
                var target = building;
                void CatchUp()
                {
                    if (_caughtUp) return;
                    // Pins this ingress wrote while the copy was being built are kept unless the bucket had newer ones.
                    foreach (var (k, v) in _pins)
                        if (!building.TryGetValue(k, out var b) || b.Item2 < v.Written)
                            building[k] = v;
                    _pins = building;
                    _caughtUp = true;
                    waiting = false;
                    LogCaughtUp(logger, building.Count);
                }
                var opts = new NatsKVWatchOpts
                {
                    OnNoData = _ =>
                    {
                        CatchUp();
                        return ValueTask.FromResult(false);
                    },
                };
                var pruned = clock.GetUtcNow();
                await foreach (var entry in store.WatchAsync<SessionPin>(">", opts: opts, cancellationToken: stoppingToken))
                {
                    var map = _caughtUp ? _pins : building;
                    if (entry.Operation is NatsKVOperation.Del or NatsKVOperation.Purge)
                        Put(map, entry.Key, (null, entry.Created)); // known as deleted, not as missing
                    else if (entry.Value is null)
                        map.TryRemove(entry.Key, out _); // unreadable: the caller reads KV, which says so
                    else
                        Put(map, entry.Key, (entry.Value, entry.Created));
                    if (entry.Delta == 0)
                        CatchUp();
                    if (_caughtUp && clock.GetUtcNow() - pruned > TimeSpan.FromMinutes(1))
                    {
                        pruned = clock.GetUtcNow();
                        foreach (var (k, v) in _pins)
                            if (v.Written + _maxAge <= pruned)
                                _pins.TryRemove(k, out _);
                    }
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                _caughtUp = false;
                if (!waiting)
                    LogWatchFailed(logger, e);
                waiting = true;
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    [LoggerMessage(EventId = 2112, Level = LogLevel.Information, Message = "Session pins: the local copy caught up with {Count} pins; pins are read from it")]
    private static partial void LogCaughtUp(ILogger logger, int count);

    [LoggerMessage(EventId = 2113, Level = LogLevel.Warning, Message = "Session pins: the watch failed; pins are read from KV until it is back")]
    private static partial void LogWatchFailed(ILogger logger, Exception exception);
}
