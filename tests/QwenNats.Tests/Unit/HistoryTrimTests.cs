using QwenNats.Ingress.Endpoints;
using QwenNats.Messaging;
using QwenNats.Worker;

namespace QwenNats.Tests.Unit;

public sealed class HistoryTrimTests
{
    private static ChatMessage M(string role, string content) => new(role, content);

    [Fact]
    public void The_oldest_turn_goes_first_keeping_system_prompts_and_the_newest_message()
    {
        IReadOnlyList<ChatMessage> chat = [M("system", "S"), M("user", "u1"), M("assistant", "a1"), M("user", "u2"), M("assistant", "a2"), M("user", "u3")];
        var once = LlamaEngine.Trim(chat)!;
        Assert.Equal(["S", "u2", "a2", "u3"], once.Select(m => m.Content));
        var twice = LlamaEngine.Trim(once)!;
        Assert.Equal(["S", "u3"], twice.Select(m => m.Content));
        Assert.Null(LlamaEngine.Trim(twice));
        Assert.Null(LlamaEngine.Trim([M("user", "only")]));
    }

    [Fact]
    public void A_history_that_starts_with_the_assistant_loses_it_with_the_first_turn()
    {
        IReadOnlyList<ChatMessage> chat = [M("assistant", "greeting"), M("user", "u1"), M("assistant", "a1"), M("user", "u2")];
        Assert.Equal(["u1", "a1", "u2"], LlamaEngine.Trim(chat)!.Select(m => m.Content));
    }

    [Fact]
    public void A_websocket_history_keeps_whole_turns_under_the_character_limit()
    {
        var history = new List<ChatMessage> { M("user", "aaaa"), M("assistant", "bbbb"), M("user", "cccc"), M("assistant", "dddd") };
        Assert.Equal(0, WebSocketChat.TrimHistory(history, 16));
        Assert.Equal(4, history.Count);
        Assert.Equal(2, WebSocketChat.TrimHistory(history, 10)); // 16 > 10: the first turn goes, whole
        Assert.Equal(["cccc", "dddd"], history.Select(m => m.Content));
        Assert.Equal(2, WebSocketChat.TrimHistory(history, 0));
        Assert.Empty(history);
    }

    [Theory]
    [InlineData("keep_all")]
    [InlineData("")]
    public void A_profile_with_an_unknown_overflow_policy_is_refused(string overflow)
    {
        var profile = new PromptProfile
        {
            Version = "t", Chat = new ChatProfile { History = new HistoryPolicy { Overflow = overflow } },
            Sentiment = new SentimentProfile { Labels = ["a", "b"] },
        };
        var e = Assert.Throws<InvalidOperationException>(() => profile.Validate("test"));
        Assert.Contains("chat.history.overflow", e.Message);
    }
}
