using QwenNats.ServiceDefaults;

namespace QwenNats.Promoter;

/// <summary>The promoter's Prometheus instruments.</summary>
public sealed class PromoterMetrics(QwenMetrics metrics)
{
    public Prometheus.Counter Transitions { get; } = metrics.Factory.CreateCounter("qwen_rollout_transitions_total", "Rollout phase changes, by trigger and cause (operator, judge, timer).", ["trigger", "cause"]);
    public Prometheus.Gauge Leader { get; } = metrics.Factory.CreateGauge("qwen_promoter_leader", "1 while this promoter holds the lease.");
    public Prometheus.Gauge SinceVerdict { get; } = metrics.Factory.CreateGauge("qwen_rollout_seconds_since_verdict",
        "While a rollout is in Shadow or Canary: seconds since the leading promoter last received a verdict for it (0 otherwise).");
    public Prometheus.Gauge AuditPending { get; } = metrics.Factory.CreateGauge("qwen_rollout_audit_pending",
        "Rollout state changes whose audit record is not yet in the audit stream (appended by the leading promoter when the stream takes it).");
}
