using System.ClientModel;
using System.Text;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>
/// The official .NET <c>OpenAI</c> package's <see cref="ChatClient"/> against the live ingress: every chat field it
/// can send is honoured and comes back in the client's own types, and refusals are its typed 400 exception naming
/// the field. (The package has no legacy completions client: CompletionsTests covers those over HTTP, and
/// NodeClientTests through the npm client.)
/// </summary>
[Collection(SystemCollection.Name)]
public sealed class DotnetClientTests(SystemFixture fx)
{
    private const string Prompt = "Once upon a time";

    private ChatClient Client() => new("stories260K", new ApiKeyCredential("no-key-needed"),
        new OpenAIClientOptions { Endpoint = new Uri(fx.Http.BaseAddress!, "/v1"), NetworkTimeout = TimeSpan.FromSeconds(60) });

    private static ChatCompletionOptions Greedy(int maxTokens = 32) => new() { Temperature = 0, MaxOutputTokenCount = maxTokens };

    private async Task<ChatCompletion> AskAsync(ChatCompletionOptions options, string prompt = Prompt) =>
        (await Client().CompleteChatAsync([new UserChatMessage(prompt)], options)).Value;

    [Fact]
    public async Task A_plain_chat_comes_back_as_the_clients_chat_completion_with_usage()
    {
        var c = await AskAsync(Greedy(16));
        Assert.Equal(ChatMessageRole.Assistant, c.Role);
        Assert.False(string.IsNullOrEmpty(c.Content[0].Text));
        Assert.Contains(c.FinishReason, new[] { ChatFinishReason.Stop, ChatFinishReason.Length });
        Assert.InRange(c.Usage.OutputTokenCount, 1, 16);
        Assert.Equal(c.Usage.InputTokenCount + c.Usage.OutputTokenCount, c.Usage.TotalTokenCount);
        Assert.Equal("stories260K", c.Model);
    }

    [Fact]
    public async Task A_streamed_chat_gives_the_same_text_and_a_last_update_with_only_the_usage()
    {
        var plain = (await AskAsync(Greedy())).Content[0].Text;
        var updates = new List<StreamingChatCompletionUpdate>();
        await foreach (var u in Client().CompleteChatStreamingAsync([new UserChatMessage(Prompt)], Greedy()))
            updates.Add(u);
        Assert.Equal(plain, string.Concat(updates.SelectMany(u => u.ContentUpdate).Select(p => p.Text)));
        Assert.Contains(updates, u => u.FinishReason is ChatFinishReason.Stop or ChatFinishReason.Length);
        // The client asks for stream_options.include_usage: the last update has the usage and nothing else.
        var last = updates[^1];
        Assert.NotNull(last.Usage);
        Assert.Empty(last.ContentUpdate);
        Assert.Null(last.FinishReason);
        Assert.Equal(last.Usage.InputTokenCount + last.Usage.OutputTokenCount, last.Usage.TotalTokenCount);
        Assert.All(updates.SkipLast(1), u => Assert.Null(u.Usage));
    }

    [Fact]
    public async Task Json_object_mode_answers_parse_as_an_object()
    {
        var options = new ChatCompletionOptions { Temperature = 0.8f, MaxOutputTokenCount = 400, ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat() };
#pragma warning disable OPENAI001 // Seed is marked experimental in the package.
        options.Seed = 11;
#pragma warning restore OPENAI001
        var c = await AskAsync(options, "Answer in JSON: a story about a dog.");
        Assert.Equal(ChatFinishReason.Stop, c.FinishReason);
        using var doc = JsonDocument.Parse(c.Content[0].Text);
        Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
    }

    [Fact]
    public async Task Json_schema_answers_have_exactly_the_schemas_fields_and_types()
    {
        const string schema = """
            {"type":"object","properties":{"name":{"type":"string","minLength":1,"maxLength":10},"age":{"type":"integer"},
             "pets":{"type":"array","items":{"type":"string","maxLength":6},"maxItems":2}},
             "required":["name","age","pets"],"additionalProperties":false}
            """;
        foreach (var seed in new long[] { 1, 2 })
        {
            var options = new ChatCompletionOptions
            {
                Temperature = 0.9f, MaxOutputTokenCount = 400,
                ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat("person", BinaryData.FromString(schema), jsonSchemaIsStrict: true),
            };
#pragma warning disable OPENAI001
            options.Seed = seed;
#pragma warning restore OPENAI001
            var c = await AskAsync(options, "Describe a person in JSON.");
            Assert.Equal(ChatFinishReason.Stop, c.FinishReason);
            using var doc = JsonDocument.Parse(c.Content[0].Text);
            var p = doc.RootElement;
            Assert.Equal(["name", "age", "pets"], p.EnumerateObject().Select(f => f.Name));
            Assert.InRange(p.GetProperty("name").GetString()!.Length, 1, 10);
            Assert.True(p.GetProperty("age").TryGetInt64(out _));
            Assert.InRange(p.GetProperty("pets").GetArrayLength(), 0, 2);
            Assert.All(p.GetProperty("pets").EnumerateArray(), t => Assert.InRange(t.GetString()!.Length, 0, 6));
        }
    }

    [Fact]
    public async Task Logprobs_list_each_token_with_as_many_alternatives_as_asked()
    {
        var options = Greedy(12);
        options.IncludeLogProbabilities = true;
        options.TopLogProbabilityCount = 4;
        var c = await AskAsync(options);
        Assert.Equal(c.Usage.OutputTokenCount, c.ContentTokenLogProbabilities.Count);
        var bytes = new List<byte>();
        foreach (var t in c.ContentTokenLogProbabilities)
        {
            Assert.InRange(t.LogProbability, -9999f, 0f);
            Assert.Equal(4, t.TopLogProbabilities.Count);
            Assert.Equal(t.Token, t.TopLogProbabilities[0].Token);
            var tops = t.TopLogProbabilities.Select(a => a.LogProbability).ToList();
            Assert.Equal(tops.OrderDescending(), tops);
            if (t.Utf8Bytes is { } own)
                bytes.AddRange(own.ToArray());
            else
                Assert.Fail($"token '{t.Token}' has no bytes");
        }
        Assert.Equal(c.Content[0].Text, Encoding.UTF8.GetString(bytes.ToArray()));
    }

    [Fact]
    public async Task Penalties_logit_bias_seed_stop_and_max_tokens_are_honoured()
    {
        var plain = (await AskAsync(Greedy(48))).Content[0].Text;
        var penalised = Greedy(48);
        penalised.FrequencyPenalty = 2;
        penalised.PresencePenalty = 2;
        Assert.NotEqual(plain, (await AskAsync(penalised)).Content[0].Text);

        // A +100 bias on one text token makes a greedy answer that token over and over.
        var biased = Greedy(5);
        biased.LogitBiases.Add(300, 100);
        biased.IncludeLogProbabilities = true;
        var b = await AskAsync(biased);
        var tokens = b.ContentTokenLogProbabilities.Select(t => t.Token).ToList();
        Assert.Equal(5, tokens.Count);
        Assert.Single(tokens.Distinct());
        Assert.Equal(string.Concat(tokens), b.Content[0].Text);

        async Task<string> SeededAsync()
        {
            var o = new ChatCompletionOptions { Temperature = 1, TopP = 0.95f, MaxOutputTokenCount = 24 };
#pragma warning disable OPENAI001
            o.Seed = 4242;
#pragma warning restore OPENAI001
            return (await AskAsync(o)).Content[0].Text;
        }
        Assert.Equal(await SeededAsync(), await SeededAsync());

        var word = System.Text.RegularExpressions.Regex.Matches(plain, "[A-Za-z]{3,}").First(m => m.Index > 0).Value;
        var stopping = Greedy(48);
        stopping.StopSequences.Add(word);
        var s = await AskAsync(stopping);
        Assert.Equal(ChatFinishReason.Stop, s.FinishReason);
        Assert.Equal(plain[..plain.IndexOf(word, StringComparison.Ordinal)], s.Content[0].Text);

        var cut = await AskAsync(Greedy(3));
        Assert.Equal(3, cut.Usage.OutputTokenCount);
        Assert.Equal(ChatFinishReason.Length, cut.FinishReason);
    }

    [Fact]
    public async Task Refused_fields_are_the_clients_typed_400_naming_the_field()
    {
        var tooHot = Greedy();
        tooHot.Temperature = 3;
        await AssertRefusedAsync(() => AskAsync(tooHot), "temperature", "invalid_request");

        var withTools = Greedy();
        withTools.Tools.Add(ChatTool.CreateFunctionTool("lookup", "looks a thing up"));
        await AssertRefusedAsync(() => AskAsync(withTools), "tools", "unsupported_parameter");

        await AssertRefusedAsync(async () => await Client().CompleteChatAsync([new UserChatMessage("hi") { ParticipantName = "ann" }], Greedy()),
            "messages[0].name", "unsupported_parameter");

        var toolCall = new AssistantChatMessage([ChatToolCall.CreateFunctionToolCall("call-1", "lookup", BinaryData.FromString("{}"))]);
        await AssertRefusedAsync(async () => await Client().CompleteChatAsync([new UserChatMessage("hi"), toolCall, new ToolChatMessage("call-1", "42")], Greedy()),
            "messages[1].tool_calls", "unsupported_parameter");
    }

    private static async Task AssertRefusedAsync(Func<Task> call, string param, string code)
    {
        var e = await Assert.ThrowsAsync<ClientResultException>(call);
        Assert.Equal(400, e.Status);
        using var body = JsonDocument.Parse(e.GetRawResponse()!.Content.ToString());
        var error = body.RootElement.GetProperty("error");
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Contains(param, e.Message, StringComparison.Ordinal);
    }
}
