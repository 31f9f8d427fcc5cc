using Microsoft.Extensions.Options;
using NATS.Client.KeyValueStore;
using QwenNats.Messaging;

namespace QwenNats.Ingress.Routing;

/// <summary>Applies <see cref="RoutingPolicy"/> with the session pins shared by every ingress in KV <c>qwen_sessions</c>.</summary>
public sealed partial class SessionRouter(RolloutView view, TimeProvider clock, IOptions<IngressOptions> options, ILogger<SessionRouter> logger)
{
    public async Task<RouteDecision> RouteAsync(string sessionId, CancellationToken ct)
    {
        var state = view.Current;
        var store = await view.GetSessionsAsync(ct);
        var now = clock.GetUtcNow();
        if (store is null)
            return RoutingPolicy.DecideUnknownPin(state);

        var key = SessionKeys.For(sessionId);
        SessionPin? pin = null;
        DateTimeOffset written = default;
        try
        {
            var entry = await store.TryGetEntryAsync<SessionPin>(key, cancellationToken: ct);
            if (entry.Success && entry.Value.Value is { } p)
            {
                pin = p;
                written = entry.Value.Created;
            }
            else if (!(entry.Success ? entry.Value.Error is null : entry.Error is NatsKVKeyNotFoundException or NatsKVKeyDeletedException))
            {
                // Not "no pin" but "pin unknown" (an error result, or a value that did not deserialize).
                LogPinUnreadable(logger, entry.Success ? entry.Value.Error : entry.Error);
                return RoutingPolicy.DecideUnknownPin(state);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogPinUnreadable(logger, e);
            return RoutingPolicy.DecideUnknownPin(state);
        }

        var decision = RoutingPolicy.Decide(state, pin, sessionId, now);
        var refresh = pin is not null && now - written > options.Value.PinRefreshAfter;
        if (decision.WritePin || (refresh && decision.Reason == RouteReason.Pinned))
        {
            var updated = decision.WritePin
                ? new SessionPin { Colour = decision.Colour, RolloutId = state.RolloutId, PinnedAt = now }
                : pin!;
            try
            {
                await store.PutAsync(key, updated, cancellationToken: ct);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogPinNotWritten(logger, e);
            }
        }
        return decision;
    }
}
