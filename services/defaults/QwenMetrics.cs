using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using QwenNats.Messaging;
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

    private static readonly double[] FixedLatencyBounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60];

    /// <summary>
    /// Latency buckets from 5 ms in a 1-2.5-5 then 1-2-3-5 progression up to 60 s, doubling beyond, ending at
    /// the first bound that covers <paramref name="longest"/> (a request timeout), so no request that ends before
    /// its deadline falls into the open-ended bucket. The latency thresholds of deploy/prometheus/alerts.yml (3 s, 5 s)
    /// are bounds, so a p95 compared with one is decided exactly rather than interpolated across a wide bucket.
    /// </summary>
    public static double[] LatencyBucketsUpTo(TimeSpan longest)
    {
        var buckets = new List<double>();
        foreach (var b in FixedLatencyBounds)
        {
            buckets.Add(b);
            if (b >= longest.TotalSeconds)
                return [.. buckets];
        }
        while (buckets[^1] < longest.TotalSeconds)
            buckets.Add(buckets[^1] * 2);
        return [.. buckets];
    }

}

/// <summary>
/// Serves <c>/metrics</c>, <c>/healthz</c> (liveness: the process answers) and <c>/readyz</c> (the health checks
/// tagged <c>ready</c>: NATS connected, topology bound; 503 naming what is missing otherwise) on
/// <see cref="MetricsOptions.Port"/> when it is set (worker, judge, promoter).
/// </summary>
public sealed partial class MetricsServer(QwenMetrics metrics, IOptions<MetricsOptions> options, HealthCheckService health, ILogger<MetricsServer> logger) : IHostedService
{
    private WebApplication? _app;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var o = options.Value;
        if (o.Port <= 0) return;
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls($"http://{o.Host}:{o.Port}");
        var app = builder.Build();
        app.MapMetrics("/metrics", metrics.Registry);
        app.MapGet("/healthz", () => Results.Text("{\"status\":\"ok\"}", "application/json"));
        app.MapGet("/readyz", async (CancellationToken ct) =>
        {
            var report = await health.CheckHealthAsync(c => c.Tags.Contains(HealthTags.Ready), ct);
            var ready = report.Status == HealthStatus.Healthy;
            var body = new Dictionary<string, string> { ["status"] = ready ? "ready" : "not_ready" };
            foreach (var (name, entry) in report.Entries)
                body[name] = entry.Description ?? entry.Status.ToString();
            return Results.Text(System.Text.Json.JsonSerializer.Serialize(body, HealthJson.Default.DictionaryStringString), "application/json", statusCode: ready ? 200 : 503);
        });
        await app.StartAsync(cancellationToken);
        _app = app;
        LogListening(logger, o.Host, o.Port);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_app is not null)
        {
            await _app.StopAsync(cancellationToken);
            await _app.DisposeAsync();
        }
    }

    [LoggerMessage(EventId = 1900, Level = LogLevel.Information, Message = "Metrics and health on http://{Host}:{Port} (/metrics, /healthz, /readyz)")]
    private static partial void LogListening(ILogger logger, string host, int port);
}

[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, string>))]
internal sealed partial class HealthJson : System.Text.Json.Serialization.JsonSerializerContext;
