using System.Net;
using System.Text.Json;
using QwenNats.Messaging;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

[Collection(RolloutCollection.Name)]
public sealed class ControlPlaneTests(RolloutFixture fx) : IAsyncLifetime
{
    public Task InitializeAsync() => fx.ResetAsync();
    public Task DisposeAsync() => Task.CompletedTask;

    [Fact]
    public async Task An_operator_runs_a_full_rollout_and_a_rollback_with_requests_on_qwen_ctl()
    {
        var start = await fx.CtlAsync("start", "{\"candidate\":\"green\",\"reason\":\"profile v2\",\"actor\":\"alice\"}");
        Assert.True(start.Ok, start.Error);
        Assert.Equal(RolloutPhase.Shadow, start.State!.Phase);
        Assert.Equal("green", start.State.Candidate);
        Assert.Equal(RolloutPhase.Stable, start.Event!.From);
        var rolloutId = start.State.RolloutId;

        var weight = await fx.CtlAsync("set-weight", "{\"weight\":20,\"reason\":\"warm up\"}");
        Assert.Equal((RolloutPhase.Canary, 20), (weight.State!.Phase, weight.State.Weight));
        var step = await fx.CtlAsync("promote", "{\"reason\":\"looks fine\"}");
        Assert.Equal((RolloutPhase.Canary, 1, 20), (step.State!.Phase, step.State.Step, step.State.Weight));
        // A promote meant for the state before this step (the judge, or another operator, moved it since) changes nothing.
        var stale = await fx.CtlAsync("promote", $"{{\"reason\":\"as I saw it\",\"if_version\":{step.State.Version - 1}}}");
        Assert.Equal("version_changed", stale.Code);
        Assert.False(stale.Ok);
        Assert.Equal((step.State.Version, 1), (stale.State!.Version, stale.State.Step));
        var paused = await fx.CtlAsync("pause", $"{{\"reason\":\"lunch\",\"if_version\":{step.State.Version}}}");
        Assert.Equal(RolloutPhase.Paused, paused.State!.Phase);
        Assert.Equal(RolloutPhase.Canary, (await fx.CtlAsync("resume")).State!.Phase);
        var full = await fx.CtlAsync("promote", "{\"full\":true,\"reason\":\"ship it\"}");
        Assert.Equal(RolloutPhase.Promoted, full.State!.Phase);
        Assert.Equal(("green", "blue"), (full.State.Live, full.State.Standby));
        var rollback = await fx.CtlAsync("rollback", "{\"reason\":\"customers complain\",\"actor\":\"bob\"}");
        Assert.Equal(RolloutPhase.RolledBack, rollback.State!.Phase);
        Assert.Equal("blue", rollback.State.Live);

        var status = await fx.CtlAsync("status");
        Assert.True(status.Ok);
        Assert.False(string.IsNullOrEmpty(status.Leader));
        // Up to the rollback: the promoter finishes it by itself after the hold, which may come before this read.
        var history = await fx.CtlAsync("history", "{\"limit\":10}");
        var mine = history.Events!
            .Where(e => (e.State.RolloutId == rolloutId || e.State.RolledBackColour == "green") && e.State.Version <= rollback.State.Version)
            .TakeLast(7).ToList();
        Assert.Equal(new[] { "start", "set-weight", "promote", "pause", "resume", "promote", "rollback" }, mine.Select(e => e.Trigger));
        Assert.Equal("alice", mine.First(e => e.Trigger == "start").Actor);
        Assert.Equal("customers complain", mine.Last().Reason);
        Assert.Equal("bob", mine.Last().Actor);
        Assert.All(mine, e => Assert.Equal("operator", e.Cause));
        var versions = history.Events!.Where(Rollouts.IsTransition).Select(e => e.State.Version).ToList();
        Assert.Equal(versions.OrderBy(v => v), versions);
        Assert.Equal(versions.Count, versions.Distinct().Count());

        // The rollback completes by itself after the hold.
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while ((await fx.CtlAsync("status", ct: cts.Token)).State!.Phase != RolloutPhase.Stable)
            await Task.Delay(100, cts.Token);
        var last = (await fx.CtlAsync("history", "{\"limit\":10}")).Events!.Last(Rollouts.IsTransition);
        Assert.Equal(("finish", "timer"), (last.Trigger, last.Cause));
    }

    [Theory]
    [InlineData("promote", "", "no_rollout")]
    [InlineData("rollback", "", "invalid_phase")]
    [InlineData("resume", "", "invalid_phase")]
    [InlineData("set-weight", "{\"weight\":30}", "invalid_phase")]
    [InlineData("start", "{\"candidate\":\"purple\"}", "unknown_colour")]
    [InlineData("start", "{\"candidate\":\"blue\"}", "already_live")]
    [InlineData("start", "{}", "invalid_request")]
    [InlineData("start", "{\"candidate\":", "invalid_json")]
    [InlineData("start", "{\"candidate\":42}", "invalid_json")]
    [InlineData("launch", "{}", "unknown_verb")]
    [InlineData("pin", "{\"session\":\"s\",\"colour\":\"purple\"}", "unknown_colour")]
    [InlineData("pin", "{\"colour\":\"green\"}", "invalid_request")]
    public async Task An_illegal_command_is_refused_with_a_reason_and_changes_nothing(string verb, string body, string code)
    {
        var before = (await fx.CtlAsync("status")).State!;
        var reply = await fx.CtlAsync(verb, body);
        Assert.False(reply.Ok);
        Assert.Equal(code, reply.Code);
        Assert.False(string.IsNullOrWhiteSpace(reply.Error));
        Assert.Equal(before, (await fx.CtlAsync("status")).State);
    }

    [Fact]
    public async Task Start_while_a_rollout_runs_is_refused()
    {
        Assert.True((await fx.CtlAsync("start", "{\"candidate\":\"green\"}")).Ok);
        var again = await fx.CtlAsync("start", "{\"candidate\":\"green\"}");
        Assert.Equal("rollout_in_progress", again.Code);
        Assert.Equal(RolloutPhase.Shadow, again.State!.Phase);
    }

    [Fact]
    public async Task A_switch_reaches_both_ingresses_and_pinned_sessions_keep_their_colour_until_rollback()
    {
        // A session that starts on blue while stable.
        Assert.Equal("blue", await ColourAsync(fx.Http1, "pinned-blue"));
        Assert.True((await fx.CtlAsync("start", "{\"candidate\":\"green\"}")).Ok);
        await SwitchAsync("set-weight", "{\"weight\":100}");
        Assert.Equal("green", await ColourAsync(fx.Http2, "new-on-2"));
        Assert.Equal("green", await ColourAsync(fx.Http1, "new-on-1"));
        Assert.Equal("green", await ColourAsync(fx.Http1, "new-on-2"));
        Assert.Equal("blue", await ColourAsync(fx.Http2, "pinned-blue"));

        await SwitchAsync("promote", "{\"full\":true}");
        Assert.Equal("blue", await ColourAsync(fx.Http1, "pinned-blue"));
        Assert.Equal("green", await ColourAsync(fx.Http2, "after-promotion"));

        await SwitchAsync("rollback", "{\"reason\":\"test\"}");
        Assert.Equal("blue", await ColourAsync(fx.Http1, "new-on-1"));
        Assert.Equal("blue", await ColourAsync(fx.Http2, "new-on-2"));
        Assert.Equal("blue", await ColourAsync(fx.Http2, "after-promotion"));
        Assert.Equal("blue", await ColourAsync(fx.Http1, "pinned-blue"));
    }

    [Fact]
    public async Task Both_ingresses_report_the_rollout_state_they_apply()
    {
        var start = await fx.CtlAsync("start", "{\"candidate\":\"green\"}");
        foreach (var http in new[] { fx.Http1, fx.Http2 })
        {
            await Eventually.TrueAsync(async () =>
            {
                var view = JsonDocument.Parse(await http.GetStringAsync("/api/rollout")).RootElement;
                return view.GetProperty("state").GetProperty("version").GetInt64() == start.State!.Version;
            });
            var v = JsonDocument.Parse(await http.GetStringAsync("/api/rollout")).RootElement;
            Assert.Equal("Shadow", v.GetProperty("state").GetProperty("phase").GetString());
            Assert.Equal("green", v.GetProperty("state").GetProperty("candidate").GetString());
            Assert.Equal(1, v.GetProperty("workers").GetProperty("green").GetInt32());
        }
    }

    [Fact]
    public async Task An_ingress_asked_to_wait_for_a_state_version_answers_once_it_applies_it()
    {
        var before = (await fx.CtlAsync("status")).State!.Version;
        // Asked before the switch: no answer until the switch is written and applied.
        var waits = new[] { fx.Http1, fx.Http2 }.Select(h => h.GetStringAsync($"/api/rollout/applied?version={before + 1}")).ToArray();
        await Task.Delay(TimeSpan.FromMilliseconds(300));
        Assert.All(waits, w => Assert.False(w.IsCompleted));
        var start = await fx.CtlAsync("start", "{\"candidate\":\"green\"}");
        Assert.True(start.Ok, start.Error);
        foreach (var wait in waits)
        {
            var applied = JsonDocument.Parse(await wait.WaitAsync(TimeSpan.FromSeconds(10))).RootElement;
            Assert.True(applied.GetProperty("reached").GetBoolean());
            Assert.Equal(start.State!.Version, applied.GetProperty("state").GetProperty("version").GetInt64());
            Assert.Equal("Shadow", applied.GetProperty("state").GetProperty("phase").GetString());
            Assert.Equal("green", applied.GetProperty("state").GetProperty("candidate").GetString());
        }

        // A version already applied answers at once; one never written answers after wait_ms, with the state applied.
        var now = JsonDocument.Parse(await fx.Http1.GetStringAsync($"/api/rollout/applied?version={start.State!.Version}")).RootElement;
        Assert.True(now.GetProperty("reached").GetBoolean());
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var never = JsonDocument.Parse(await fx.Http2.GetStringAsync($"/api/rollout/applied?version={start.State.Version + 1000}&wait_ms=200")).RootElement;
        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(150), $"answered after {clock.Elapsed.TotalMilliseconds:F0} ms");
        Assert.False(never.GetProperty("reached").GetBoolean());
        Assert.Equal(start.State.Version, never.GetProperty("state").GetProperty("version").GetInt64());
    }

    [Fact]
    public async Task After_the_bake_window_old_colour_sessions_move_to_the_new_live()
    {
        Assert.Equal("blue", await ColourAsync(fx.Http1, "baker"));
        Assert.True((await fx.CtlAsync("start", "{\"candidate\":\"green\"}")).Ok);
        Assert.True((await fx.CtlAsync("promote", "{\"full\":true}")).Ok);
        Assert.Equal("blue", await ColourAsync(fx.Http1, "baker"));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while ((await fx.CtlAsync("status", ct: cts.Token)).State!.Phase != RolloutPhase.Stable)
            await Task.Delay(100, cts.Token);
        await Eventually.TrueAsync(async () => await ColourAsync(fx.Http2, "baker") == "green");
    }

    [Fact]
    public async Task An_operator_can_pin_a_session_to_a_colour_for_grey_testing_and_remove_the_pin_both_audited()
    {
        var pin = await fx.CtlAsync("pin", "{\"session\":\"tester-1\",\"colour\":\"green\",\"ttl_seconds\":60,\"actor\":\"alice\",\"reason\":\"try v2\"}");
        Assert.True(pin.Ok, pin.Error);
        Assert.Equal("operator", pin.Pin!.By);
        using (var r = await fx.Http2.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"nice\"}", session: "tester-1")))
        {
            Assert.Equal("green", (await Api.JsonAsync(r)).GetProperty("colour").GetString());
            Assert.Equal("OperatorPin", Api.Header(r, "X-Qwen-Route"));
        }
        Assert.Equal("blue", await ColourAsync(fx.Http2, "not-a-tester"));

        // And back: the pin is removed, the session follows the rollout again (blue is live).
        // (Every ingress applies it when its watch of the pins brings the delete, within milliseconds, as with a switch.)
        var unpin = await fx.CtlAsync("unpin", "{\"session\":\"tester-1\",\"actor\":\"alice\"}");
        Assert.True(unpin.Ok, unpin.Error);
        await Eventually.TrueAsync(async () => await ColourAsync(fx.Http2, "tester-1") == "blue");
        var again = await fx.CtlAsync("unpin", "{\"session\":\"never-pinned\"}");
        Assert.Equal("not_pinned", again.Code);

        var events = (await fx.CtlAsync("history", "{\"limit\":50}")).Events!;
        var pinned = Assert.Single(events, e => e.Trigger == "pin" && e.Reason.Contains("tester-1", StringComparison.Ordinal));
        Assert.Equal("alice", pinned.Actor);
        Assert.Contains("green", pinned.Reason, StringComparison.Ordinal);
        Assert.Contains("try v2", pinned.Reason, StringComparison.Ordinal);
        Assert.Equal(pinned.From, pinned.To);
        var removed = Assert.Single(events, e => e.Trigger == "unpin" && e.Reason.Contains("tester-1", StringComparison.Ordinal));
        Assert.Equal("alice", removed.Actor);
        Assert.True(removed.At >= pinned.At);
        Assert.DoesNotContain(events, e => e.Reason.Contains("never-pinned", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_testers_colour_choice_is_recorded_in_the_audit_log_once_per_session_and_colour()
    {
        var session = $"chooser-{Guid.NewGuid():N}";
        for (var i = 0; i < 3; i++)
        {
            using var r = await fx.Http2.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"nice\"}", colour: "green", session: session));
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Equal("green", Api.Header(r, "X-Qwen-Colour"));
        }
        // The read-only ingress (no operator token) refuses the same choice: nothing to record.
        var refusedSession = $"refused-{Guid.NewGuid():N}";
        using (var refused = await fx.Http1.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"nice\"}", colour: "green", session: refusedSession)))
            Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);

        IReadOnlyList<RolloutEvent> chosen = [];
        await Eventually.TrueAsync(async () =>
        {
            chosen = (await fx.CtlAsync("history", "{\"limit\":100}")).Events!.Where(e => e.Trigger == "colour-choice" && e.Reason.Contains(session, StringComparison.Ordinal)).ToList();
            return chosen.Count > 0;
        });
        var e = Assert.Single(chosen);
        Assert.Equal("operator", e.Actor);
        Assert.Equal("tester", e.Cause);
        Assert.Contains("chose green (live blue)", e.Reason, StringComparison.Ordinal);
        Assert.DoesNotContain((await fx.CtlAsync("history", "{\"limit\":100}")).Events!, x => x.Reason.Contains(refusedSession, StringComparison.Ordinal));
    }

    [Fact]
    public async Task With_a_canary_weight_of_25_percent_about_a_quarter_of_new_sessions_go_to_the_candidate()
    {
        Assert.True((await fx.CtlAsync("start", "{\"candidate\":\"green\"}")).Ok);
        await SwitchAsync("set-weight", "{\"weight\":25}");
        const int n = 240;
        var colours = new string[n];
        await Parallel.ForEachAsync(Enumerable.Range(0, n), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, ct) =>
        {
            var http = i % 2 == 0 ? fx.Http1 : fx.Http2;
            colours[i] = await ColourAsync(http, $"canary-{Guid.NewGuid():N}");
        });
        var green = colours.Count(c => c == "green");
        var sd = Math.Sqrt(n * 0.25 * 0.75);
        Assert.InRange(green, n * 0.25 - 4 * sd, n * 0.25 + 4 * sd);
        Assert.Equal(n, colours.Count(c => c is "green" or "blue"));
    }

    [Fact]
    public async Task A_websocket_conversation_keeps_its_connection_and_colour_across_a_switch()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var ws = new System.Net.WebSockets.ClientWebSocket();
        await ws.ConnectAsync(new UriBuilder(fx.Http1.BaseAddress!) { Scheme = "ws", Path = "/ws/chat", Query = "session=ws-sticky" }.Uri, cts.Token);
        await WsAsync(ws, null, cts.Token);
        Assert.Equal("blue", await WsTurnAsync(ws, cts.Token));
        Assert.True((await fx.CtlAsync("start", "{\"candidate\":\"green\"}")).Ok);
        Assert.True((await fx.CtlAsync("set-weight", "{\"weight\":100}")).Ok);
        Assert.True((await fx.CtlAsync("promote", "{\"full\":true}")).Ok);
        Assert.Equal("blue", await WsTurnAsync(ws, cts.Token));
        Assert.True((await fx.CtlAsync("rollback")).Ok);
        Assert.Equal("blue", await WsTurnAsync(ws, cts.Token));
        Assert.Equal(System.Net.WebSockets.WebSocketState.Open, ws.State);
    }

    internal static async Task<string> WsTurnAsync(System.Net.WebSockets.ClientWebSocket ws, CancellationToken ct)
    {
        await WsAsync(ws, "{\"content\":\"Hello\",\"max_tokens\":4}", ct);
        while (true)
        {
            var f = await WsAsync(ws, null, ct);
            var type = f.GetProperty("type").GetString();
            if (type == "done") return f.GetProperty("colour").GetString()!;
            if (type == "error") throw new InvalidOperationException(f.ToString());
        }
    }

    internal static async Task<JsonElement> WsAsync(System.Net.WebSockets.ClientWebSocket ws, string? send, CancellationToken ct)
    {
        if (send is not null)
        {
            await ws.SendAsync(System.Text.Encoding.UTF8.GetBytes(send), System.Net.WebSockets.WebSocketMessageType.Text, true, ct);
            return default;
        }
        var buffer = new byte[65536];
        using var ms = new MemoryStream();
        System.Net.WebSockets.WebSocketReceiveResult r;
        do
        {
            r = await ws.ReceiveAsync(buffer, ct);
            ms.Write(buffer, 0, r.Count);
        }
        while (!r.EndOfMessage);
        return JsonDocument.Parse(ms.ToArray()).RootElement.Clone();
    }

    /// <summary>Sends a control command that must succeed and waits until both ingresses route by the state it made.</summary>
    private async Task SwitchAsync(string verb, string json)
    {
        var reply = await fx.CtlAsync(verb, json);
        Assert.True(reply.Ok, $"{verb}: {reply.Error}");
        await fx.AppliedAsync(reply.State!.Version);
    }

    internal static async Task<string> ColourAsync(HttpClient http, string session)
    {
        using var r = await http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"fine\"}", session: session));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        return (await Api.JsonAsync(r)).GetProperty("colour").GetString()!;
    }
}
