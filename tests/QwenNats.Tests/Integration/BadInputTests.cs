using System.Net;
using System.Text;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

[Collection(SystemCollection.Name)]
public sealed class BadInputTests(SystemFixture fx)
{
    public static TheoryData<string, string, int, string> Cases => new()
    {
        { "/v1/chat/completions", "{not json", 400, "invalid_json" },
        { "/v1/chat/completions", "", 400, "invalid_request" },
        { "/v1/chat/completions", "[1,2,3]", 400, "invalid_request" },
        { "/v1/chat/completions", "{}", 400, "invalid_request" },
        { "/v1/chat/completions", "{\"messages\":\"hello\"}", 400, "invalid_request" },
        { "/v1/chat/completions", "{\"messages\":[]}", 400, "empty_conversation" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"   \"}]}", 400, "empty_conversation" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}", 400, "invalid_request" },
        { "/v1/chat/completions", "{\"messages\":[{\"content\":\"hi\"}]}", 400, "invalid_request" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":42}]}", 400, "invalid_request" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\"}]}", 400, "invalid_request" },
        { "/v1/chat/completions", "{\"messages\":[\"hi\"]}", 400, "invalid_request" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}", 400, "invalid_request" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":\"hot\"}", 400, "invalid_request" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":7}", 400, "invalid_request" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"top_p\":0}", 400, "invalid_request" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":-1}", 400, "invalid_request" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":99999999999}", 400, "invalid_request" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":1.5}", 400, "invalid_request" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":\"yes\"}", 400, "invalid_request" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stop\":[1]}", 400, "invalid_request" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "invalid_request" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":2}", 400, "unsupported_parameter" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}", 400, "unsupported_parameter" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"colour\":\"green\"}", 400, "unknown_parameter" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream_options\":{\"include_usage\":true}}", 400, "invalid_request" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"model\":5}", 400, "invalid_request" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 400, "unsupported_parameter" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\",\"name\":\"ann\"}]}", 400, "unsupported_parameter" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\",\"colour\":\"green\"}]}", 400, "unknown_parameter" },
        { "/v1/completions", "{not json", 400, "invalid_json" },
        { "/v1/completions", "{}", 400, "invalid_request" },
        { "/v1/completions", "{\"prompt\":[\"a\",\"b\"]}", 400, "unsupported_parameter" },
        { "/v1/completions", "{\"prompt\":\"hi\",\"messages\":[]}", 400, "unknown_parameter" },
        { "/v1/completions", "{\"prompt\":\"hi\",\"max_tokens\":0}", 400, "invalid_request" },
        { "/v1/chat/completions", new string('[', 5000) + new string(']', 5000), 400, "invalid_json" },
        { "/v1/sentiment", "{}", 400, "invalid_request" },
        { "/v1/sentiment", "{\"input\":5}", 400, "invalid_request" },
        { "/v1/sentiment", "{\"input\":\"\"}", 400, "invalid_request" },
        { "/v1/sentiment", "{\"input\":null}", 400, "invalid_request" },
        { "/v1/sentiment", "\"just a string\"", 400, "invalid_request" },
        { "/v1/sentiment", "{\"input\":\"ok\"", 400, "invalid_json" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Bad_input_gets_an_OpenAI_error_with_its_status_and_code(string path, string body, int status, string code)
    {
        using var response = await fx.Http.SendAsync(Api.Post(path, body));
        await AssertErrorAsync(response, status, code);
    }

    [Fact]
    public async Task Error_bodies_keep_non_ascii_text_readable()
    {
        using var response = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", "{\"messages\":[{\"role\":\"向导\",\"content\":\"你好\"}]}"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.Contains("'向导'", text);
        Assert.DoesNotContain("\\u", text);
    }

    [Fact]
    public async Task A_session_id_too_long_to_use_is_refused_naming_where_it_came_from_not_replaced_by_a_new_session()
    {
        var tooLong = new string('s', 129);
        using (var header = await fx.Http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"fine\"}", session: tooLong)))
        {
            Assert.Equal("X-Session-Id", (await AssertErrorAsync(header, 400, "invalid_request")).GetProperty("param").GetString());
            Assert.False(header.Headers.Contains("Set-Cookie"), "no session was made up in its place");
        }
        using (var user = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", $"{{\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],\"max_tokens\":1,\"user\":\"{tooLong}\"}}")))
            Assert.Equal("user", (await AssertErrorAsync(user, 400, "invalid_request")).GetProperty("param").GetString());
        // At the limit it is the session, as before.
        using var fits = await fx.Http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"fine\"}", session: tooLong[..128]));
        Assert.Equal(HttpStatusCode.OK, fits.StatusCode);
    }

    [Fact]
    public async Task A_body_over_the_limit_is_413()
    {
        var huge = "{\"input\":\"" + new string('a', 70_000) + "\"}";
        using var response = await fx.Http.SendAsync(Api.Post("/v1/sentiment", huge));
        await AssertErrorAsync(response, 413, "body_too_large");
    }

    [Fact]
    public async Task A_chunked_body_over_the_limit_is_413()
    {
        var content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes("{\"input\":\"" + new string('b', 100_000) + "\"}")));
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/sentiment") { Content = content };
        req.Headers.TransferEncodingChunked = true;
        using var response = await fx.Http.SendAsync(req);
        await AssertErrorAsync(response, 413, "body_too_large");
    }

    [Fact]
    public async Task Invalid_utf8_is_400()
    {
        var bytes = new byte[] { (byte)'{', (byte)'"', (byte)'i', (byte)'n', (byte)'p', (byte)'u', (byte)'t', (byte)'"', (byte)':', (byte)'"', 0xC3, 0x28, 0xFF, (byte)'"', (byte)'}' };
        using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/sentiment") { Content = new ByteArrayContent(bytes) };
        using var response = await fx.Http.SendAsync(req);
        await AssertErrorAsync(response, 400, "invalid_json");
    }

    [Fact]
    public async Task An_unknown_colour_is_400_and_a_pool_without_workers_is_503_with_retry_after()
    {
        using var unknown = await fx.Http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"ok\"}", colour: "purple"));
        await AssertErrorAsync(unknown, 400, "invalid_request");

        using var empty = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("hi"), colour: "red"));
        await AssertErrorAsync(empty, 503, "no_workers");
        Assert.Equal("1", Api.Header(empty, "Retry-After"));
        Assert.Equal("red", Api.Header(empty, "X-Qwen-Colour"));

        using var streamed = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("hi", stream: true), colour: "red"));
        await AssertErrorAsync(streamed, 503, "no_workers");
    }

    [Fact]
    public async Task Wrong_methods_and_unknown_paths_get_JSON_errors()
    {
        using var get = await fx.Http.GetAsync("/v1/chat/completions");
        await AssertErrorAsync(get, 405, "method_not_allowed");
        using var missing = await fx.Http.GetAsync("/v1/nothing-here");
        await AssertErrorAsync(missing, 404, "not_found");
        using var dotted = await fx.Http.GetAsync("/v1/models/qwen2.5-0.5b-instruct-q4_k_m.gguf");
        await AssertErrorAsync(dotted, 404, "not_found");
        using var plainWs = await fx.Http.GetAsync("/ws/chat");
        await AssertErrorAsync(plainWs, 400, "invalid_request");
    }

    [Fact]
    public async Task The_ingress_keeps_serving_after_bad_input()
    {
        foreach (var (path, body, _, _) in Cases.Select(c => ((string)c[0], (string)c[1], (int)c[2], (string)c[3])))
            (await fx.Http.SendAsync(Api.Post(path, body))).Dispose();
        using var ok = await fx.Http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"fine\"}"));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    private static async Task<System.Text.Json.JsonElement> AssertErrorAsync(HttpResponseMessage response, int status, string code)
    {
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("application/json", Api.ContentType(response)?.MediaType);
        var error = (await Api.JsonAsync(response)).GetProperty("error");
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("type").GetString()));
        return error;
    }
}
