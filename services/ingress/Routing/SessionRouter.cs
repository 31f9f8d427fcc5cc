using Microsoft.Extensions.Options;
using NATS.Client.KeyValueStore;
using QwenNats.Messaging;

namespace QwenNats.Ingress.Routing;

/// <summary>Where a request goes, and the write of its session's pin when one is needed.</summary>
public sealed record Routed(RouteDecision Decision, PinWrite PinWrite);

/// <summary>
/// A session pin to write, started by whoever comes first: the request's path right after it published its work (so
/// the write does not queue in front of the work on the connection and the server), or the answer, which waits for it.
/// </summary>
public sealed class PinWrite
{
    private readonly Func<Task>? _write;
    private Task? _written;

    public PinWrite(Func<Task> write) => _write = write;

    private PinWrite() => _written = Task.CompletedTask;

    /// <summary>Nothing to write.</summary>
    public static PinWrite None { get; } = new();

    /// <summary>Starts the write (once); the task completes when the pin is in KV or the write failed (it never faults).</summary>
    public Task Start()
    {
        if (Volatile.Read(ref _written) is { } started)
            return started;
        lock (_gate)
            return _written ??= _write!();
    }

    private readonly Lock _gate = new();
}

/// <summary>
/// Applies <see cref="RoutingPolicy"/> with the session pins shared by every ingress in KV <c>qwen_sessions</c>.
/// A pin is read from this ingress's watched copy (<see cref="SessionPins"/>) when it holds it, from KV otherwise;
/// a session this ingress has just made up has no pin to read. A pin to write is written beside the request
/// (<see cref="Routed.PinWrite"/>), and callers hold the answer until it is in KV, so a client never sees a session
/// whose pin could still be missing, while the request itself does not wait for the write.
/// A session this ingress made up (<see cref="MadeSessionId"/>) carries its pin in its id while KV holds none
/// (<see cref="RoutingPolicy.ImplicitPin"/>): its first request writes no pin when it goes to the live colour
/// (<c>Ingress:ImplicitPins</c>), and the pin is written when the session comes back, from its second request on.
/// </summary>
public sealed partial class SessionRouter(RolloutView view, SessionPins pins, TimeProvider clock, IOptions<IngressOptions> options, ILogger<SessionRouter> logger)
{
    /// <summary>A new id for a session the ingress names itself: it carries the version of the rollout state the
    /// ingress applies (once it has read one; a plain random id before, which carries no pin).</summary>
    public string NewSessionId() =>
        view.StateRead ? MadeSessionId.New(view.Current.Version, clock.GetUtcNow()) : Guid.NewGuid().ToString("N");

    private ImplicitPinLimits Limits => new(pins.Idle, options.Value.ImplicitPinClockSkew);

    /// <param name="isNew">The session id was made up by this ingress for this request: no pin can exist.</param>
    public async ValueTask<Routed> RouteAsync(string sessionId, bool isNew, CancellationToken ct)
    {
        var state = view.Current;
        var store = await view.GetSessionsAsync(ct);
        var now = clock.GetUtcNow();
        if (store is null)
            return new Routed(RoutingPolicy.DecideUnknownPin(state), PinWrite.None);

        var key = SessionKeys.For(sessionId);
        SessionPin? pin = null;
        DateTimeOffset written = default;
        RouteDecision decision;
        var fromId = false;
        if (isNew)
            decision = RoutingPolicy.DecideMadeUp(state, sessionId, now, Limits, options.Value.ImplicitPins);
        else
        {
            if (pins.Lookup(key, out pin, out written) is not { } stored)
            {
                pin = null;
                try
                {
                    var entry = await store.TryGetEntryAsync<SessionPin>(key, cancellationToken: ct);
                    if (entry.Success && entry.Value.Value is { } p)
                    {
                        (stored, pin, written) = (StoredPin.Pinned, p, entry.Value.Created);
                    }
                    else if (entry.Success ? entry.Value.Error is null : entry.Error is NatsKVKeyNotFoundException)
                        stored = StoredPin.Missing;
                    else if (!entry.Success && entry.Error is NatsKVKeyDeletedException)
                        stored = StoredPin.Deleted;
                    else
                    {
                        // Not "no pin" but "pin unknown" (an error result, or a value that did not deserialize).
                        LogPinUnreadable(logger, entry.Success ? entry.Value.Error : entry.Error);
                        return new Routed(RoutingPolicy.DecideUnknownPin(state), PinWrite.None);
                    }
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    LogPinUnreadable(logger, e);
                    return new Routed(RoutingPolicy.DecideUnknownPin(state), PinWrite.None);
                }
            }
            decision = RoutingPolicy.DecideKnown(state, stored, pin, sessionId, now, Limits, out fromId);
        }

        var refresh = pin is not null && now - written > options.Value.PinRefreshAfter;
        // A session that followed the pin its made-up id carries is coming back: that pin is written to KV now.
        if (!decision.WritePin && !fromId && !(refresh && decision.Reason == RouteReason.Pinned))
            return new Routed(decision, PinWrite.None);
        var updated = decision.WritePin || fromId
            ? new SessionPin { Colour = decision.Colour, RolloutId = state.RolloutId, PinnedAt = now }
            : pin!;
        pins.Wrote(key, updated, now);
        return new Routed(decision, new PinWrite(() => WriteAsync(store, key, updated)));
    }

    private async Task WriteAsync(INatsKVStore store, string key, SessionPin pin)
    {
        try
        {
            // Not cancelled with the request: a pin decided is a pin kept.
            await store.PutAsync(key, pin, cancellationToken: CancellationToken.None);
        }
        catch (Exception e)
        {
            pins.Forget(key, pin);
            LogPinNotWritten(logger, e);
        }
    }
}
