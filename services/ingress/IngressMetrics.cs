using Prometheus;
using QwenNats.Messaging;
using QwenNats.ServiceDefaults;

namespace QwenNats.Ingress;

/// <summary>The ingress's metric families (docs/metrics.md).</summary>
public sealed class IngressMetrics
{
    public IngressMetrics(QwenMetrics metrics, OperatorConsole.RecentLatency recent, Microsoft.Extensions.Options.IOptions<IngressOptions> options)
    {
        Recent = recent;
        var f = metrics.Factory;
        Requests = f.CreateCounter("qwen_requests_total", "Inference requests by serving colour, task and HTTP-equivalent status.", ["colour", "task", "status"]);
        // Up to the request timeout: a request that ends just before its deadline still lands in a bucket.
        var buckets = QwenMetrics.LatencyBucketsUpTo(options.Value.RequestTimeout);
        Duration = f.CreateHistogram("qwen_request_duration_seconds", "End-to-end inference request duration at the ingress.",
            new HistogramConfiguration { LabelNames = ["colour", "task"], Buckets = buckets });
        TimeToFirstToken = f.CreateHistogram("qwen_time_to_first_token_seconds", "Time to first token reported by the worker.",
            new HistogramConfiguration { LabelNames = ["colour", "task"], Buckets = buckets });
        ClientTimeToFirstToken = f.CreateHistogram("qwen_client_time_to_first_token_seconds",
            "From the ingress starting a request to its first token (chat) or its answer (sentiment) reaching the ingress: queue and bus included.",
            new HistogramConfiguration { LabelNames = ["colour", "task"], Buckets = buckets });
        Tokens = f.CreateCounter("qwen_tokens_total", "Prompt and generated tokens.", ["colour", "kind"]);
        TokensPerSecond = f.CreateHistogram("qwen_tokens_per_second", "Generation speed of chat answers.",
            new HistogramConfiguration { LabelNames = ["colour"], Buckets = Histogram.ExponentialBuckets(1, 2, 14) });
        Deliveries = f.CreateCounter("qwen_request_deliveries_total", "Finished live requests by how they reached their worker: direct (a free worker took the offer), queued (through the JetStream work queue), requeued (offered directly, then queued again because the worker went away or never accepted).", ["colour", "path"]);
        Mirrors = f.CreateCounter("qwen_shadow_mirrors_total", "Mirrored requests: sent to the candidate, compared (sample recorded), dropped (candidate saturated), yielded (held back for live work on the candidate's machine until the deadline, Worker:ShadowYield), abandoned (cancelled on the candidate: the live request's client left without an answer).", ["result"]);
        Phase = f.CreateGauge("qwen_rollout_phase", "1 for the rollout phase this ingress applies, 0 for the others.", ["phase"]);
        Weight = f.CreateGauge("qwen_canary_weight", "Percent of new sessions sent to the candidate.");
        PoolWorkers = f.CreateGauge("qwen_pool_workers", "Workers this ingress sees alive, by colour.", ["colour"]);
        LivePoolWorkers = f.CreateGauge("qwen_live_pool_workers", "Workers this ingress sees alive in the live colour's pool.");
        foreach (var p in Enum.GetNames<RolloutPhase>())
            Phase.WithLabels(p).Set(p == nameof(RolloutPhase.Stable) ? 1 : 0);
    }

    public Counter Requests { get; }
    public Histogram Duration { get; }
    public Histogram TimeToFirstToken { get; }

    /// <summary>What a client waits for the first token, measured at the ingress (the worker's figure leaves out the queue).</summary>
    public Histogram ClientTimeToFirstToken { get; }
    public Counter Tokens { get; }
    public Histogram TokensPerSecond { get; }
    public Counter Mirrors { get; }
    public Counter Deliveries { get; }
    public Gauge Phase { get; }
    public Gauge Weight { get; }
    public Gauge PoolWorkers { get; }
    public Gauge LivePoolWorkers { get; }

    /// <summary>The last seconds of request latencies by colour, for the console's live chart.</summary>
    public OperatorConsole.RecentLatency Recent { get; }

    public void Rollout(RolloutState state)
    {
        foreach (var p in Enum.GetNames<RolloutPhase>())
            Phase.WithLabels(p).Set(p == state.Phase.ToString() ? 1 : 0);
        Weight.Set(state.Weight);
    }

    /// <summary>Records one finished request from its final reply; <paramref name="firstOutput"/> is when its first token
    /// (or, unstreamed, its answer) reached the ingress.</summary>
    public void Finished(string colour, string task, InferReply final, TimeSpan elapsed, TimeSpan? firstOutput = null)
    {
        if (final.Result is { } r)
        {
            Requests.WithLabels(r.Colour, task, "200").Inc();
            Duration.WithLabels(r.Colour, task).Observe(elapsed.TotalSeconds);
            Recent.Record(Environment.TickCount64, r.Colour, elapsed.TotalMilliseconds, ok: true);
            TimeToFirstToken.WithLabels(r.Colour, task).Observe(r.TimeToFirstTokenMs / 1000);
            ClientTimeToFirstToken.WithLabels(r.Colour, task).Observe((firstOutput ?? elapsed).TotalSeconds);
            Tokens.WithLabels(r.Colour, "prompt").Inc(r.PromptTokens);
            Tokens.WithLabels(r.Colour, "completion").Inc(r.CompletionTokens);
            var generating = (r.TotalMs - r.TimeToFirstTokenMs) / 1000;
            if (task == InferTasks.Chat && r.CompletionTokens > 1 && generating > 0)
                TokensPerSecond.WithLabels(r.Colour).Observe((r.CompletionTokens - 1) / generating);
        }
        else if (final.Error is { } e)
        {
            Requests.WithLabels(e.Colour ?? colour, task, OpenAi.ApiError.FromInfer(e).Status.ToString(System.Globalization.CultureInfo.InvariantCulture)).Inc();
            Duration.WithLabels(e.Colour ?? colour, task).Observe(elapsed.TotalSeconds);
            Recent.Record(Environment.TickCount64, e.Colour ?? colour, elapsed.TotalMilliseconds, ok: false);
        }
    }

    public void Refused(string colour, string task, int status) =>
        Requests.WithLabels(colour, task, status.ToString(System.Globalization.CultureInfo.InvariantCulture)).Inc();
}
