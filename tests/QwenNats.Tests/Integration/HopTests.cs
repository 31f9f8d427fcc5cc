using System.Globalization;
using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using QwenNats.Ingress.Routing;
using QwenNats.Messaging;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>
/// The routing hop's cheaper path keeps its guarantees: a session's pin is read from the ingress's watched copy of
/// <c>qwen_sessions</c> (which follows writes by anyone, deletes included), a session the ingress made up carries its
/// pin in its id and is pinned in KV only when it comes back or the canary sends it to the candidate — then before its
/// answer reaches the client although the request did not wait for the write — and every answer says where its time
/// went (<c>Server-Timing</c>).
/// </summary>
[Collection(RolloutCollection.Name)]
public sealed class HopTests(RolloutFixture fx) : IAsyncLifetime
{
    public Task InitializeAsync() => fx.ResetAsync();
    public Task DisposeAsync() => Task.CompletedTask;

    private static readonly string[] Stages = ["parse", "route", "publish", "deliver", "worker-in", "infer", "worker-out", "reply", "handoff", "respond", "total"];

    [Fact]
    public async Task A_session_the_ingress_made_up_carries_its_pin_in_its_id_until_it_comes_back()
    {
        var store = await SessionsAsync();
        var pins = fx.Ingress1.Services.GetRequiredService<SessionPins>();
        await fx.AppliedAsync((await fx.CtlAsync("status")).State!.Version);

        // (a) A client that names no session, in Stable and in Shadow: live, a made-up session in the cookie, and no
        // pin in KV (nor written later: the id carries it).
        var stable = await MadeUpAsync(fx.Http2);
        var start = await fx.CtlAsync("start", "{\"candidate\":\"green\"}");
        Assert.True(start.Ok, start.Error);
        Assert.NotNull(start.State!.LiveVersion);
        await fx.AppliedAsync(start.State.Version);
        var shadow = await MadeUpAsync(fx.Http2);
        foreach (var (session, colour, route) in new[] { stable, shadow })
        {
            Assert.Equal(("blue", "NewSession"), (colour, route));
            Assert.True(MadeSessionId.TryParse(session, out _), session);
        }
        await Task.Delay(TimeSpan.FromMilliseconds(300));
        foreach (var (session, _, _) in new[] { stable, shadow })
            Assert.IsType<NatsKVKeyNotFoundException>((await store.TryGetEntryAsync<SessionPin>(SessionKeys.For(session))).Error);

        // (b) A canary at weight 100: both sessions come back (to the other ingress) on the colour they were first on,
        // the live one, and from then on their pins are in KV (read at once: the answer waited for the write).
        var canary = await fx.CtlAsync("set-weight", "{\"weight\":100}");
        Assert.True(canary.Ok, canary.Error);
        await fx.AppliedAsync(canary.State!.Version);
        foreach (var (session, _, _) in new[] { stable, shadow })
        {
            Assert.Equal(("blue", "Pinned"), await ReturnAsync(fx.Http1, session));
            Assert.Equal("blue", (await store.GetEntryAsync<SessionPin>(SessionKeys.For(session))).Value!.Colour);
            Assert.Equal(("blue", "Pinned"), await ReturnAsync(fx.Http2, session));
        }

        // (c) A new session in that canary goes to the candidate, and its pin is in KV before its answer arrives.
        for (var i = 0; i < 3; i++)
        {
            var (session, colour, route) = await MadeUpAsync(fx.Http2);
            Assert.Equal(("green", "NewSession"), (colour, route));
            Assert.Equal("green", (await store.GetEntryAsync<SessionPin>(SessionKeys.For(session))).Value!.Colour);
            Assert.Equal(("green", "Pinned"), await ReturnAsync(fx.Http1, session));
        }

        // (d) An operator removes both pins: each session is decided again (the candidate, at weight 100), its id's
        // pin (live) is not brought back — whether the ingress knows the delete from its copy or reads it from KV.
        foreach (var (session, _, _) in new[] { stable, shadow })
        {
            var unpin = await fx.CtlAsync("unpin", $"{{\"session\":\"{session}\"}}");
            Assert.True(unpin.Ok, unpin.Error);
        }
        foreach (var (session, _, _) in new[] { stable, shadow })
            await Eventually.TrueAsync(() => pins.Lookup(SessionKeys.For(session), out _, out _) == StoredPin.Deleted);
        pins.Invalidate(SessionKeys.For(shadow.Session)); // this one is read from KV
        foreach (var (session, _, _) in new[] { stable, shadow })
        {
            Assert.Equal(("green", "NewSession"), await ReturnAsync(fx.Http1, session));
            Assert.Equal("green", (await store.GetEntryAsync<SessionPin>(SessionKeys.For(session))).Value!.Colour);
        }
    }

    /// <summary>A request that names no session (no header, cookie or <c>user</c>): the session the ingress made up
    /// (from its cookie), and where the request went.</summary>
    private static async Task<(string Session, string Colour, string Route)> MadeUpAsync(HttpClient ingress)
    {
        using var http = new HttpClient(new HttpClientHandler { UseCookies = false }) { BaseAddress = ingress.BaseAddress };
        using var r = await http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"fine\"}"));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var cookie = Assert.Single(r.Headers.GetValues("Set-Cookie"), c => c.StartsWith(RequestRouting.SessionCookie + "=", StringComparison.Ordinal));
        var session = cookie[(RequestRouting.SessionCookie.Length + 1)..].Split(';')[0];
        return (session, (await Api.JsonAsync(r)).GetProperty("colour").GetString()!, Api.Header(r, "X-Qwen-Route")!);
    }

    /// <summary>A request that sends back the session cookie.</summary>
    private static async Task<(string Colour, string Route)> ReturnAsync(HttpClient ingress, string session)
    {
        using var http = new HttpClient(new HttpClientHandler { UseCookies = false }) { BaseAddress = ingress.BaseAddress };
        using var req = Api.Post("/v1/sentiment", "{\"input\":\"fine\"}");
        req.Headers.Add("Cookie", $"{RequestRouting.SessionCookie}={session}");
        using var r = await http.SendAsync(req);
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.False(r.Headers.Contains("Set-Cookie"));
        return ((await Api.JsonAsync(r)).GetProperty("colour").GetString()!, Api.Header(r, "X-Qwen-Route")!);
    }

    /// <summary>Both ingresses apply state <paramref name="version"/> (or a later one).</summary>
    [Fact]
    public async Task A_pin_written_or_deleted_by_anyone_reaches_the_ingress_copy_which_routes_by_it()
    {
        var start = await fx.CtlAsync("start", "{\"candidate\":\"green\"}");
        Assert.True(start.Ok, start.Error);
        var store = await SessionsAsync();
        var pins = fx.Ingress1.Services.GetRequiredService<SessionPins>();
        const string Session = "pinned-elsewhere";
        var key = SessionKeys.For(Session);

        // Written as another ingress would (to the candidate, which serves in Shadow): the copy learns it from its watch.
        await store.PutAsync(key, new SessionPin { Colour = "green", RolloutId = start.State!.RolloutId, PinnedAt = DateTimeOffset.UtcNow });
        await Eventually.TrueAsync(() => pins.TryGet(key, out var p, out _) && p.Colour == "green");
        await Eventually.TrueAsync(async () => await ColourAsync(fx.Http1, Session) == ("green", "Pinned"));

        // Deleted elsewhere: gone from the copy, and the session is routed as new (to live, weight 0) again.
        await store.DeleteAsync(key);
        await Eventually.TrueAsync(() => !pins.TryGet(key, out _, out _));
        Assert.Equal(("blue", "NewSession"), await ColourAsync(fx.Http1, Session));
        // That request pinned it to blue, in the copy at once.
        Assert.True(pins.TryGet(key, out var mine, out _));
        Assert.Equal("blue", mine.Colour);
        Assert.Equal(("blue", "Pinned"), await ColourAsync(fx.Http1, Session));
    }

    [Fact]
    public async Task An_answer_says_where_its_time_went_stage_by_stage()
    {
        using var r = await fx.Http1.SendAsync(Api.Post("/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":1,\"temperature\":0}", session: "timed"));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var header = string.Join(", ", r.Headers.GetValues("Server-Timing"));
        var stages = header.Split(',', StringSplitOptions.TrimEntries).Select(s => s.Split(";dur=")).ToList();
        Assert.Equal(Stages, stages.Select(s => s[0]));
        var ms = stages.ToDictionary(s => s[0], s => double.Parse(s[1], CultureInfo.InvariantCulture));
        // Stages measured inside one process cannot be negative; the worker's inference is its own total_ms.
        foreach (var local in new[] { "parse", "route", "publish", "worker-in", "infer", "worker-out", "handoff", "respond", "total" })
            Assert.True(ms[local] >= 0, $"{local}: {ms[local]} ({header})");
        var timings = (await Api.JsonAsync(r)).GetProperty("timings");
        Assert.Equal(timings.GetProperty("total_ms").GetDouble(), ms["infer"], 0.5);
        Assert.True(ms["total"] >= ms["infer"], header);
        Assert.True(ms["total"] >= ms["parse"] + ms["route"] + ms["publish"], header);

        // Sentiment answers carry it too; a streamed answer, whose headers leave before the work is done, does not.
        using (var s = await fx.Http1.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"fine\"}", session: "timed")))
            Assert.Contains("infer;dur=", string.Join(", ", s.Headers.GetValues("Server-Timing")), StringComparison.Ordinal);
        using (var stream = await fx.Http1.SendAsync(Api.Post("/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":1,\"stream\":true}", session: "timed")))
        {
            Assert.Equal(HttpStatusCode.OK, stream.StatusCode);
            Assert.False(stream.Headers.Contains("Server-Timing"));
        }
    }

    private async Task<INatsKVStore> SessionsAsync() =>
        await new NatsKVContext(new NatsJSContext(fx.Operator)).GetStoreAsync(Rollouts.SessionsBucket);

    private static async Task<(string Colour, string Route)> ColourAsync(HttpClient http, string session)
    {
        using var r = await http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"fine\"}", session: session));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        return ((await Api.JsonAsync(r)).GetProperty("colour").GetString()!, Api.Header(r, "X-Qwen-Route")!);
    }
}
