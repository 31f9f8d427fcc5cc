using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;

namespace QwenNats.Tests.Infrastructure;

/// <summary>Rollout policies with small samples, for tests that let the judge decide.</summary>
public static class TestPolicies
{
    public static string Write(string inconclusivePauseAfter, string noVerdictPauseAfter = "00:01:00", string minStepDuration = "00:00:22", string canarySteps = "[50]")
    {
        var path = Path.Combine(Path.GetTempPath(), $"qwen-test-policy-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, """
            {
              "min_samples": 12, "min_step_duration": "STEP", "false_alarm_rate": 0.001, "miss_rate": 0.05, "max_false_rollback_rate": 0.02,
              "errors": { "p0": 0.01, "p1": 0.25 }, "unanswered": { "p0": 0.005, "p1": 0.1 },
              "compute": { "threshold": 2.0, "p0": 0.2, "p1": 0.6 }, "latency": { "threshold": 4.0, "p0": 0.3, "p1": 0.8 },
              "sentiment_disagreement": { "p0": 0.02, "p1": 0.3 }, "confidence_drift": { "threshold": 0.3, "p0": 0.1, "p1": 0.5 },
              "chat_defects": { "p0": 0.05, "p1": 0.4 }, "chat_length": { "threshold": 2.0, "p0": 0.1, "p1": 0.5 },
              "chat_likelihood": { "threshold": 1.5, "p0": 0.1, "p1": 0.5 },
              "golden_accuracy_tolerance": 0.0,
              "inconclusive_pause_after": "PAUSE", "no_verdict_pause_after": "SILENT", "canary_steps": STEPS, "bake_window": "00:00:01"
            }
            """.Replace("PAUSE", inconclusivePauseAfter, StringComparison.Ordinal).Replace("SILENT", noVerdictPauseAfter, StringComparison.Ordinal).Replace("STEPS", canarySteps, StringComparison.Ordinal).Replace("STEP", minStepDuration, StringComparison.Ordinal));
        return path;
    }

    /// <summary>
    /// The shipped policy (deploy/rollout-policy.json): its checks, error rates and sample sizes unchanged; only
    /// the given top-level settings replaced (durations of steps, pauses, the bake), so a test checks what ships.
    /// </summary>
    /// <param name="overrides">Setting name → its JSON value, e.g. <c>["bake_window"] = "\"00:00:01\""</c>.</param>
    public static string Shipped(Dictionary<string, string> overrides)
    {
        var policy = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(Paths.RepoRoot, "deploy", "rollout-policy.json")))!.AsObject();
        foreach (var (key, value) in overrides)
        {
            if (!policy.ContainsKey(key))
                throw new ArgumentException($"The shipped policy has no '{key}'.", nameof(overrides));
            policy[key] = System.Text.Json.Nodes.JsonNode.Parse(value);
        }
        var path = Path.Combine(Path.GetTempPath(), $"qwen-shipped-policy-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, policy.ToJsonString());
        return path;
    }
}

/// <summary>Client load for rollout tests: sentiment and multi-turn chat on sticky sessions.</summary>
public static class ClientLoad
{
    /// <summary>
    /// Runs client load (sentiment and multi-turn chat, new sessions often) until told to stop: by default
    /// four clients alternating the tasks; <paramref name="chatEvery"/> = k makes every k-th request chat.
    /// </summary>
    public static async Task<(int Ok, List<string> Failed)> RunAsync(HttpClient http, CancellationToken stop, int clients = 4, int chatEvery = 2)
    {
        var failed = new ConcurrentBag<string>();
        var ok = 0;
        await Task.WhenAll(Enumerable.Range(0, clients).Select(async w =>
        {
            var n = 0;
            while (!stop.IsCancellationRequested)
            {
                var session = $"auto-{w}-{n / 3}";
                var chat = n++ % chatEvery == chatEvery - 1;
                using var req = chat
                    ? Api.Post("/v1/chat/completions", Api.ChatBody($"Tell me about day {n}", maxTokens: 12), session: session)
                    : Api.Post("/v1/sentiment", JsonSerializer.Serialize(new { input = $"Day {n} was lovely" }), session: session);
                try
                {
                    using var r = await http.SendAsync(req, CancellationToken.None);
                    if (r.StatusCode == HttpStatusCode.OK) Interlocked.Increment(ref ok);
                    else failed.Add($"{(int)r.StatusCode} {await r.Content.ReadAsStringAsync(CancellationToken.None)}");
                }
                catch (HttpRequestException e)
                {
                    failed.Add(e.Message);
                }
            }
        }));
        return (ok, failed.ToList());
    }
}
