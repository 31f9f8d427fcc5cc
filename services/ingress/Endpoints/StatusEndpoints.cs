using QwenNats.Messaging;
using NATS.Client.Core;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;
using QwenNats.Ingress.OpenAi;

namespace QwenNats.Ingress.Endpoints;

/// <summary><c>/healthz</c> (the process answers), <c>/readyz</c> (NATS, topology, the rollout state read, the session pins bucket known, live workers), <c>/api/rollout</c>, <c>/api/rollout/applied</c> and <c>/v1/models</c>.</summary>
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
            var ready = connected && count > 0 && view.StateRead && view.PinsReady && checks.Status == Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Healthy;
            var body = new Dictionary<string, object>
            {
                ["status"] = ready ? "ready" : "not_ready",
                ["nats"] = connected ? "connected" : nats.ConnectionState.ToString().ToLowerInvariant(),
                ["live_colour"] = live,
                ["live_workers"] = count,
                ["rollout_state"] = view.StateRead ? "read" : "waiting",
                ["session_pins"] = view.PinsReady ? "ready" : "waiting",
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

        // Only the state this ingress routes by, read from memory; with ?version=N it answers as soon as the ingress has
        // applied state version N (a long poll, at most wait_ms, capped by Ingress:RolloutWaitMax): what a tool that
        // waits for a switch to take effect (bench: switch propagation) asks, with no polling and no NATS round trip.
        app.MapGet("/api/rollout/applied", async (Routing.RolloutView view, IInferenceClient client, IOptions<IngressOptions> options,
            long? version, [FromQuery(Name = "wait_ms")] int? waitMs, CancellationToken ct) =>
        {
            var state = view.Current;
            if (version is { } wanted && state.Version < wanted)
            {
                var max = options.Value.RolloutWaitMax;
                var wait = waitMs is { } ms ? TimeSpan.FromMilliseconds(Math.Clamp(ms, 0, (long)max.TotalMilliseconds)) : max;
                using var bounded = CancellationTokenSource.CreateLinkedTokenSource(ct);
                bounded.CancelAfter(wait);
                try
                {
                    state = await view.WaitForVersionAsync(wanted, bounded.Token);
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    state = view.Current;
                }
            }
            return TypedResults.Json(new AppliedRollout(client.InstanceId, version is null || state.Version >= version, state), IngressJson.Context.AppliedRollout);
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
