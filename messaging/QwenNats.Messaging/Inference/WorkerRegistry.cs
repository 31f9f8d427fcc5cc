using System.Collections.Concurrent;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using NATS.Client.Core;
using QwenNats.Messaging.Internal;

namespace QwenNats.Messaging;

/// <summary>
/// Tracks live workers from their heartbeats on <see cref="Subjects.WorkerHeartbeat"/>, so a client can
/// refuse at once when a pool is empty and notice a worker that died mid-answer. A worker whose heartbeats
/// stopped is forgotten, so crashed workers do not accumulate. Only time this registry could hear heartbeats counts
/// towards a worker's silence: a worker is not taken for gone because this process's own connection was down (the
/// heartbeats sent meanwhile were lost, not missing), so a short reconnect neither ends answers in flight with
/// <c>worker_lost</c> nor runs direct requests again, nor refuses new ones with <c>no_workers</c>.
/// </summary>
public sealed class WorkerRegistry(NatsConnection nats, IOptions<InferenceOptions> options, ILogger<WorkerRegistry> logger) : BackgroundService
{
    // Seen: when its last heartbeat was heard; Deaf: the time this registry had spent unable to hear, as of then.
    private readonly ConcurrentDictionary<string, (WorkerHeartbeat Beat, DateTimeOffset Seen, TimeSpan Deaf)> _workers = new();
    private readonly Lock _deafLock = new();
    private TimeSpan _deafBefore;          // closed stretches without a connection
    private DateTimeOffset? _deafSince;    // the open one, if the connection is down now
    // Since when (Environment.TickCount64) heartbeats have been heard without a break in the connection; -1: not now.
    private long _listeningSince = -1;

    /// <summary>
    /// Whether the list is complete: heartbeats have been heard, with the connection up all along, for at least one
    /// <see cref="InferenceOptions.WorkerStaleAfter"/>, in which every live worker beats. Before that (just started, or
    /// just reconnected) a pool that looks empty may only not have been heard yet.
    /// </summary>
    public bool Settled => Volatile.Read(ref _listeningSince) is >= 0 and var since
                           && Environment.TickCount64 - since >= (long)options.Value.WorkerStaleAfter.TotalMilliseconds;

    /// <summary>Waits until <see cref="Settled"/>, for at most <paramref name="max"/>; whether it is.</summary>
    public async Task<bool> WaitSettledAsync(TimeSpan max, CancellationToken ct)
    {
        var until = Environment.TickCount64 + (long)max.TotalMilliseconds;
        while (!Settled)
        {
            if (Environment.TickCount64 >= until)
                return false;
            await Task.Delay(50, ct);
        }
        return true;
    }

    /// <summary>Workers currently tracked, live or not yet pruned.</summary>
    public int Tracked => _workers.Count;

    /// <summary>Workers that take work now (of one colour, or all).</summary>
    public IReadOnlyList<WorkerHeartbeat> Live(string? colour = null) => Known(colour).Where(w => w.Serving && !w.Draining).ToArray();

    /// <summary>Every worker heard from recently, including those still waiting for or loading a release, and those
    /// draining on their way out.</summary>
    public IReadOnlyList<WorkerHeartbeat> Known(string? colour = null)
    {
        Prune(DateTimeOffset.UtcNow);
        return _workers.Values
            .Where(w => !w.Beat.Leaving && (colour is null || w.Beat.Colour == colour))
            .Select(w => w.Beat)
            .OrderBy(w => w.WorkerId, StringComparer.Ordinal)
            .ToArray();
    }

    public bool HasWorkers(string colour) => Pool(colour).Serving;

    /// <summary>This registry stopped hearing heartbeats at <paramref name="at"/> (its connection went down).</summary>
    public void Deafened(DateTimeOffset at)
    {
        lock (_deafLock) _deafSince ??= at;
    }

    /// <summary>This registry hears heartbeats again from <paramref name="at"/> (its connection is back).</summary>
    public void Heard(DateTimeOffset at)
    {
        lock (_deafLock)
        {
            if (_deafSince is { } since && at > since)
                _deafBefore += at - since;
            _deafSince = null;
        }
    }

    /// <summary>All the time, up to <paramref name="now"/>, this registry could not hear heartbeats.</summary>
    private TimeSpan DeafUntil(DateTimeOffset now)
    {
        lock (_deafLock)
            return _deafBefore + (_deafSince is { } since && now > since ? now - since : TimeSpan.Zero);
    }

    /// <summary>How long a worker has been silent while this registry could hear it.</summary>
    private static TimeSpan Silent(DateTimeOffset seen, TimeSpan deafThen, DateTimeOffset now, TimeSpan deafNow) => now - seen - (deafNow - deafThen);

    /// <summary>Whether <paramref name="colour"/> has a worker taking work now, and whether one of those listens for
    /// direct offers (<see cref="WorkerHeartbeat.TakesOffers"/>). Cheap enough for every request: no copies, no sorting.</summary>
    public (bool Serving, bool TakesOffers) Pool(string colour)
    {
        var (now, stale) = (DateTimeOffset.UtcNow, options.Value.WorkerStaleAfter);
        var deaf = DeafUntil(now);
        var serving = false;
        foreach (var (_, (beat, seen, deafThen)) in _workers)
        {
            if (Silent(seen, deafThen, now, deaf) > stale || beat.Leaving || beat.Draining || !beat.Serving || beat.Colour != colour)
                continue;
            if (beat.TakesOffers)
                return (true, true);
            serving = true;
        }
        return (serving, false);
    }

    /// <summary>True when the worker has stopped sending heartbeats (or said it is leaving).</summary>
    public bool IsGone(string workerId) => !Known().Any(w => w.WorkerId == workerId);

    /// <summary>Records one heartbeat seen at <paramref name="seen"/>.</summary>
    public void Record(WorkerHeartbeat beat, DateTimeOffset seen)
    {
        if (beat.Leaving)
        {
            if (_workers.TryRemove(beat.WorkerId, out _))
                Log.WorkerLeft(logger, beat.WorkerId, beat.Colour);
            return;
        }
        var entry = (beat, seen, DeafUntil(seen));
        if (_workers.TryAdd(beat.WorkerId, entry))
            Log.WorkerJoined(logger, beat.WorkerId, beat.Colour, beat.ModelId, beat.ProfileVersion, beat.Slots);
        else
            _workers[beat.WorkerId] = entry;
        Prune(seen);
    }

    /// <summary>Forgets every worker silent for longer than <c>WorkerStaleAfter</c> (time this registry could not hear
    /// not counted); returns how many.</summary>
    public int Prune(DateTimeOffset now)
    {
        var deaf = DeafUntil(now);
        var pruned = 0;
        foreach (var (id, entry) in _workers)
        {
            if (Silent(entry.Seen, entry.Deaf, now, deaf) <= options.Value.WorkerStaleAfter) continue;
            if (_workers.TryRemove(new KeyValuePair<string, (WorkerHeartbeat, DateTimeOffset, TimeSpan)>(id, entry)))
            {
                pruned++;
                Log.WorkerForgotten(logger, id, entry.Beat.Colour);
            }
        }
        return pruned;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Heartbeats sent while the connection was down are lost: the list is complete again one stale window after it is back.
        nats.ConnectionDisconnected += (_, _) =>
        {
            Volatile.Write(ref _listeningSince, -1);
            Deafened(DateTimeOffset.UtcNow);
            return ValueTask.CompletedTask;
        };
        nats.ConnectionOpened += (_, _) =>
        {
            Volatile.Write(ref _listeningSince, Environment.TickCount64);
            Heard(DateTimeOffset.UtcNow);
            return ValueTask.CompletedTask;
        };
        await Retry.KeepRunningAsync(logger, "The worker heartbeat subscription", async ct =>
        {
            await nats.ConnectAsync();
            var subscription = await nats.SubscribeCoreAsync<WorkerHeartbeat>(Subjects.WorkerHeartbeat, cancellationToken: ct);
            await using (subscription)
            {
                Interlocked.CompareExchange(ref _listeningSince, Environment.TickCount64, -1);
                try
                {
                    await foreach (var msg in subscription.Msgs.ReadAllAsync(ct))
                        if (msg.Data is { } beat)
                            Record(beat, DateTimeOffset.UtcNow);
                }
                finally
                {
                    Volatile.Write(ref _listeningSince, -1);
                }
            }
        }, stoppingToken);
    }
}
