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

    [Fact]
    public void Every_alert_names_a_documented_metric()
    {
        var alerts = File.ReadAllText(Path.Combine(Paths.RepoRoot, "deploy", "prometheus", "alerts.yml"));
        var names = MetricNames(alerts).Distinct().ToList();
        Assert.Contains("qwen_request_duration_seconds", names);
        Assert.All(names, n => Assert.Contains(n, DocumentedFamilies()));
        Assert.Contains("> 3", alerts);
    }

    [GeneratedRegex(@"^\| `(qwen_[a-z_]+)` \|", RegexOptions.Multiline)]
    private static partial Regex FamilyInTable();

    [GeneratedRegex(@"qwen_[a-z_]+")]
    private static partial Regex MetricName();

    [GeneratedRegex(@"_(bucket|count|sum)$")]
    private static partial Regex Suffix();
}
