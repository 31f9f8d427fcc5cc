using System.Text.Json;
using System.Text.RegularExpressions;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Unit;

public sealed partial class MonitoringFilesTests
{
    /// <summary>The metric families written down in docs/metrics.md.</summary>
    public static HashSet<string> DocumentedFamilies() =>
        FamilyInTable().Matches(File.ReadAllText(Path.Combine(Paths.RepoRoot, "docs", "metrics.md"))).Select(m => m.Groups[1].Value).ToHashSet();

    private static IEnumerable<string> MetricNames(string expr) =>
        MetricName().Matches(expr).Select(m => Suffix().Replace(m.Value, ""));

    [Fact]
    public void The_dashboard_is_valid_json_and_every_query_names_a_documented_metric()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Paths.RepoRoot, "deploy", "grafana", "qwen-nats.json")));
        var families = DocumentedFamilies();
        var panels = doc.RootElement.GetProperty("panels").EnumerateArray().ToList();
        Assert.True(panels.Count >= 10);
        var exprs = panels.SelectMany(p => p.GetProperty("targets").EnumerateArray()).Select(t => t.GetProperty("expr").GetString()!).ToList();
        Assert.All(exprs, e => Assert.NotEmpty(MetricNames(e)));
        Assert.All(exprs.SelectMany(MetricNames), name => Assert.Contains(name, families));
        Assert.Contains(exprs, e => e.Contains("by (colour)", StringComparison.Ordinal));
        Assert.Contains(exprs, e => e.Contains("qwen_rollout_phase", StringComparison.Ordinal));
        Assert.Contains(exprs, e => e.Contains("qwen_judge_check_value", StringComparison.Ordinal));
    }

    private static string Prometheus(string file) => File.ReadAllText(Path.Combine(Paths.RepoRoot, "deploy", "prometheus", file));

    private static List<string> AlertNames() => AlertName().Matches(Prometheus("alerts.yml")).Select(m => m.Groups[1].Value).ToList();

    [Fact]
    public void Every_alert_names_a_documented_metric()
    {
        var alerts = Prometheus("alerts.yml");
        var names = MetricNames(alerts).Distinct().ToList();
        Assert.Contains("qwen_client_time_to_first_token_seconds", names);
        Assert.Contains("qwen_request_duration_seconds", names);
        Assert.All(names, n => Assert.Contains(n, DocumentedFamilies()));
    }

    [Fact]
    public void Every_alert_has_a_firing_and_a_quiet_test_case_and_a_runbook_entry()
    {
        var tests = Prometheus("alerts.test.yml");
        var cases = AlertTest().Matches(tests).Select(m => (Alert: m.Groups[1].Value, Quiet: m.Groups[2].Value.Trim() == "[]")).ToList();
        var runbook = File.ReadAllText(Path.Combine(Paths.RepoRoot, "docs", "runbook.md"));
        var alerts = AlertNames();
        Assert.True(alerts.Count >= 9, $"only {alerts.Count} alerts");
        Assert.All(alerts, a =>
        {
            Assert.True(cases.Contains((a, false)), $"{a} has no test case where it fires");
            Assert.True(cases.Contains((a, true)), $"{a} has no test case where it stays quiet");
            Assert.True(runbook.Contains($"**{a}**", StringComparison.Ordinal), $"docs/runbook.md does not explain {a}");
        });
        Assert.All(cases, c => Assert.Contains(c.Alert, alerts));
    }

    [Fact]
    public void Every_scraped_job_has_a_down_alert_tested_for_it()
    {
        var jobs = JobName().Matches(Prometheus("prometheus.yml")).Select(m => m.Groups[1].Value).ToList();
        var watched = UpAlert().Matches(Prometheus("alerts.yml")).SelectMany(m => m.Groups[1].Value.Split('|')).ToList();
        var tests = Prometheus("alerts.test.yml");
        Assert.NotEmpty(jobs);
        Assert.All(jobs, j =>
        {
            Assert.Contains(j, watched);
            Assert.Contains($"up{{job=\"{j}\"", tests, StringComparison.Ordinal);
        });
    }

    [Fact]
    public void Latency_thresholds_are_bounds_of_the_ingress_latency_buckets()
    {
        var thresholds = QuantileThreshold().Matches(Prometheus("alerts.yml"))
            .Select(m => double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        var buckets = ServiceDefaults.QwenMetrics.LatencyBucketsUpTo(new Ingress.IngressOptions().RequestTimeout);
        Assert.Equal([5, 3], thresholds);
        Assert.All(thresholds, t => Assert.Contains(t, buckets));
    }

    [GeneratedRegex(@"^\s*- alert: (\w+)$", RegexOptions.Multiline)]
    private static partial Regex AlertName();

    [GeneratedRegex(@"alertname: (\w+)\s*\n\s*exp_alerts:(.*)$", RegexOptions.Multiline)]
    private static partial Regex AlertTest();

    [GeneratedRegex(@"job_name: (\S+)")]
    private static partial Regex JobName();

    [GeneratedRegex(@"up\{job=~""([^""]+)""\}")]
    private static partial Regex UpAlert();

    [GeneratedRegex(@"histogram_quantile\(.*\) > ([0-9.]+)$", RegexOptions.Multiline)]
    private static partial Regex QuantileThreshold();

    [GeneratedRegex(@"^\| `(qwen_[a-z_]+)` \|", RegexOptions.Multiline)]
    private static partial Regex FamilyInTable();

    [GeneratedRegex(@"qwen_[a-z_]+")]
    private static partial Regex MetricName();

    [GeneratedRegex(@"_(bucket|count|sum)$")]
    private static partial Regex Suffix();
}
