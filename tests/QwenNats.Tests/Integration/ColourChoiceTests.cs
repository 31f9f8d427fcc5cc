using System.Net;
using System.Net.WebSockets;
using System.Text.Json;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>
/// Choosing the colour that answers (X-Qwen-Colour, ?colour=) bypasses pins and the rollout: only testers may —
/// the operator token, or an API key with the tester scope. Everyone else gets an OpenAI-style 403.
/// </summary>
[Collection(SystemCollection.Name)]
public sealed class ColourChoiceTests(SystemFixture fx)
{
    private static HttpRequestMessage Sentiment(string? colour, string? bearer)
    {
        var req = Api.Post("/v1/sentiment", "{\"input\":\"a fine day\"}");
        if (colour is not null) req.Headers.Add("X-Qwen-Colour", colour);
        if (bearer is not null) req.Headers.Authorization = new("Bearer", bearer);
        return req;
    }

    private static async Task AssertForbiddenAsync(HttpResponseMessage r, string caller)
    {
        var body = await r.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.Forbidden, r.StatusCode);
        var error = JsonDocument.Parse(body).RootElement.GetProperty("error");
        Assert.Equal("colour_choice_forbidden", error.GetProperty("code").GetString());
        Assert.Equal("X-Qwen-Colour", error.GetProperty("param").GetString());
        Assert.False(string.IsNullOrEmpty(error.GetProperty("type").GetString()));
        var message = error.GetProperty("message").GetString()!;
        Assert.Contains($"'{caller}'", message, StringComparison.Ordinal);
        Assert.Contains("tester scope", message, StringComparison.Ordinal);
        Assert.False(r.Headers.Contains("X-Qwen-Worker"), "a refused request was served");
    }

    [Fact]
    public async Task An_ordinary_client_may_not_choose_a_colour_and_a_tester_with_the_operator_token_may()
    {
        using (var r = await fx.Http.SendAsync(Sentiment("green", null)))
            await AssertForbiddenAsync(r, "anonymous");
        using (var r = await fx.Http.SendAsync(Sentiment("green", "not-the-operator-token")))
            await AssertForbiddenAsync(r, "anonymous");
        // Refused before the colour is even looked at: an unknown colour is no hint either.
        using (var r = await fx.Http.SendAsync(Sentiment("purple", null)))
            await AssertForbiddenAsync(r, "anonymous");
        // Without a colour the same client is served by the rollout (blue is live).
        using (var r = await fx.Http.SendAsync(Sentiment(null, null)))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Equal("blue", Api.Header(r, "X-Qwen-Colour"));
        }
        using (var r = await fx.Http.SendAsync(Sentiment("green", QwenSystem.OperatorToken)))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Equal("green", Api.Header(r, "X-Qwen-Colour"));
            Assert.Equal("v2", Api.Header(r, "X-Qwen-Profile"));
        }
    }

    [Fact]
    public async Task A_websocket_may_name_a_colour_only_with_the_operator_token()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var uri = new UriBuilder(fx.Http.BaseAddress!) { Scheme = "ws", Path = "/ws/chat", Query = "colour=green" }.Uri;
        using (var refused = new ClientWebSocket())
        {
            refused.Options.CollectHttpResponseDetails = true;
            await Assert.ThrowsAsync<WebSocketException>(() => refused.ConnectAsync(uri, cts.Token));
            Assert.Equal(HttpStatusCode.Forbidden, refused.HttpStatusCode);
        }
        using var allowed = new ClientWebSocket();
        allowed.Options.SetRequestHeader("Authorization", "Bearer " + QwenSystem.OperatorToken);
        await allowed.ConnectAsync(uri, cts.Token);
        var buffer = new byte[4096];
        var ready = await allowed.ReceiveAsync(buffer, cts.Token);
        Assert.Equal("green", JsonDocument.Parse(buffer.AsMemory(0, ready.Count)).RootElement.GetProperty("colour").GetString());
        await allowed.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", cts.Token);
    }

    [Fact]
    public async Task With_api_keys_only_a_key_with_the_tester_scope_or_the_operator_token_may_choose_a_colour()
    {
        var (_, http) = await fx.System.StartIngressAsync(new()
        {
            ["Security:ApiKeys:0:Name"] = "qa", ["Security:ApiKeys:0:Key"] = "key-qa-7c1e", ["Security:ApiKeys:0:Scopes:0"] = "tester",
            ["Security:ApiKeys:1:Name"] = "shop", ["Security:ApiKeys:1:Key"] = "key-shop-9a2b",
        });
        using (http)
        {
            // Until this ingress has heard both pools' heartbeats (it needs a key even for the list of models).
            using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20)))
            {
                while (true)
                {
                    using var models = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
                    models.Headers.Authorization = new("Bearer", "key-shop-9a2b");
                    using var r = await http.SendAsync(models, cts.Token);
                    var data = (await Api.JsonAsync(r)).GetProperty("data").EnumerateArray().ToList();
                    if (data.Count(m => m.GetProperty("workers").GetInt32() > 0) >= 2) break;
                    await Task.Delay(100, cts.Token);
                }
            }
            using (var r = await http.SendAsync(Sentiment("green", "key-shop-9a2b")))
                await AssertForbiddenAsync(r, "shop");
            using (var r = await http.SendAsync(Sentiment(null, "key-shop-9a2b")))
            {
                Assert.Equal(HttpStatusCode.OK, r.StatusCode);
                Assert.Equal("blue", Api.Header(r, "X-Qwen-Colour"));
            }
            foreach (var tester in new[] { "key-qa-7c1e", QwenSystem.OperatorToken })
            {
                using var r = await http.SendAsync(Sentiment("green", tester));
                Assert.Equal(HttpStatusCode.OK, r.StatusCode);
                Assert.Equal("green", Api.Header(r, "X-Qwen-Colour"));
            }
            using (var r = await http.SendAsync(Sentiment("green", "key-nobody")))
                Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode);
        }
    }

    [Fact]
    public async Task An_unknown_scope_stops_the_ingress_with_a_message_naming_it()
    {
        var error = await Assert.ThrowsAsync<Microsoft.Extensions.Options.OptionsValidationException>(() => fx.System.StartIngressAsync(new()
        {
            ["Security:ApiKeys:0:Name"] = "qa", ["Security:ApiKeys:0:Key"] = "key-qa-7c1e", ["Security:ApiKeys:0:Scopes:0"] = "admin",
        }));
        Assert.Contains("Security:ApiKeys has an unknown scope; known scopes: tester", error.Message, StringComparison.Ordinal);
    }
}
