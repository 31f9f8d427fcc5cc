using Microsoft.Extensions.Options;
using NATS.Client.KeyValueStore;
using QwenNats.Messaging;
using QwenNats.Messaging.Topology;

namespace QwenNats.Ingress.Routing;

/// <summary>
/// The rollout state as this ingress sees it: a watch on KV <c>qwen_rollout</c>/<c>state</c>, so a switch
/// or a rollback written by the promoter applies here within milliseconds, without a restart. Until the
/// bucket exists (no promoter has run yet) the live colour comes from <c>Ingress:LiveColour</c>.
/// </summary>
public sealed class RolloutView(TopologyClient topology, IOptions<IngressOptions> options, IngressMetrics metrics, ILogger<RolloutView> logger) : BackgroundService
{
    private volatile RolloutState _current = new() { Live = options.Value.LiveColour, Reason = "configured live colour" };
    private volatile INatsKVStore? _sessions;

    public RolloutState Current => _current;

    private long _nextSessionsLookup;

    /// <summary>The session pins bucket, once the promoter has created it (looked up at most once a second until then).</summary>
    public async ValueTask<INatsKVStore?> GetSessionsAsync(CancellationToken ct)
    {
        if (_sessions is { } cached)
            return cached;
        var now = Environment.TickCount64;
        var next = Interlocked.Read(ref _nextSessionsLookup);
        if (now < next || Interlocked.CompareExchange(ref _nextSessionsLookup, now + 1000, next) != next)
            return null;
        return _sessions ??= await TryGetSessionsAsync(ct);
    }

    /// <summary>Raised after every state change seen by this ingress.</summary>
    public event Action<RolloutState>? Changed;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var waiting = false;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var store = await topology.BucketAsync(Rollouts.Bucket, stoppingToken);
                _sessions ??= await TryGetSessionsAsync(stoppingToken);
                await foreach (var entry in store.WatchAsync<RolloutState>(Rollouts.StateKey, cancellationToken: stoppingToken))
                {
                    _sessions ??= await TryGetSessionsAsync(stoppingToken);
                    if (entry.Value is not { } state) continue;
                    var before = _current;
                    _current = state;
                    if (before.Version != state.Version || before.Phase != state.Phase)
                        logger.LogInformation("Rollout {Phase}: live {Live}, candidate {Candidate}, weight {Weight}% (v{Version}, {Reason})",
                            state.Phase, state.Live, state.Candidate ?? "-", state.Weight, state.Version, state.Reason);
                    metrics.Rollout(state);
                    Changed?.Invoke(state);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                if (!waiting)
                    logger.LogInformation("Rollout state not available yet ({Reason}); serving live colour {Live}", e.Message, _current.Live);
                waiting = true;
                await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken);
            }
        }
    }

    private async Task<INatsKVStore?> TryGetSessionsAsync(CancellationToken ct)
    {
        try
        {
            return await topology.BucketAsync(Rollouts.SessionsBucket, ct);
        }
        catch (TopologyMissingException)
        {
            return null;
        }
    }
}
