using System.Text.Json;
using QwenNats.Messaging;
using QwenNats.Tests.Infrastructure;
using QwenNats.Worker;

namespace QwenNats.Tests.Unit;

public sealed class PromptTests
{
    private static PromptProfile Profile(string system = "SYS") => new()
    {
        Version = "t1",
        Template = new ChatTemplateSpec { System = "[S]{content}\n", User = "[U]{content}\n", Assistant = "[A]{content}\n", GenerationPrompt = "[A]" },
        Chat = new ChatProfile { SystemPrompt = system },
        Sentiment = new SentimentProfile { SystemPrompt = "CLASSIFY", UserTemplate = "Text: {input}", AnswerPrefix = " Label:", Labels = ["pos", "neg"] },
    };

    [Fact]
    public void Chat_prompt_puts_the_profile_system_prompt_first_and_ends_with_the_generation_prompt()
    {
        var p = Profile();
        var b = new PromptBuilder(p, new ProfileChatFormatter(p.Template));
        var text = b.Chat([new ChatMessage("user", "hi"), new ChatMessage("assistant", "hello"), new ChatMessage("user", "bye")]);
        Assert.Equal("[S]SYS\n[U]hi\n[A]hello\n[U]bye\n[A]", text);
    }

    [Fact]
    public void A_caller_system_message_replaces_the_profile_system_prompt()
    {
        var p = Profile();
        var b = new PromptBuilder(p, new ProfileChatFormatter(p.Template));
        Assert.Equal("[S]mine\n[U]hi\n[A]", b.Chat([new ChatMessage("system", "mine"), new ChatMessage("user", "hi")]));
    }

    [Fact]
    public void Sentiment_prompt_wraps_the_input_and_ends_with_the_answer_prefix()
    {
        var p = Profile();
        var b = new PromptBuilder(p, new ProfileChatFormatter(p.Template));
        Assert.Equal("[S]CLASSIFY\n[U]Text: 好\n[A] Label:", b.Sentiment("好"));
    }

    [Fact]
    public void The_shipped_profiles_load_and_differ_in_version_and_wording()
    {
        var v1 = PromptProfile.Load(Paths.Profile("v1"));
        var v2 = PromptProfile.Load(Paths.Profile("v2"));
        Assert.Equal("v1", v1.Version);
        Assert.Equal("v2", v2.Version);
        Assert.NotEqual(v1.Chat.SystemPrompt, v2.Chat.SystemPrompt);
        Assert.NotEqual(v1.Sentiment.UserTemplate, v2.Sentiment.UserTemplate);
        Assert.Equal(v1.Sentiment.Labels, v2.Sentiment.Labels);
    }

    [Fact]
    public void An_invalid_profile_is_refused_with_every_problem_named()
    {
        var bad = Profile() with { Sentiment = new SentimentProfile { UserTemplate = "no placeholder", Labels = ["only"] }, Chat = new ChatProfile { MaxTokens = 0, TopP = 2 } };
        var e = Assert.Throws<InvalidOperationException>(() => bad.Validate("test"));
        Assert.Contains("{input}", e.Message);
        Assert.Contains("two labels", e.Message);
        Assert.Contains("max_tokens", e.Message);
        Assert.Contains("top_p", e.Message);
    }

    [Fact]
    public void A_missing_profile_file_is_a_clear_error()
    {
        var e = Assert.Throws<FileNotFoundException>(() => PromptProfile.Load("/nonexistent/profile.json"));
        Assert.Contains("/nonexistent/profile.json", e.Message);
    }

    [Theory]
    [InlineData("\"chat\":null,\"sentiment\":{\"labels\":[\"a\",\"b\"]}", "chat")]
    [InlineData("\"chat\":{\"stop\":null},\"sentiment\":{\"labels\":null}", "chat.stop, sentiment.labels")]
    [InlineData("\"chat\":{\"stop\":[\"x\",null]},\"sentiment\":{\"labels\":[\"a\",\"b\"]}", "an entry of chat.stop")]
    [InlineData("\"chat\":{\"history\":null},\"sentiment\":{\"labels\":[\"a\",\"b\"],\"user_template\":null}", "chat.history, sentiment.user_template")]
    [InlineData("\"chat\":{},\"sentiment\":{\"labels\":[\"a\",\"b\"]},\"template\":{\"user\":null}", "template.user")]
    public void A_profile_with_nulls_is_refused_naming_them_not_stored_to_break_every_request(string fields, string named)
    {
        // As a release's profile arrives in qwen.ctl.release, and as a profile file is read.
        var json = "{\"version\":\"v9\"," + fields + "}";
        foreach (var profile in new[] { JsonSerializer.Deserialize(json, QwenJsonContext.Default.PromptProfile)!, JsonSerializer.Deserialize(json, ProfileJsonContext.Default.PromptProfile)! })
        {
            var e = Assert.Throws<InvalidOperationException>(() => profile.Validate("release r9"));
            Assert.True(e.Message.Contains($"{named} must not be null", StringComparison.Ordinal), e.Message);
        }
    }

    [Theory]
    [InlineData("v2\u2013warm")]
    [InlineData("v2-\u4e2d\u6587")]
    [InlineData("v2 warm")]
    [InlineData("v2\nX-Injected: 1")]
    public void A_profile_version_that_cannot_go_in_a_header_is_refused(string version)
    {
        // Every answer names its profile in X-Qwen-Profile: a version Kestrel cannot write there would turn each into a 500.
        var json = "{\"version\":" + JsonSerializer.Serialize(version) + ",\"chat\":{},\"sentiment\":{\"labels\":[\"positive\",\"negative\"]}}";
        var profile = JsonSerializer.Deserialize(json, QwenJsonContext.Default.PromptProfile)!;
        var e = Assert.Throws<InvalidOperationException>(() => profile.Validate("release r9"));
        Assert.Contains("visible ASCII", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_profile_that_leaves_fields_out_gets_their_documented_defaults_not_zeros_and_nulls()
    {
        var json = "{\"version\":\"v9\",\"chat\":{},\"sentiment\":{\"labels\":[\"positive\",\"negative\"]}}";
        var defaults = new ChatProfile();
        foreach (var profile in new[] { JsonSerializer.Deserialize(json, QwenJsonContext.Default.PromptProfile)!, JsonSerializer.Deserialize(json, ProfileJsonContext.Default.PromptProfile)! })
        {
            profile.Validate("minimal");
            Assert.Equal((0.7, 0.9, 256), (profile.Chat.Temperature, profile.Chat.TopP, profile.Chat.MaxTokens));
            Assert.Equal(defaults.Stop, profile.Chat.Stop);
            Assert.Equal(new HistoryPolicy(), profile.Chat.History);
            Assert.Equal(new ChatTemplateSpec(), profile.Template);
            Assert.Equal("{input}", profile.Sentiment.UserTemplate);
            Assert.Equal("", profile.Description);
        }
        // A request a client of its own puts on NATS without sampling gets the default sampling, not null.
        var request = JsonSerializer.Deserialize("{\"id\":\"x\",\"task\":\"chat\",\"reply_to\":\"r\"}", QwenJsonContext.Default.InferRequest)!;
        Assert.Equal(new SamplingParams(), request.Sampling);
    }
}
