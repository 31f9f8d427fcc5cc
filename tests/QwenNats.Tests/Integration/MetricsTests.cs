using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Configuration;
using QwenNats.Judge;
using QwenNats.Promoter;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>Every service exposes Prometheus metrics, and they move when traffic flows.</summary>
public sealed class MetricsTests
{
    private static int FreePort() => Ports.Free();

    private static double Sum(string text, string family, string? labelFilter = null) =>
        Regex.Matches(text, $@"^{family}(\{{[^}}]*\}})? ([0-9.eE+-]+)$", RegexOptions.Multiline)
            .Where(m => labelFilter is null || m.Groups[1].Value.Contains(labelFilter, StringComparison.Ordinal))
            .Sum(m => double.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));

    [Fact]
    public async Task Every_service_exposes_its_metric_families_and_they_move_with_traffic()
    {
        await using var server = await NatsServer.StartAsync();
        await using var system = new QwenSystem(server);
        var (workerPort, judgePort, promoterPort) = (FreePort(), FreePort(), FreePort());
        var promoterSettings = RolloutFixture.PromoterSettings(server.Url);
        promoterSettings["Metrics:Port"] = promoterPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
        using var promoter = PromoterHost.Build([], c => c.AddInMemoryCollection(promoterSettings));
        await promoter.StartAsync();
        using var judge = JudgeHost.Build([], c => c.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Nats:Url"] = server.Url, ["Logging:LogLevel:Default"] = "Warning", ["Topology:Storage"] = "memory",
            ["Judge:EvaluateInterval"] = "00:00:00.200", ["Metrics:Port"] = judgePort.ToString(System.Globalization.CultureInfo.InvariantCulture),
        }));
        await judge.StartAsync();
        await system.StartWorkerAsync("blue", "v1", slots: 2, extra: new() { ["Metrics:Port"] = workerPort.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        await system.StartWorkerAsync("green", "v2", slots: 2);
        var (_, http) = await system.StartIngressAsync();
        await QwenSystem.WaitForWorkersAsync(http, "blue", 1);
        await QwenSystem.WaitForWorkersAsync(http, "green", 1);
        await using var op = await Ctl.ConnectAsync(server);
        await Ctl.WaitForLeaderAsync(op);

        for (var i = 0; i < 3; i++)
        {
            (await http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"great\"}", session: $"m{i}"))).Dispose();
            (await http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("Once upon a time", maxTokens: 8), session: $"m{i}"))).Dispose();
        }
        (await http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"x\"}", colour: "red"))).Dispose();
        var start = await Ctl.SendAsync(op, "start", "{\"candidate\":\"green\"}");
        Assert.True(start.Ok, start.Error);
        // The ingress mirrors once it has applied Shadow (it waits for that here, up to its own limit).
        var applied = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync($"/api/rollout/applied?version={start.State!.Version}")).RootElement;
        Assert.True(applied.GetProperty("reached").GetBoolean(), "the ingress did not apply Shadow");
        for (var i = 0; i < 4; i++)
            (await http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"lovely\"}", session: $"s{i}"))).Dispose();

        using var scrape = new HttpClient();
        var ingress = await http.GetStringAsync("/metrics");
        Assert.Equal(3, Sum(ingress, "qwen_requests_total", "task=\"chat\""));
        Assert.True(Sum(ingress, "qwen_requests_total", "task=\"sentiment\",status=\"200\"") >= 7);
        Assert.True(Sum(ingress, "qwen_request_duration_seconds_count") >= 10);
        Assert.True(Sum(ingress, "qwen_time_to_first_token_seconds_count") >= 10);
        // What the client waits for the first token, per task; the alerts' thresholds (3 s, 5 s) are bucket bounds.
        Assert.Equal(3, Sum(ingress, "qwen_client_time_to_first_token_seconds_count", "task=\"chat\""));
        Assert.True(Sum(ingress, "qwen_client_time_to_first_token_seconds_count", "task=\"sentiment\"") >= 7);
        Assert.True(Sum(ingress, "qwen_client_time_to_first_token_seconds_sum", "task=\"chat\"")
            <= Sum(ingress, "qwen_request_duration_seconds_sum", "task=\"chat\""));
        Assert.Contains("qwen_client_time_to_first_token_seconds_bucket{colour=\"blue\",task=\"chat\",le=\"5\"}", ingress);
        Assert.Contains("qwen_request_duration_seconds_bucket{colour=\"blue\",task=\"sentiment\",le=\"3\"}", ingress);
        Assert.True(Sum(ingress, "qwen_tokens_total", "kind=\"completion\"") >= 24);
        Assert.True(Sum(ingress, "qwen_tokens_per_second_count") >= 3);
        Assert.Equal(1, Sum(ingress, "qwen_rollout_phase", "phase=\"Shadow\""));
        Assert.Contains("qwen_canary_weight", ingress);

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (Sum(await http.GetStringAsync("/metrics", cts.Token), "qwen_shadow_mirrors_total", "result=\"compared\"") < 1)
            await Task.Delay(100, cts.Token);

        var worker = await scrape.GetStringAsync($"http://127.0.0.1:{workerPort}/metrics");
        Assert.Equal(2, Sum(worker, "qwen_worker_slots"));
        Assert.Contains("qwen_worker_slots_busy", worker);
        Assert.True(Sum(worker, "qwen_worker_requests_total", "outcome=\"ok\"") >= 10);
        Assert.True(Sum(worker, "qwen_worker_generated_tokens_total") >= 24);
        Assert.DoesNotContain("qwen_requests_total", worker);

        // The judge counts a sample when it reads it and a verdict at its next evaluation (Judge:EvaluateInterval later).
        string judgeText;
        while (Sum(judgeText = await scrape.GetStringAsync($"http://127.0.0.1:{judgePort}/metrics", cts.Token), "qwen_judge_samples_total") < 1
               || Sum(judgeText, "qwen_judge_verdicts_total") < 1)
            await Task.Delay(100, cts.Token);
        Assert.True(Sum(judgeText, "qwen_judge_verdicts_total", "outcome=\"inconclusive\"") >= 1);
        Assert.Contains("qwen_judge_check_value", judgeText);

        var promoterText = await scrape.GetStringAsync($"http://127.0.0.1:{promoterPort}/metrics");
        Assert.Equal(1, Sum(promoterText, "qwen_rollout_transitions_total", "trigger=\"start\",cause=\"operator\""));
        Assert.Equal(1, Sum(promoterText, "qwen_promoter_leader"));
        var exported = new[] { ingress, worker, judgeText, promoterText }
            .SelectMany(t => Regex.Matches(t, @"^# TYPE (qwen_[a-z_]+) ", RegexOptions.Multiline).Select(m => m.Groups[1].Value))
            .ToHashSet();
        Assert.Equal(Unit.MonitoringFilesTests.DocumentedFamilies().OrderBy(x => x), exported.OrderBy(x => x));
        await judge.StopAsync();
        await promoter.StopAsync();
    }
}
