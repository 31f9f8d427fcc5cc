using System.Text.Json;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>
/// The official <c>openai</c> npm client (version pinned in tests/clients/openai/package-lock.json) against the live
/// ingress: <c>npm ci</c>, then <c>node check.mjs</c>, which checks every honoured chat field, the legacy completions
/// and the typed 400 errors (tests/clients/openai/check.mjs says what each check asserts).
/// </summary>
[Collection(SystemCollection.Name)]
public sealed class NodeClientTests(SystemFixture fx)
{
    /// <summary>Every check check.mjs runs: each must report ok, so a check that stops running fails this test too.</summary>
    private static readonly string[] Checks =
    [
        "chat_plain", "chat_stream", "chat_stream_include_usage", "chat_json_object", "chat_json_schema", "chat_logprobs",
        "chat_penalties", "chat_logit_bias", "chat_seed", "chat_stop", "chat_max_tokens", "chat_errors",
        "completion_plain", "completion_stream_include_usage", "completion_logprobs", "completion_echo", "completion_sampling",
        "completion_errors",
    ];

    [Fact]
    public async Task The_openai_npm_client_gets_every_field_it_asks_for_from_chat_and_completions()
    {
        var run = await NodeClients.RunAsync("openai", "check.mjs",
            new Dictionary<string, string> { ["QWEN_BASE_URL"] = fx.Http.BaseAddress!.ToString().TrimEnd('/') }, TimeSpan.FromMinutes(10));
        var results = run.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => l.StartsWith('{'))
            .Select(l => JsonDocument.Parse(l).RootElement)
            .ToDictionary(r => r.GetProperty("name").GetString()!, r => r);
        var failures = results.Values.Where(r => !r.GetProperty("ok").GetBoolean())
            .Select(r => $"{r.GetProperty("name").GetString()}: {r.GetProperty("error").GetString()}").ToList();
        Assert.True(failures.Count == 0, string.Join("\n\n", failures) + "\n" + run.Err);
        Assert.Equal(Checks.Order(), results.Keys.Order());
        Assert.Equal(0, run.Code);
    }
}
