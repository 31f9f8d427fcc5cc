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
public sealed partial class RolloutView(TopologyClient topology, IOptions<IngressOptions> options, IngressMetrics metrics, ILogger<RolloutView> logger) : BackgroundService
{
    private volatile RolloutState _current = new() { Live = options.Value.LiveColour, Reason = "configured live colour" };
    private volatile INatsKVStore? _sessions;

    public RolloutState Current => _current;

    private volatile bool _stateRead;

    /// <summary>
    /// Whether the real rollout state has been read (or there is none: no promoter has ever created its bucket).
    /// Until then <see cref="Current"/> is the configured default, <c>/readyz</c> answers 503, and no session is
    /// pinned (requests go to the configured live colour unpinned), so no pin can contradict the real state.
    /// </summary>
    public bool StateRead => _stateRead;

    private long _nextSessionsLookup;

    // No promoter has ever created the rollout state's bucket: there are no pins to keep either.
    private volatile bool _noPromoter;

    /// <summary>
    /// Whether sessions can be pinned: the pins bucket is known (or no promoter has ever run, so there is nothing to pin
    /// against). A promoter creates that bucket after the rollout state's, and in a cluster each bucket takes a moment to
    /// form; until it is known, sessions are routed to the live colour unpinned, so <c>/readyz</c> waits for it.
    /// </summary>
    public bool PinsReady => _sessions is not null || _noPromoter;

    /// <summary>The session pins bucket, once the promoter has created it (looked up at most once a second until then).</summary>
    public async ValueTask<INatsKVStore?> GetSessionsAsync(CancellationToken ct)
    {
        if (!_stateRead)
            return null;
        if (_sessions is { } cached)
            return cached;
        var now = Environment.TickCount64;
        var next = Interlocked.Read(ref _nextSessionsLookup);
        if (now < next || Interlocked.CompareExchange(ref _nextSessionsLookup, now + 1000, next) != next)
            return null;
        return _sessions ??= await TryGetSessionsAsync(ct);
    }

    /// <summary>Raised after every state change seen by this ingress (after the state is applied: routing already uses it).</summary>
    public event Action<RolloutState>? Changed;

    /// <summary>Completed (and replaced) each time a state is applied; what <see cref="WaitForVersionAsync"/> waits on.</summary>
    private TaskCompletionSource _applied = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>
    /// The applied state once its version is at least <paramref name="version"/>: at once when it already is,
    /// otherwise as soon as the watch applies such a state (the moment routing starts using it).
    /// </summary>
    public async Task<RolloutState> WaitForVersionAsync(long version, CancellationToken ct)
    {
        while (true)
        {
            // The signal is read before the state: a state applied in between completes this signal.
            var signal = Volatile.Read(ref _applied).Task;
            var current = _current;
            if (current.Version >= version)
                return current;
            await signal.WaitAsync(ct);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var waiting = false;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var store = await topology.BucketAsync(Rollouts.Bucket, stoppingToken);
                _noPromoter = false;
                _sessions ??= await TryGetSessionsAsync(stoppingToken);
                // Not there yet (the promoter creates it after the state's bucket): looked for beside the watch, which
                // may deliver nothing new for a long time.
                if (_sessions is null)
                    _ = FindSessionsAsync(stoppingToken);
                await foreach (var entry in store.WatchAsync<RolloutState>(Rollouts.StateKey, cancellationToken: stoppingToken))
                {
                    // Once the pins bucket is known (before the first state, normally) this costs nothing.
                    _sessions ??= await TryGetSessionsAsync(stoppingToken);
                    if (entry.Value is not { } state) continue;
                    // Applied in the order the watch delivers the promoter's writes (KV revisions), and signalled
                    // before the log, the metrics and the console's handler.
                    var before = _current;
                    _current = state;
                    _stateRead = true;
                    Interlocked.Exchange(ref _applied, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
                    if (before.Version != state.Version || before.Phase != state.Phase)
                        LogRollout(logger, state.Phase, state.Live, state.Candidate ?? "-", state.Weight, state.Version, state.Reason);
                    metrics.Rollout(state);
                    Changed?.Invoke(state);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (TopologyMissingException e)
            {
                // No promoter has ever run: there is no state to read, and the configured live colour is the state.
                _stateRead = true;
                _noPromoter = true;
                if (!waiting)
                    LogNoRolloutBucket(logger, _current.Live, e);
                waiting = true;
                await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken);
            }
            catch (Exception e)
            {
                if (!waiting)
                    LogStateUnavailable(logger, _current.Live, e);
                waiting = true;
                await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken);
            }
        }
    }

    /// <summary>Looks for the pins bucket every 250 ms until it is there (or the view stops).</summary>
    private async Task FindSessionsAsync(CancellationToken ct)
    {
        while (_sessions is null && !ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(250), ct);
                _sessions ??= await TryGetSessionsAsync(ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (Exception e)
            {
                LogSessionsUnavailable(logger, e);
            }
        }
    }

    [LoggerMessage(EventId = 2103, Level = LogLevel.Debug, Message = "The session pins bucket could not be looked up; trying again")]
    private static partial void LogSessionsUnavailable(ILogger logger, Exception exception);

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

    [LoggerMessage(EventId = 2100, Level = LogLevel.Information, Message = "Rollout {Phase}: live {Live}, candidate {Candidate}, weight {Weight}% (v{Version}, {Reason})")]
    private static partial void LogRollout(ILogger logger, RolloutPhase phase, string live, string candidate, int weight, long version, string reason);

    [LoggerMessage(EventId = 2101, Level = LogLevel.Information, Message = "No rollout state bucket (no promoter has run yet); the configured live colour {Live} is the state")]
    private static partial void LogNoRolloutBucket(ILogger logger, string live, Exception exception);

    [LoggerMessage(EventId = 2102, Level = LogLevel.Information, Message = "Rollout state not available yet; serving live colour {Live} unpinned, not ready")]
    private static partial void LogStateUnavailable(ILogger logger, string live, Exception exception);
}
