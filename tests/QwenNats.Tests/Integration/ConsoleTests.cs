using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Playwright;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using NATS.Client.ObjectStore;
using QwenNats.Messaging;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>
/// The web console end to end in headless Chromium against the real system (nats-server, LLamaSharp
/// workers, promoter): chat streamed over the WebSocket, sentiment, the rollout panel pushed live, and
/// operator actions with and without the token. Screenshots of each state land in artifacts/console/.
/// </summary>
[Collection(RolloutCollection.Name)]
public sealed class ConsoleTests(RolloutFixture fx) : IAsyncLifetime
{
    private const string Token = "console-test-operator-token";

    /// <summary>The release these tests register: the tiny model with profile v2, what the fixture's green worker serves anyway.</summary>
    private const string ReleaseId = "console-r1";

    public Task InitializeAsync() => fx.ResetAsync();
    public Task DisposeAsync() => fx.ResetAsync();

    [Fact]
    public async Task An_operator_chats_classifies_starts_a_rollout_and_rolls_it_back_in_the_browser()
    {
        const string test = "operator";
        var (_, http) = await fx.System.StartIngressAsync(new()
        {
            ["Console:OperatorToken"] = Token,
            ["Console:PushInterval"] = "00:00:00.250",
            ["Console:LatencyWindow"] = "00:01:00",
        });
        await QwenSystem.WaitForWorkersAsync(http, "blue", 1);
        await using var browser = await Browser.LaunchAsync();
        var frames = new List<string>();
        var failedLoads = new List<string>();
        var consoleErrors = new List<string>();
        var page = await browser.OpenAsync(http.BaseAddress!, p =>
        {
            p.WebSocket += (_, ws) => ws.FrameReceived += (_, f) => { lock (frames) frames.Add(f.Text ?? ""); };
            p.Response += (_, r) => { if (r.Status >= 400) lock (failedLoads) failedLoads.Add($"{r.Status} {r.Url}"); };
            p.Console += (_, m) => { if (m.Type == "error") lock (consoleErrors) consoleErrors.Add(m.Text); };
            p.PageError += (_, e) => { lock (consoleErrors) consoleErrors.Add(e); };
        });

        await Expect(page, "#feed-status", "live");
        await Expect(page, "#phase", "Stable");
        Assert.Equal("blue", await page.GetAttributeAsync("#live", "data-colour"));
        Assert.StartsWith("console-", await page.TextContentAsync("#session-id"));
        Assert.Contains("Actions need the operator token", await page.TextContentAsync("#operator-mode"));
        await Browser.ScreenshotAsync(page, test, "01-loaded");
        lock (failedLoads) Assert.Empty(failedLoads); // every asset, the icon included, loads
        lock (consoleErrors) Assert.Empty(consoleErrors); // and the browser's console shows no error

        // Chat: the answer streams in token by token and is marked with the colour and profile that served it.
        await page.FillAsync("#chat-input", "Once upon a time");
        await page.ClickAsync("#chat-send");
        var answer = page.Locator(".msg.assistant[data-state=done]");
        await answer.WaitForAsync();
        Assert.Equal("blue", await answer.GetAttributeAsync("data-colour"));
        Assert.Equal("v1", await answer.GetAttributeAsync("data-profile"));
        Assert.Contains("blue · v1", await answer.Locator(".meta").TextContentAsync());
        var shown = await answer.Locator(".text").TextContentAsync();
        List<JsonElement> tokens;
        lock (frames)
            tokens = frames.Select(f => JsonDocument.Parse(f).RootElement).Where(f => f.GetProperty("type").GetString() == "token").ToList();
        Assert.True(tokens.Count >= 2, $"the answer arrived as {tokens.Count} token frames");
        Assert.Equal(string.Concat(tokens.Select(t => t.GetProperty("text").GetString())), shown);
        Assert.False(string.IsNullOrWhiteSpace(shown));
        await Browser.ScreenshotAsync(page, test, "02-chat");

        // Sentiment: label, confidence and the serving colour.
        await page.FillAsync("#sentiment-input", "I love this little model");
        await page.ClickAsync("#sentiment-send");
        await page.Locator("#sentiment-result").WaitForAsync();
        Assert.False(string.IsNullOrWhiteSpace(await page.TextContentAsync("#sentiment-label")));
        Assert.Matches(@"^\d{1,3}\.\d%$", await page.TextContentAsync("#sentiment-confidence"));
        Assert.Equal("blue", await page.GetAttributeAsync("#sentiment-colour", "data-colour"));
        // The latency chart's legend has a line for blue from the two requests above.
        await page.Locator("#latency-legend li[data-colour=blue]").WaitForAsync();
        await Browser.ScreenshotAsync(page, test, "03-sentiment");

        // Without the token, with a wrong one, and without a reason: refused, nothing changes.
        await page.FillAsync("#op-token", "");
        await page.FillAsync("#op-reason", "try without a token");
        await ActAsync(page, "start", "operator_token_required");
        await Browser.ScreenshotAsync(page, test, "04-refused-without-token");
        await page.FillAsync("#op-token", "not-the-token");
        await ActAsync(page, "start", "invalid_operator_token");
        await page.FillAsync("#op-token", Token);
        await page.FillAsync("#op-reason", "");
        await ActAsync(page, "start", "reason_required");
        Assert.Equal(RolloutPhase.Stable, (await fx.CtlAsync("status")).State!.Phase);

        // With the token and a reason: the phase changes on the page, pushed from the KV watch.
        var reason = $"console rollout {Guid.NewGuid():N}";
        await page.FillAsync("#op-reason", reason);
        await page.SelectOptionAsync("#op-candidate", "green");
        await ActAsync(page, "start", "ok");
        await Expect(page, "#phase", "Shadow");
        Assert.Equal("green", await page.GetAttributeAsync("#candidate", "data-colour"));
        await page.Locator("#events li[data-trigger=start]").Filter(new() { HasText = reason }).WaitForAsync();
        var started = (await fx.CtlAsync("history", "{\"limit\":10}")).Events!.Last(Rollouts.IsTransition);
        Assert.Equal(("start", reason, "console"), (started.Trigger, started.Reason, started.Actor));
        await Browser.ScreenshotAsync(page, test, "05-shadow");

        // A tester's switch: this console's session pinned to the candidate (its chat answered by green), then
        // unpinned (answered by blue, live, again); both land in the audit log with the session.
        var session = (await page.TextContentAsync("#session-id"))!;
        await page.FillAsync("#op-reason", "try the candidate");
        await ActAsync(page, "pin", "ok");
        Assert.Equal("green", await ChatColourAsync(page));
        await ActAsync(page, "unpin", "ok");
        Assert.Equal("blue", await ChatColourAsync(page));
        await page.Locator("#events li[data-trigger=pin]").Filter(new() { HasText = session }).WaitForAsync();
        await page.Locator("#events li[data-trigger=unpin]").Filter(new() { HasText = session }).WaitForAsync();

        // The judge's scorecard appears when the judge writes one (here written to its bucket directly).
        var rolloutId = started.State.RolloutId!;
        await PutVerdictAsync(new Verdict
        {
            RolloutId = rolloutId, Phase = RolloutPhase.Shadow, Step = 0, Outcome = Judging.Outcomes.Inconclusive, Reason = "3 of 10 samples",
            Samples = 3, At = DateTimeOffset.UtcNow,
            Checks = [new JudgeCheck("sentiment_agreement", 1.0, ">= 0.9", true, 3, "3/3 agree"), new JudgeCheck("latency_p95_ratio", 1.7, "<= 1.5", false, 3, "slow")],
        });
        await Expect(page, "#verdict-outcome", Judging.Outcomes.Inconclusive);
        Assert.Equal(2, await page.Locator("#checks tbody tr").CountAsync());
        Assert.Equal(1, await page.Locator("#checks tbody tr.failed").CountAsync());
        Assert.Contains(rolloutId, await page.TextContentAsync("#verdict-meta"));

        // Roll back: the event lands in the list with its reason.
        var why = $"console rollback {Guid.NewGuid():N}";
        await page.FillAsync("#op-reason", why);
        await ActAsync(page, "rollback", "ok");
        await page.Locator("#events li[data-trigger=rollback]").Filter(new() { HasText = why }).WaitForAsync();
        Assert.Equal("blue", await page.GetAttributeAsync("#live", "data-colour"));
        await Browser.ScreenshotAsync(page, test, "06-rolled-back");
        var rolledBack = (await fx.CtlAsync("history", "{\"limit\":5}")).Events!.Last(e => e.Trigger == "rollback");
        Assert.Equal((why, "console"), (rolledBack.Reason, rolledBack.Actor));
    }

    [Fact]
    public async Task A_console_without_an_operator_token_is_read_only()
    {
        await using var browser = await Browser.LaunchAsync();
        var page = await browser.OpenAsync(fx.Http1.BaseAddress!);
        await Expect(page, "#phase", "Stable");
        Assert.Contains("Read-only", await page.TextContentAsync("#operator-mode"));
        foreach (var verb in new[] { "start", "promote", "pause", "resume", "rollback" })
            Assert.True(await page.IsDisabledAsync($"#operator-form button[data-action={verb}]"), verb);
        // Even a hand-made request from the page is refused by the ingress.
        var status = await page.EvaluateAsync<int>(
            "async () => (await fetch('/api/console/actions/start', {method:'POST', headers:{'Content-Type':'application/json', Authorization:'Bearer guess'}, body: JSON.stringify({reason:'x', candidate:'green'})})).status");
        Assert.Equal(403, status);
        Assert.Equal(RolloutPhase.Stable, (await fx.CtlAsync("status")).State!.Phase);
        await Browser.ScreenshotAsync(page, "read-only", "01-read-only");
    }

    [Fact]
    public async Task The_console_is_self_contained_and_refuses_bad_actions_with_OpenAI_errors()
    {
        foreach (var path in new[] { "/", "/console/app.js", "/console/app.css" })
        {
            using var r = await fx.Http1.GetAsync(path);
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            var body = await r.Content.ReadAsStringAsync();
            Assert.DoesNotContain("http://", body);
            Assert.DoesNotContain("https://", body);
            Assert.Contains("default-src 'self'", r.Headers.GetValues("Content-Security-Policy").Single());
        }
        using (var r = await fx.Http1.PostAsync("/api/console/actions/golden", new StringContent("{\"reason\":\"x\"}")))
            await AssertErrorAsync(r, HttpStatusCode.NotFound, "unknown_action");
        using (var r = await fx.Http1.PostAsync("/api/console/actions/start", new StringContent("{\"reason\":\"x\"}")))
            await AssertErrorAsync(r, HttpStatusCode.Forbidden, "console_read_only");

        // The push stream starts with the current state.
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        using var stream = await fx.Http1.GetStreamAsync("/api/console/stream", cts.Token);
        using var reader = new StreamReader(stream);
        string? line;
        while ((line = await reader.ReadLineAsync(cts.Token)) is not null && !line.StartsWith("event: ", StringComparison.Ordinal))
        {
        }
        Assert.Equal("event: state", line);
        var data = await reader.ReadLineAsync(cts.Token);
        Assert.StartsWith("data: ", data);
        Assert.Equal("blue", JsonDocument.Parse(data!["data: ".Length..]).RootElement.GetProperty("live").GetString());
    }

    [Fact]
    public async Task An_operator_sees_the_releases_and_deploys_one_to_the_idle_colour_in_the_browser()
    {
        const string test = "releases";
        var sha = await RegisterReleaseAsync();
        var (_, http) = await fx.System.StartIngressAsync(new() { ["Console:OperatorToken"] = Token });

        // The API lists the release (profile by version, digest, notes) and a pool per colour.
        var listed = await http.GetFromJsonAsync<JsonElement>("/api/console/releases");
        var release = listed.GetProperty("releases").EnumerateArray().Single(r => r.GetProperty("id").GetString() == ReleaseId);
        Assert.Equal((sha, "v2", "console test", "stories260K.gguf"),
            (release.GetProperty("model_sha256").GetString(), release.GetProperty("profile").GetString(), release.GetProperty("notes").GetString(),
             release.GetProperty("model_name").GetString()));
        Assert.Equal(["blue", "green"], listed.GetProperty("pools").EnumerateArray().Select(p => p.GetProperty("colour").GetString()));

        await using var browser = await Browser.LaunchAsync();
        var page = await browser.OpenAsync(http.BaseAddress!);
        await Expect(page, "#phase", "Stable");
        var row = page.Locator($"#releases tr[data-release={ReleaseId}]");
        await row.WaitForAsync();
        var text = await row.TextContentAsync();
        Assert.Contains(sha[..12], text);
        Assert.DoesNotContain(sha[..13], text);
        Assert.Contains("console test", text);
        // Blue is live: the only colour offered is green.
        await page.Locator($"button[data-deploy={ReleaseId}][data-colour=green]").WaitForAsync();
        Assert.Equal(1, await row.Locator("button[data-deploy]").CountAsync());
        Assert.Equal("true", await page.GetAttributeAsync("[data-pool=blue]", "data-ready"));
        await Browser.ScreenshotAsync(page, test, "01-listed");

        // Deploy to green with the token and a reason: the promoter assigns it and green's worker loads it.
        await page.FillAsync("#op-token", Token);
        var reason = $"console deploy {Guid.NewGuid():N}";
        await page.FillAsync("#deploy-reason", reason);
        await page.ClickAsync($"button[data-deploy={ReleaseId}][data-colour=green]");
        await page.WaitForSelectorAsync("#deploy-status[data-code]");
        var code = await page.GetAttributeAsync("#deploy-status", "data-code");
        Assert.True(code == "ok", $"deploy: the console showed {code}: {await page.TextContentAsync("#deploy-status")}");

        var green = await WaitForPoolAsync("green", p => p.Ready && p.Assigned?.Release == ReleaseId, TimeSpan.FromSeconds(60));
        Assert.Equal((reason, "console", sha), (green.Assigned!.Reason, green.Assigned.Actor, green.Assigned.ModelSha256));
        Assert.All(green.Workers, w => Assert.Equal(ReleaseId, w.Release));
        Assert.Equal(RolloutPhase.Stable, (await fx.CtlAsync("status")).State!.Phase);

        // The page follows: green's pool line is ready with the release, and the row says where it is deployed.
        await page.Locator($"[data-pool=green][data-ready=true][data-release={ReleaseId}]").WaitForAsync(new() { Timeout = 30_000 });
        await row.Locator(".deployed [data-colour=green]").WaitForAsync();
        Assert.Contains("green-1: serves " + ReleaseId, await page.TextContentAsync("[data-pool=green]"));
        await Browser.ScreenshotAsync(page, test, "02-deployed");
    }

    [Fact]
    public async Task The_deploy_action_needs_a_colour_and_a_release_and_passes_refusals_through()
    {
        await RegisterReleaseAsync();
        var (_, http) = await fx.System.StartIngressAsync(new() { ["Console:OperatorToken"] = Token });
        var blueBefore = await PoolAsync("blue");

        using (var r = await PostActionAsync(http, "deploy", new { reason = "no colour", release = ReleaseId }))
            Assert.Equal("colour", (await AssertErrorAsync(r, HttpStatusCode.BadRequest, "invalid_request")).GetProperty("param").GetString());
        using (var r = await PostActionAsync(http, "deploy", new { reason = "no release", colour = "green" }))
            Assert.Equal("release", (await AssertErrorAsync(r, HttpStatusCode.BadRequest, "invalid_request")).GetProperty("param").GetString());
        using (var r = await PostActionAsync(http, "deploy", new { colour = "green", release = ReleaseId }))
            await AssertErrorAsync(r, HttpStatusCode.BadRequest, "reason_required");
        using (var r = await PostActionAsync(http, "deploy", new { reason = "no token", colour = "green", release = ReleaseId }, token: null))
            await AssertErrorAsync(r, HttpStatusCode.Unauthorized, "operator_token_required");

        // The promoter's refusals come back as 409 with its code: blue is live, and nobody registered "console-nope".
        using (var r = await PostActionAsync(http, "deploy", new { reason = "to the live colour", colour = "blue", release = ReleaseId }))
            Assert.Contains("live colour", (await AssertErrorAsync(r, HttpStatusCode.Conflict, "live_colour")).GetProperty("message").GetString());
        using (var r = await PostActionAsync(http, "deploy", new { reason = "unknown", colour = "green", release = "console-nope" }))
            await AssertErrorAsync(r, HttpStatusCode.Conflict, "unknown_release");
        Assert.Equal(blueBefore.Assigned?.DeployId, (await PoolAsync("blue")).Assigned?.DeployId);

        // The list is read-only: a console without an operator token shows it too.
        using (var r = await fx.Http1.GetAsync("/api/console/releases"))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            var body = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;
            Assert.Contains(body.GetProperty("releases").EnumerateArray(), e => e.GetProperty("id").GetString() == ReleaseId);
        }

        // With no promoter on the bus the list is a 503 in OpenAI's error shape.
        await using var lonely = await NatsServer.StartAsync();
        await using var system = new QwenSystem(lonely);
        var (_, alone) = await system.StartIngressAsync();
        using (var r = await alone.GetAsync("/api/console/releases"))
            await AssertErrorAsync(r, HttpStatusCode.ServiceUnavailable, "promoter_unavailable");
        alone.Dispose();
    }

    /// <summary>Uploads the tiny model to the model store and registers <see cref="ReleaseId"/> with profile v2 (again: same content, same answer).</summary>
    private async Task<string> RegisterReleaseAsync()
    {
        var models = await new NatsObjContext(new NatsJSContext(fx.Operator)).GetObjectStoreAsync(Releases.ModelsBucket);
        var sha = (await ModelStore.UploadAsync(models, Paths.Model, CancellationToken.None)).Sha256;
        var json = JsonSerializer.Serialize(new ControlRequest
        {
            Release = ReleaseId, ModelSha256 = sha, Profile = PromptProfile.Load(Paths.Profile("v2")), Notes = "console test",
        }, QwenJsonContext.Default.ControlRequest);
        var reply = await fx.CtlAsync("release", json);
        Assert.True(reply.Ok, $"release: {reply.Code}: {reply.Error}");
        return sha;
    }

    private async Task<PoolStatus> PoolAsync(string colour) => (await fx.CtlAsync("status")).Pools!.Single(p => p.Colour == colour);

    private async Task<PoolStatus> WaitForPoolAsync(string colour, Func<PoolStatus, bool> done, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (true)
        {
            var pool = await PoolAsync(colour);
            if (done(pool)) return pool;
            if (DateTime.UtcNow > until)
                Assert.Fail($"pool {colour}: assigned {pool.Assigned?.Release ?? "nothing"}, ready {pool.Ready}, failed {pool.Failed}: {pool.Why}");
            await Task.Delay(100);
        }
    }

    private static Task<HttpResponseMessage> PostActionAsync(HttpClient http, string verb, object body, string? token = Token)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, $"/api/console/actions/{verb}") { Content = JsonContent.Create(body) };
        if (token is not null) request.Headers.Authorization = new("Bearer", token);
        return http.SendAsync(request);
    }

    private static async Task<JsonElement> AssertErrorAsync(HttpResponseMessage r, HttpStatusCode status, string code)
    {
        var text = await r.Content.ReadAsStringAsync();
        Assert.True(status == r.StatusCode, $"expected {(int)status}, got {(int)r.StatusCode}: {text}");
        var error = JsonDocument.Parse(text).RootElement.GetProperty("error").Clone();
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        return error;
    }

    /// <summary>Sends a chat message from the console; the colour that answered it.</summary>
    private static async Task<string?> ChatColourAsync(IPage page)
    {
        var done = page.Locator(".msg.assistant[data-state=done]");
        var before = await done.CountAsync();
        await page.FillAsync("#chat-input", "Once upon a time");
        await page.ClickAsync("#chat-send");
        await done.Nth(before).WaitForAsync();
        return await done.Nth(before).GetAttributeAsync("data-colour");
    }

    private static async Task ActAsync(IPage page, string verb, string expectedCode)
    {
        await page.EvaluateAsync("() => { const s = document.getElementById('op-status'); s.textContent = ''; delete s.dataset.code; }");
        await page.ClickAsync($"#operator-form button[data-action={verb}]");
        await page.WaitForSelectorAsync("#op-status[data-code]");
        var code = await page.GetAttributeAsync("#op-status", "data-code");
        Assert.True(code == expectedCode, $"{verb}: expected {expectedCode}, the console showed {code}: {await page.TextContentAsync("#op-status")}");
    }

    private static async Task Expect(IPage page, string selector, string text)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        string? seen = null;
        while (!cts.IsCancellationRequested)
        {
            seen = await page.TextContentAsync(selector);
            if (seen == text) return;
            await Task.Delay(50);
        }
        Assert.Fail($"{selector} shows '{seen}', expected '{text}'");
    }

    private async Task PutVerdictAsync(Verdict verdict)
    {
        var kv = new NatsKVContext(new NatsJSContext(fx.Operator));
        var store = await kv.CreateOrUpdateStoreAsync(new NatsKVConfig(Judging.Bucket) { Storage = NatsKVStorageType.Memory });
        await store.PutAsync(Judging.LatestKey, verdict);
    }
}
