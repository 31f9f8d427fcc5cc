using System.Text.Json;
using QwenNats.Messaging;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>The operator command line, run as a process against the real promoter.</summary>
[Collection(RolloutCollection.Name)]
public sealed class QwenctlTests(RolloutFixture fx) : IAsyncLifetime
{
    public Task InitializeAsync() => fx.ResetAsync();
    public Task DisposeAsync() => fx.ResetAsync();

    [Fact]
    public async Task Every_verb_gets_the_promoters_answer_and_the_exit_code_says_whether_it_was_ok()
    {
        var bodies = new Dictionary<string, string>
        {
            [Rollouts.Verbs.Start] = "{\"candidate\":\"green\",\"reason\":\"qwenctl test\"}",
            [Rollouts.Verbs.SetWeight] = "{\"weight\":20}",
            [Rollouts.Verbs.Pause] = "{\"reason\":\"qwenctl test\"}",
            [Rollouts.Verbs.Resume] = "",
            [Rollouts.Verbs.Promote] = "",
            [Rollouts.Verbs.Abort] = "{\"reason\":\"qwenctl test\"}",
            [Rollouts.Verbs.Rollback] = "",
            [Rollouts.Verbs.History] = "{\"limit\":3}",
            [Rollouts.Verbs.Pin] = "{\"session\":\"qwenctl-test\",\"colour\":\"green\",\"ttl_seconds\":5}",
            [Rollouts.Verbs.Unpin] = "{\"session\":\"qwenctl-test\"}",
            [Rollouts.Verbs.Golden] = "{\"colour\":\"blue\"}",
            [Rollouts.Verbs.Compare] = "{\"colour\":\"purple\"}",
            [Rollouts.Verbs.Status] = "",
            [Rollouts.Verbs.Releases] = "",
            [Rollouts.Verbs.Release] = "{\"release\":\"qwenctl-test\"}",
            [Rollouts.Verbs.Deploy] = "{\"colour\":\"green\",\"release\":\"no-such-release\"}",
        };
        Assert.Equal(Rollouts.Verbs.All.Order(), bodies.Keys.Order());
        var answers = new Dictionary<string, bool>();
        foreach (var (verb, body) in bodies)
        {
            var (exit, stdout, _) = await RunAsync(verb, body);
            var reply = JsonDocument.Parse(stdout).RootElement;
            var ok = reply.GetProperty("ok").GetBoolean();
            Assert.Equal(ok ? 0 : 1, exit);
            if (!ok) Assert.NotEqual("unavailable", reply.GetProperty("code").GetString());
            answers[verb] = ok;
        }
        // start, set-weight, pause, resume, promote and abort are legal in that order; rollback is not (nothing to roll back).
        Assert.True(answers[Rollouts.Verbs.Start] && answers[Rollouts.Verbs.SetWeight] && answers[Rollouts.Verbs.Pause]
                    && answers[Rollouts.Verbs.Resume] && answers[Rollouts.Verbs.Promote] && answers[Rollouts.Verbs.Abort]);
        Assert.False(answers[Rollouts.Verbs.Rollback]);
        Assert.True(answers[Rollouts.Verbs.Status] && answers[Rollouts.Verbs.History] && answers[Rollouts.Verbs.Pin] && answers[Rollouts.Verbs.Unpin] && answers[Rollouts.Verbs.Releases]);
        // A release without a model and profile, a deploy of a release nobody registered and a comparison with an unknown colour are refused.
        Assert.False(answers[Rollouts.Verbs.Release] || answers[Rollouts.Verbs.Deploy] || answers[Rollouts.Verbs.Compare]);
    }

    [Fact]
    public async Task Usage_errors_exit_2_and_send_nothing()
    {
        var before = (await fx.CtlAsync("status")).State!.Version;
        Assert.Equal(2, (await RunAsync("launch", "")).Exit);
        Assert.Equal(2, (await RunAsync("start", "{}", "extra")).Exit);
        var help = await RunAsync("rollback", "--help");
        Assert.Equal(0, help.Exit);
        Assert.Contains("qwen.ctl.rollback", help.Stdout);
        // A malformed inputs file for compare is refused with its line before anything is sent.
        var inputs = Path.Combine(Path.GetTempPath(), $"qwen-compare-{Guid.NewGuid():N}.jsonl");
        await File.WriteAllTextAsync(inputs, "{\"text\":\"hello\"}\n{broken\n");
        var bad = await Qwenctl.RunAsync(fx.Nats.Url, ["compare", "--file", inputs]);
        File.Delete(inputs);
        Assert.Equal(2, bad.Exit);
        Assert.Contains($"{inputs}:2: not a JSON object", bad.Stderr);
        Assert.Equal(2, (await Qwenctl.RunAsync(fx.Nats.Url, ["compare", "--sentiment-only", "--chat-only"])).Exit);
        Assert.Equal(before, (await fx.CtlAsync("status")).State!.Version);
    }

    [Fact]
    public async Task No_promoter_is_an_answer_with_exit_1()
    {
        await using var empty = await NatsServer.StartAsync();
        var (exit, stdout, _) = await RunAsync("status", "", url: empty.Url);
        Assert.Equal(1, exit);
        Assert.Equal("unavailable", JsonDocument.Parse(stdout).RootElement.GetProperty("code").GetString());
    }

    private Task<(int Exit, string Stdout, string Stderr)> RunAsync(string verb, string body, string? extra = null, string? url = null) =>
        Qwenctl.RunAsync(url ?? fx.Nats.Url, new[] { verb, body, extra }.Where(a => !string.IsNullOrEmpty(a)).Cast<string>());
}
