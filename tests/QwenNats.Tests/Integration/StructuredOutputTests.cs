using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>
/// response_format, logit_bias and the penalties on the real system: the tiny story model knows nothing of
/// JSON, so every parseable, schema-valid answer it gives is the grammar's doing.
/// </summary>
[Collection(SystemCollection.Name)]
public sealed class StructuredOutputTests(SystemFixture fx)
{
    private const int Seeds = 12;

    /// <summary>A person: every supported keyword at least once, nested object and array included.</summary>
    private const string PersonSchema = """
        {"type":"object","properties":{
          "name":{"type":"string","minLength":1,"maxLength":12},
          "age":{"type":"integer"},
          "height":{"type":"number"},
          "alive":{"type":"boolean"},
          "mood":{"enum":["happy","sad",3,null]},
          "kind":{"const":"person"},
          "nickname":{"type":["string","null"],"maxLength":6},
          "tags":{"type":"array","items":{"type":"string","maxLength":5},"minItems":1,"maxItems":3},
          "home":{"type":"object","properties":{"town":{"type":"string","maxLength":8},"zip":{"type":"null"}},"required":["town"],"additionalProperties":false}
        },"required":["name","age","alive","kind","tags","home"],"additionalProperties":false}
        """;

    private static string Body(string content, JsonNode responseFormat, uint seed, bool stream, int maxTokens = 400, double temperature = 0.9)
    {
        var body = new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = content }),
            ["max_tokens"] = maxTokens,
            ["temperature"] = temperature,
            ["seed"] = seed,
            ["stream"] = stream,
            ["response_format"] = responseFormat,
        };
        return body.ToJsonString();
    }

    private static JsonNode JsonSchemaFormat(string schema) =>
        new JsonObject { ["type"] = "json_schema", ["json_schema"] = new JsonObject { ["name"] = "person", ["strict"] = true, ["schema"] = JsonNode.Parse(schema) } };

    /// <summary>The answer's text and finish reason, non-streamed or from the concatenated deltas.</summary>
    private async Task<(string Text, string Finish)> AskAsync(string body, bool stream)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var response = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", body), cts.Token);
        Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync(cts.Token));
        if (!stream)
        {
            var json = await Api.JsonAsync(response);
            var choice = json.GetProperty("choices")[0];
            return (choice.GetProperty("message").GetProperty("content").GetString()!, choice.GetProperty("finish_reason").GetString()!);
        }
        var events = await Api.ReadEventsAsync(response, cts.Token);
        Assert.Equal("[DONE]", events[^1]);
        var text = new System.Text.StringBuilder();
        string? finish = null;
        foreach (var e in events.SkipLast(1))
        {
            var choice = JsonDocument.Parse(e).RootElement.GetProperty("choices")[0];
            if (choice.GetProperty("delta").TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String)
                text.Append(c.GetString());
            if (choice.GetProperty("finish_reason").ValueKind == JsonValueKind.String)
                finish = choice.GetProperty("finish_reason").GetString();
        }
        return (text.ToString(), finish!);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Json_mode_answers_parse_as_a_JSON_object_for_every_seed(bool stream)
    {
        for (uint seed = 1; seed <= Seeds; seed++)
        {
            var (text, finish) = await AskAsync(Body("Once upon a time", new JsonObject { ["type"] = "json_object" }, seed, stream, maxTokens: 1000), stream);
            Assert.True(finish == "stop", $"seed {seed}: finish {finish}, text {text}");
            using var doc = JsonDocument.Parse(text);
            Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Json_schema_answers_are_valid_against_the_schema_for_every_seed(bool stream)
    {
        using var schema = JsonDocument.Parse(PersonSchema);
        for (uint seed = 1; seed <= Seeds; seed++)
        {
            var (text, finish) = await AskAsync(Body("Tell me about a person", JsonSchemaFormat(PersonSchema), seed, stream), stream);
            Assert.True(finish == "stop", $"seed {seed}: finish {finish}, text {text}");
            using var answer = JsonDocument.Parse(text);
            Assert.Null(SchemaCheck.Problem(schema.RootElement, answer.RootElement));
            // Properties come in the schema's order.
            var order = answer.RootElement.EnumerateObject().Select(p => p.Name).ToList();
            var schemaOrder = schema.RootElement.GetProperty("properties").EnumerateObject().Select(p => p.Name).Where(order.Contains).ToList();
            Assert.Equal(schemaOrder, order);
        }
    }

    [Fact]
    public async Task Greedy_json_answers_with_penalties_and_biases_are_valid_and_deterministic()
    {
        using var schema = JsonDocument.Parse(PersonSchema);
        var body = JsonNode.Parse(Body("Tell me about a person", JsonSchemaFormat(PersonSchema), 1, stream: false, temperature: 0))!.AsObject();
        body["frequency_penalty"] = 0.5;
        body["logit_bias"] = new JsonObject { ["10"] = -5 };
        var (first, finish) = await AskAsync(body.ToJsonString(), false);
        Assert.Equal("stop", finish);
        using (var answer = JsonDocument.Parse(first))
            Assert.Null(SchemaCheck.Problem(schema.RootElement, answer.RootElement));
        var (again, _) = await AskAsync(body.ToJsonString(), false);
        Assert.Equal(first, again);
        var (json, _) = await AskAsync(Body("Once upon a time", new JsonObject { ["type"] = "json_object" }, 1, stream: false, maxTokens: 1000, temperature: 0), false);
        using (var parsed = JsonDocument.Parse(json))
            Assert.Equal(JsonValueKind.Object, parsed.RootElement.ValueKind);
    }

    [Fact]
    public async Task An_unsupported_schema_keyword_is_a_400_naming_its_path()
    {
        var format = JsonSchemaFormat("""{"type":"object","properties":{"x":{"type":"string","pattern":"^a"}}}""");
        using var response = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", Body("hi", format, 1, stream: false)));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = (await Api.JsonAsync(response)).GetProperty("error");
        Assert.Equal("unsupported_parameter", error.GetProperty("code").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal("response_format.json_schema.schema.properties.x.pattern", error.GetProperty("param").GetString());
    }

    [Fact]
    public async Task A_json_answer_cut_by_max_tokens_reports_length()
    {
        var (text, finish) = await AskAsync(Body("Once upon a time", JsonSchemaFormat(PersonSchema), 1, stream: false, maxTokens: 5), false);
        Assert.Equal("length", finish);
        Assert.StartsWith("{", text);
    }

    [Fact]
    public async Task A_logit_bias_of_minus_100_on_a_greedy_answer_token_changes_the_answer()
    {
        var plain = await ChatAsync(new JsonObject());
        // The answer's own tokens; the first may differ from the generated one (a word-start marker), so take the second.
        var tokens = await TokensOfAsync(plain);
        Assert.True(tokens.Length > 2, plain);
        var banned = tokens[1];
        var biased = await ChatAsync(new JsonObject { ["logit_bias"] = new JsonObject { [banned.ToString(System.Globalization.CultureInfo.InvariantCulture)] = -100 } });
        Assert.NotEqual(plain, biased);
        Assert.DoesNotContain(banned, await TokensOfAsync(biased));
    }

    [Fact]
    public async Task Penalties_are_accepted_and_change_a_repetitive_greedy_answer()
    {
        var plain = await ChatAsync(new JsonObject());
        var penalised = await ChatAsync(new JsonObject { ["frequency_penalty"] = 2.0, ["presence_penalty"] = 2.0 });
        Assert.False(string.IsNullOrEmpty(penalised));
        Assert.NotEqual(plain, penalised);
        var mild = await ChatAsync(new JsonObject { ["frequency_penalty"] = -0.5, ["presence_penalty"] = 0.1, ["temperature"] = 0.7, ["seed"] = 3 });
        Assert.False(string.IsNullOrEmpty(mild));
    }

    [Fact]
    public async Task A_logit_bias_token_beyond_the_vocabulary_is_refused_by_the_worker()
    {
        var body = new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Once upon a time" }),
            ["max_tokens"] = 4,
            ["logit_bias"] = new JsonObject { ["5"] = 1, ["999999"] = -100 },
        };
        using var response = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", body.ToJsonString()));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = (await Api.JsonAsync(response)).GetProperty("error");
        Assert.Equal("invalid_request", error.GetProperty("code").GetString());
        Assert.Contains("999999", error.GetProperty("message").GetString());
        Assert.Contains("vocabulary", error.GetProperty("message").GetString());
    }

    /// <summary>A greedy answer of 24 tokens with <paramref name="extra"/> fields.</summary>
    private async Task<string> ChatAsync(JsonObject extra)
    {
        var body = new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Once upon a time" }),
            ["max_tokens"] = 24,
            ["temperature"] = 0,
        };
        foreach (var (k, v) in extra)
            body[k] = v?.DeepClone();
        using var response = await fx.Http.SendAsync(Api.Post("/v1/chat/completions", body.ToJsonString()));
        Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());
        return (await Api.JsonAsync(response)).GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
    }

    /// <summary>The token ids of <paramref name="text"/> in the test model's vocabulary.</summary>
    private static Task<int[]> TokensOfAsync(string text)
    {
        var parameters = new LLama.Common.ModelParams(QwenNats.Testing.Paths.Model) { GpuLayerCount = 0, ContextSize = 64 };
        using var weights = LLama.LLamaWeights.LoadFromFile(parameters);
        return Task.FromResult(weights.Tokenize(text, false, false, System.Text.Encoding.UTF8).Select(t => (int)t).ToArray());
    }
}
