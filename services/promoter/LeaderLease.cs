using QwenNats.Messaging;
using Microsoft.Extensions.Logging;

namespace QwenNats.Promoter;

/// <summary>
/// The leader lease (KV <c>qwen_rollout</c>/<c>leader</c>): taken when free or expired, renewed by
/// compare-and-set a few times per lifetime, released on shutdown so a standby takes over at once.
/// </summary>
public sealed class LeaderLease(RolloutStore store, ServiceIdentity identity, PromoterSettings settings, PromoterMetrics metrics, TimeProvider clock, ILogger<LeaderLease> logger)
{
    private DateTimeOffset _renewedAt;
    private bool _held;

    public string Holder => identity.InstanceId;

    /// <summary>Whether the last attempt to take or renew the lease won it.</summary>
    public bool Held => _held;

    /// <summary>Whether the lease is surely still ours by this process's clock: held, and renewed less than a lifetime ago
    /// (after that a standby may have taken it, whatever the last renewal said).</summary>
    public bool SurelyHeld => _held && clock.GetUtcNow() - _renewedAt < settings.Options.LeaseTtl;

    /// <summary>Takes or renews the lease; true while this promoter holds it.</summary>
    public async Task<bool> HoldAsync(CancellationToken ct)
    {
        var o = settings.Options;
        var now = clock.GetUtcNow();
        if (_held && now - _renewedAt < o.LeaseTtl / 3)
            return true;
        var lease = new PromoterLease(Holder, (now + o.LeaseTtl).ToUnixTimeMilliseconds());
        var current = await store.Rollout.TryGetEntryAsync<PromoterLease>(Rollouts.LeaseKey, cancellationToken: ct);
        bool won;
        if (!current.Success || current.Value.Value is null)
        {
            won = (await store.Rollout.TryCreateAsync(Rollouts.LeaseKey, lease, cancellationToken: ct)).Success;
            if (!won && current.Success)
                won = (await store.Rollout.TryUpdateAsync(Rollouts.LeaseKey, lease, current.Value.Revision, cancellationToken: ct)).Success;
        }
        else
        {
            var held = current.Value.Value;
            won = (held.Holder == Holder || held.ExpiresUnixMs < now.ToUnixTimeMilliseconds())
                  && (await store.Rollout.TryUpdateAsync(Rollouts.LeaseKey, lease, current.Value.Revision, cancellationToken: ct)).Success;
        }
        if (won) _renewedAt = now;
        _held = won;
        metrics.Leader.Set(won ? 1 : 0);
        return won;
    }

    public async Task ReleaseAsync()
    {
        _held = false;
        metrics.Leader.Set(0);
        try
        {
            var current = await store.Rollout.TryGetEntryAsync<PromoterLease>(Rollouts.LeaseKey);
            if (current.Success && current.Value.Value?.Holder == Holder)
                await store.Rollout.TryUpdateAsync(Rollouts.LeaseKey, new PromoterLease(Holder, 0), current.Value.Revision);
        }
        catch (Exception e)
        {
            PromoterLog.LeaseNotReleased(logger, e);
        }
    }
}
