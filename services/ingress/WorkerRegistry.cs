using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using NATS.Client.Core;
using QwenNats.Messaging;

namespace QwenNats.Ingress;

/// <summary>Tracks live workers from their heartbeats, so the ingress can answer 503 at once when a pool is empty.</summary>
public sealed class WorkerRegistry(NatsConnection nats, IOptions<IngressOptions> options, ILogger<WorkerRegistry> logger) : BackgroundService
{
    private readonly ConcurrentDictionary<string, (WorkerHeartbeat Beat, DateTimeOffset Seen)> _workers = new();

    public IReadOnlyList<WorkerHeartbeat> Live(string? colour = null)
    {
        var cutoff = DateTimeOffset.UtcNow - options.Value.WorkerStaleAfter;
        return _workers.Values
            .Where(w => w.Seen >= cutoff && !w.Beat.Leaving && (colour is null || w.Beat.Colour == colour))
            .Select(w => w.Beat)
            .OrderBy(w => w.WorkerId, StringComparer.Ordinal)
            .ToArray();
    }

    public bool HasWorkers(string colour) => Live(colour).Count > 0;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await foreach (var msg in nats.SubscribeAsync<WorkerHeartbeat>(Subjects.WorkerHeartbeat, cancellationToken: stoppingToken))
                {
                    if (msg.Data is not { } beat) continue;
                    if (beat.Leaving)
                    {
                        _workers.TryRemove(beat.WorkerId, out _);
                        logger.LogInformation("Worker {WorkerId} ({Colour}) left", beat.WorkerId, beat.Colour);
                        continue;
                    }
                    if (_workers.TryAdd(beat.WorkerId, (beat, DateTimeOffset.UtcNow)))
                        logger.LogInformation("Worker {WorkerId} joined the {Colour} pool (model {Model}, profile {Profile}, {Slots} slots)", beat.WorkerId, beat.Colour, beat.ModelId, beat.ProfileVersion, beat.Slots);
                    else
                        _workers[beat.WorkerId] = (beat, DateTimeOffset.UtcNow);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                logger.LogWarning(e, "Heartbeat subscription failed; resubscribing");
                await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken);
            }
        }
    }
}
