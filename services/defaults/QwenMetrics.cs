using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Prometheus;

namespace QwenNats.ServiceDefaults;

/// <summary>The <c>Metrics</c> section of services without an HTTP port of their own (worker, judge, promoter).</summary>
public sealed record MetricsOptions
{
    public const string Section = "Metrics";

    /// <summary>Port of the Prometheus endpoint <c>/metrics</c>; 0 turns it off.</summary>
    public int Port { get; init; }

    public string Host { get; init; } = "127.0.0.1";
}

/// <summary>
/// This service's own metrics registry (not prometheus-net's static default), so several services in one
/// process — as in the tests — each expose only their own families. Names and labels: docs/metrics.md.
/// </summary>
public sealed class QwenMetrics
{
    public CollectorRegistry Registry { get; } = Metrics.NewCustomRegistry();

    public IMetricFactory Factory => Metrics.WithCustomRegistry(Registry);

    /// <summary>Latency buckets from 5 ms to about 40 s.</summary>
    public static readonly double[] LatencyBuckets = Histogram.ExponentialBuckets(0.005, 2, 14);
}

/// <summary>Serves <c>/metrics</c> on <see cref="MetricsOptions.Port"/> when it is set.</summary>
public sealed class MetricsServer(QwenMetrics metrics, IOptions<MetricsOptions> options, ILogger<MetricsServer> logger) : IHostedService
{
    private IMetricServer? _server;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var o = options.Value;
        if (o.Port <= 0) return Task.CompletedTask;
        _server = new KestrelMetricServer(o.Host, o.Port, "/metrics", metrics.Registry).Start();
        logger.LogInformation("Metrics on http://{Host}:{Port}/metrics", o.Host, o.Port);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_server is not null)
            await _server.StopAsync();
    }
}
