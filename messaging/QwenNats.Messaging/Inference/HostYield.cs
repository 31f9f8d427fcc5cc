using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using QwenNats.Messaging.Internal;

namespace QwenNats.Messaging;

/// <summary>
/// Whether live work runs on this machine now, from the <see cref="HostLiveLoad"/> messages of its workers: pure, so it
/// is unit-tested without NATS. Mirrored work may run when no other worker here runs live work and none has for
/// <c>idleAfter</c> (a closed-loop client sends its next request within milliseconds of an answer: those gaps must
/// not start a mirror). A worker's busy report counts for <c>staleAfter</c> unless renewed (it is, every heartbeat),
/// so a worker that died busy does not hold mirrors back for ever.
/// </summary>
public sealed class HostLiveState(string selfWorkerId, TimeSpan idleAfter, TimeSpan staleAfter)
{
    private readonly Dictionary<string, (int Live, long Sequence, string? Epoch, DateTimeOffset Seen)> _workers = new(StringComparer.Ordinal);
    private DateTimeOffset _lastBusy = DateTimeOffset.MinValue;

    /// <summary>Takes one report in; true when it changed whether live work runs here.</summary>
    public bool Observe(HostLiveLoad load, DateTimeOffset now)
    {
        if (load.WorkerId == selfWorkerId)
            return false;
        // Older than a report already seen from the same process; a restarted worker (a new epoch) counts from 1 again.
        if (_workers.TryGetValue(load.WorkerId, out var known) && known.Epoch == load.Epoch && known.Sequence > load.Sequence)
            return false;
        var before = Busy(now);
        if (known.Live > 0 && now - known.Seen <= staleAfter)
            _lastBusy = now;
        _workers[load.WorkerId] = (Math.Max(0, load.Live), load.Sequence, load.Epoch, now);
        if (load.Live > 0)
            _lastBusy = now;
        return before != Busy(now);
    }

    /// <summary>Whether another worker here runs live work now (by a report not yet stale).</summary>
    public bool Busy(DateTimeOffset now)
    {
        foreach (var (_, w) in _workers)
            if (w.Live > 0 && now - w.Seen <= staleAfter)
                return true;
        return false;
    }

    /// <summary>
    /// Whether mirrored work may run now; when not, <paramref name="recheckIn"/> says when the answer may change
    /// without another report (a busy report going stale, or the idle time running out).
    /// </summary>
    public bool MayRunMirrors(DateTimeOffset now, out TimeSpan recheckIn)
    {
        recheckIn = TimeSpan.Zero;
        var staleAt = DateTimeOffset.MinValue;
        foreach (var (_, w) in _workers)
            if (w.Live > 0 && now - w.Seen <= staleAfter && w.Seen + staleAfter > staleAt)
                staleAt = w.Seen + staleAfter;
        if (staleAt > DateTimeOffset.MinValue)
        {
            // Busy: at the earliest, the last busy report goes stale, and then the idle time starts.
            recheckIn = staleAt - now + idleAfter;
            return false;
        }
        var lastBusy = _lastBusy;
        foreach (var (_, w) in _workers)
            if (w.Live > 0 && w.Seen + staleAfter > lastBusy)
                lastBusy = w.Seen + staleAfter;
        var idleFor = lastBusy == DateTimeOffset.MinValue ? TimeSpan.MaxValue : now - lastBusy;
        if (idleFor >= idleAfter)
            return true;
        recheckIn = idleAfter - idleFor;
        return false;
    }

    /// <summary>Forgets workers not heard of for a long time (they left without a word).</summary>
    public void Prune(DateTimeOffset now, TimeSpan olderThan)
    {
        foreach (var id in _workers.Where(w => now - w.Value.Seen > olderThan).Select(w => w.Key).ToList())
            _workers.Remove(id);
    }
}

/// <summary>Settings of <see cref="HostYield"/>.</summary>
public sealed record HostYieldOptions
{
    /// <summary>This machine's name as the workers on it report it (<c>Worker:Host</c>).</summary>
    public required string Host { get; init; }
    public required string WorkerId { get; init; }
    /// <summary>How long live work must have been absent before mirrored work runs again.</summary>
    public TimeSpan IdleAfter { get; init; } = TimeSpan.FromMilliseconds(100);
    /// <summary>How long a busy report counts without being renewed.</summary>
    public TimeSpan StaleAfter { get; init; } = TimeSpan.FromSeconds(3);
}

/// <summary>
/// A candidate's view of live work on its own machine (<c>Worker:ShadowYield</c>): it listens to
/// <see cref="Subjects.HostLive"/> of its host and says whether mirrored work may run now
/// (<see cref="MayRunMirrors"/>), raising <see cref="Opened"/> when it may again. On a shared box this keeps the
/// candidate's decoding off the cores, memory bandwidth and caches live decoding needs: mirrors use idle time only.
/// </summary>
public sealed class HostYield(NatsConnection nats, HostYieldOptions options, TimeProvider clock, ILogger<HostYield> logger) : IAsyncDisposable
{
    private readonly HostLiveState _state = new(options.WorkerId, options.IdleAfter, options.StaleAfter);
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _stop = new();
    private ITimer? _recheck;
    private Task _listening = Task.CompletedTask;
    private bool _open = true;

    /// <summary>Raised (on a timer or the NATS reader) when mirrored work may run again.</summary>
    public event Action? Opened;

    public string Subject { get; } = Subjects.HostLive(options.Host);

    /// <summary>Whether mirrored work may run now.</summary>
    public bool MayRunMirrors
    {
        get
        {
            lock (_gate)
                return Evaluate();
        }
    }

    /// <summary>Starts listening; completes once the subscription is up.</summary>
    public async Task StartAsync(CancellationToken ct)
    {
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _listening = ListenAsync(ready, _stop.Token);
        await ready.Task.WaitAsync(ct);
    }

    private async Task ListenAsync(TaskCompletionSource ready, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await using var sub = await nats.SubscribeCoreAsync<HostLiveLoad>(Subject, cancellationToken: ct);
                ready.TrySetResult();
                await foreach (var msg in sub.Msgs.ReadAllAsync(ct))
                    if (msg.Data is { } load)
                        Observe(load);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                Log.HostLoadUnreadable(logger, Subject, e);
                ready.TrySetResult();
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), clock, ct);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    /// <summary>Takes one report in (the NATS subscription calls it; tests may too).</summary>
    public void Observe(HostLiveLoad load)
    {
        bool opened;
        lock (_gate)
        {
            var now = clock.GetUtcNow();
            _state.Observe(load, now);
            _state.Prune(now, options.StaleAfter * 10);
            var was = _open;
            opened = Evaluate() && !was;
        }
        if (opened)
            RaiseOpened();
    }

    /// <summary>Under <see cref="_gate"/>: whether mirrors may run now; arms the timer that looks again when not.</summary>
    private bool Evaluate()
    {
        var open = _state.MayRunMirrors(clock.GetUtcNow(), out var recheckIn);
        var was = _open;
        _open = open;
        if (!open)
        {
            _recheck ??= clock.CreateTimer(_ => Recheck(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            _recheck.Change(recheckIn > TimeSpan.FromMilliseconds(1) ? recheckIn : TimeSpan.FromMilliseconds(1), Timeout.InfiniteTimeSpan);
        }
        if (was != open)
            Log.MirrorsGate(logger, open ? "may run" : "wait for live work on this machine");
        return open;
    }

    private void Recheck()
    {
        bool opened;
        lock (_gate)
        {
            var was = _open;
            opened = Evaluate() && !was;
        }
        if (opened)
            RaiseOpened();
    }

    /// <summary>Tells every listener; one that throws is logged and does not keep the others (or this timer, or the
    /// subscription it runs on) from going on.</summary>
    private void RaiseOpened()
    {
        if (Opened is not { } opened)
            return;
        foreach (var listener in opened.GetInvocationList().Cast<Action>())
        {
            try
            {
                listener();
            }
            catch (Exception e)
            {
                Log.OpenedListenerFailed(logger, e);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _listening.ContinueWith(_ => { }, TaskScheduler.Default);
        if (_recheck is not null)
            await _recheck.DisposeAsync();
        _stop.Dispose();
    }
}
