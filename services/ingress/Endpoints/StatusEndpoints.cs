using QwenNats.Messaging;
using NATS.Client.Core;
using QwenNats.Ingress.OpenAi;

namespace QwenNats.Ingress.Endpoints;

/// <summary><c>/healthz</c> (the process answers), <c>/readyz</c> (NATS, topology, the rollout state read, live workers), <c>/api/rollout</c> and <c>/v1/models</c>.</summary>
public static class StatusEndpoints
{
    public static IEndpointRouteBuilder MapStatusApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/healthz", () => TypedResults.Json(new Dictionary<string, string> { ["status"] = "ok" }));

        app.MapGet("/readyz", async (NatsConnection nats, WorkerRegistry workers, RequestRouting routing, IInferenceClient client, Routing.RolloutView view,
            Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckService health, CancellationToken ct) =>
        {
            var live = routing.LiveColour;
            var connected = nats.ConnectionState == NatsConnectionState.Open && client.Ready.IsCompleted;
            var count = workers.Live(live).Count;
            var checks = await health.CheckHealthAsync(c => c.Tags.Contains(HealthTags.Ready), ct);
            var ready = connected && count > 0 && view.StateRead && checks.Status == Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Healthy;
            var body = new Dictionary<string, object>
            {
                ["status"] = ready ? "ready" : "not_ready",
                ["nats"] = connected ? "connected" : nats.ConnectionState.ToString().ToLowerInvariant(),
                ["live_colour"] = live,
                ["live_workers"] = count,
                ["rollout_state"] = view.StateRead ? "read" : "waiting",
                ["topology"] = checks.Entries.TryGetValue("topology", out var t) ? t.Description ?? t.Status.ToString() : "unknown",
            };
            return TypedResults.Json(body, statusCode: ready ? 200 : 503);
        });

        app.MapGet("/api/rollout", async (Routing.RolloutView view, IInferenceClient client, WorkerRegistry workers, ShadowMirror mirror, Messaging.Topology.TopologyClient topology, CancellationToken ct) =>
        {
            Messaging.Verdict? verdict = null;
            try
            {
                var judge = await topology.BucketAsync(Messaging.Judging.Bucket, ct);
                var entry = await judge.TryGetEntryAsync<Messaging.Verdict>(Messaging.Judging.LatestKey, cancellationToken: ct);
                if (entry.Success) verdict = entry.Value.Value;
            }
            catch (Messaging.Topology.TopologyMissingException)
            {
            }
            return TypedResults.Json(new RolloutSnapshot(client.InstanceId, view.Current,
                workers.Live().GroupBy(w => w.Colour).ToDictionary(g => g.Key, g => g.Count()), verdict,
                new ShadowCounters(mirror.Sent, mirror.Compared, mirror.Dropped)), IngressJson.Context.RolloutSnapshot);
        });

        return app;
    }

    /// <summary><c>GET /v1/models</c> (mapped on the <c>/v1</c> group): what each colour serves, from worker heartbeats.</summary>
    public static IEndpointRouteBuilder MapModelsApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/models", (WorkerRegistry workers) =>
        {
            var entries = workers.Live()
                .GroupBy(w => (w.ModelId, w.Colour, w.ProfileVersion))
                .Select(g => new ModelEntry(g.Key.ModelId, "model", 0, "qwen-nats", g.Key.Colour, g.Key.ProfileVersion, g.Count()))
                .OrderBy(e => e.Colour, StringComparer.Ordinal)
                .ToArray();
            return TypedResults.Json(new ModelList("list", entries), IngressJson.Context.ModelList);
        });
        return app;
    }
}
