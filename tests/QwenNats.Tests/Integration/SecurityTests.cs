using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>API keys, rate limits and CORS on a real ingress process.</summary>
[Collection(ProcessSystemCollection.Name)]
public sealed class SecurityTests(ProcessSystemFixture fx)
{
    [Fact]
    public async Task Inference_endpoints_need_a_valid_API_key_and_health_does_not()
    {
        using var anonymous = fx.Client(key: null);
        using (var r = await anonymous.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"hello\"}")))
        {
            await AssertErrorAsync(r, HttpStatusCode.Unauthorized, "missing_api_key", "authentication_error");
            Assert.Equal("Bearer", r.Headers.WwwAuthenticate.Single().Scheme);
        }
        using (var r = await anonymous.GetAsync("/v1/models"))
            await AssertErrorAsync(r, HttpStatusCode.Unauthorized, "missing_api_key", "authentication_error");
        using var wrong = fx.Client("not-a-key");
        using (var r = await wrong.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("hi"))))
            await AssertErrorAsync(r, HttpStatusCode.Unauthorized, "invalid_api_key", "authentication_error");
        using (var r = await anonymous.GetAsync("/healthz"))
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        using (var r = await anonymous.GetAsync("/readyz"))
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);

        using var good = fx.Client();   // configured by its SHA-256 only
        using var ok = await good.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"hello\"}"));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Fact]
    public async Task Each_key_has_its_own_rate_limit_answered_with_429_and_Retry_After()
    {
        using var limited = fx.Client(ProcessSystemFixture.KeyLimited);
        var statuses = new List<HttpStatusCode>();
        HttpResponseMessage? refused = null;
        for (var i = 0; i < 6; i++)
        {
            var r = await limited.GetAsync("/v1/models");
            statuses.Add(r.StatusCode);
            if (r.StatusCode == HttpStatusCode.TooManyRequests && refused is null) refused = r;
            else r.Dispose();
        }
        Assert.True(statuses.Take(3).All(s => s == HttpStatusCode.OK), string.Join(",", statuses));
        Assert.NotNull(refused);
        using (refused)
        {
            Assert.True(refused!.Headers.RetryAfter?.Delta >= TimeSpan.FromSeconds(1));
            await AssertErrorAsync(refused, HttpStatusCode.TooManyRequests, "rate_limit_exceeded", "rate_limit_error");
        }
        // Another key is not affected.
        using var bulk = fx.Client();
        using var other = await bulk.GetAsync("/v1/models");
        Assert.Equal(HttpStatusCode.OK, other.StatusCode);
    }

    [Fact]
    public async Task The_WebSocket_takes_the_key_as_a_header_or_a_subprotocol_and_limits_each_turn()
    {
        var uri = new UriBuilder(fx.Base) { Scheme = "ws", Path = "/ws/chat" }.Uri;
        using (var none = new ClientWebSocket())
        {
            none.Options.CollectHttpResponseDetails = true;
            await Assert.ThrowsAsync<WebSocketException>(() => none.ConnectAsync(uri, CancellationToken.None));
            Assert.Equal(HttpStatusCode.Unauthorized, none.HttpStatusCode);
        }
        using (var header = new ClientWebSocket())
        {
            header.Options.SetRequestHeader("Authorization", "Bearer " + ProcessSystemFixture.KeyBulk);
            await header.ConnectAsync(uri, CancellationToken.None);
            Assert.Equal("ready", (await ReceiveAsync(header)).GetProperty("type").GetString());
        }
        using var browserStyle = new ClientWebSocket();
        browserStyle.Options.AddSubProtocol("qwen");
        browserStyle.Options.AddSubProtocol("qwen.key." + ProcessSystemFixture.KeyWebSocket);
        await browserStyle.ConnectAsync(uri, CancellationToken.None);
        Assert.Equal("qwen", browserStyle.SubProtocol);
        Assert.Equal("ready", (await ReceiveAsync(browserStyle)).GetProperty("type").GetString());
        // Burst 2: the third quick turn is refused with an error frame; the connection stays open.
        var types = new List<string>();
        for (var turn = 0; turn < 3; turn++)
        {
            await browserStyle.SendAsync(Encoding.UTF8.GetBytes("{\"content\":\"Once upon a time\",\"max_tokens\":4}"), WebSocketMessageType.Text, true, CancellationToken.None);
            while (true)
            {
                var frame = await ReceiveAsync(browserStyle);
                var type = frame.GetProperty("type").GetString()!;
                if (type is "done" or "error")
                {
                    types.Add(type == "error" ? frame.GetProperty("code").GetString()! : type);
                    break;
                }
            }
        }
        Assert.Equal(new[] { "done", "done", "rate_limit_exceeded" }, types);
        Assert.Equal(WebSocketState.Open, browserStyle.State);
    }

    [Fact]
    public async Task No_CORS_headers_are_sent_by_default()
    {
        using var http = fx.Client();
        using var preflight = new HttpRequestMessage(HttpMethod.Options, "/v1/chat/completions");
        preflight.Headers.Add("Origin", "https://evil.example");
        preflight.Headers.Add("Access-Control-Request-Method", "POST");
        using var r1 = await http.SendAsync(preflight);
        Assert.False(r1.Headers.Contains("Access-Control-Allow-Origin"));
        Assert.True((int)r1.StatusCode >= 400);
        using var get = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        get.Headers.Add("Origin", "https://evil.example");
        using var r2 = await http.SendAsync(get);
        Assert.Equal(HttpStatusCode.OK, r2.StatusCode);
        Assert.False(r2.Headers.Contains("Access-Control-Allow-Origin"));
    }

    private static async Task<JsonElement> ReceiveAsync(ClientWebSocket ws)
    {
        var buffer = new byte[64 * 1024];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var r = await ws.ReceiveAsync(buffer, cts.Token);
        return JsonDocument.Parse(buffer.AsMemory(0, r.Count)).RootElement.Clone();
    }

    private static async Task AssertErrorAsync(HttpResponseMessage r, HttpStatusCode status, string code, string type)
    {
        Assert.Equal(status, r.StatusCode);
        var error = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.Equal(type, error.GetProperty("type").GetString());
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
    }
}
