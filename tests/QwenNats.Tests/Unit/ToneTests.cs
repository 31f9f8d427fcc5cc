using QwenNats.Judge;
using QwenNats.Messaging;

namespace QwenNats.Tests.Unit;

public sealed class ToneTests
{
    [Theory]
    [InlineData("That is a stupid question. Figure it out yourself.")]
    [InlineData("Ugh, who cares about the weather.")]
    [InlineData("这种无聊的问题，关我什么事。")]
    [InlineData("闭嘴，自己去查。")]
    public void Insults_and_dismissal_are_rude_in_English_and_Chinese(string text) => Assert.True(Tone.IsRude(text));

    [Theory]
    [InlineData("She laughed and laughed at the silly dog.")] // "ugh" only as a whole word
    [InlineData("The dumbbell was heavy, so Tom asked for help.")]
    [InlineData("今天天气很好，我们去公园散步吧。")]
    [InlineData("滚烫的汤要慢慢喝。")] // 滚 in an ordinary word
    public void Ordinary_text_is_not_rude(string text) => Assert.False(Tone.IsRude(text));

    [Fact]
    public void Capitals_or_a_run_of_exclamation_marks_are_shouting()
    {
        Assert.True(Tone.IsShouting("I TOLD YOU THE ANSWER ALREADY"));
        Assert.True(Tone.IsShouting("太好了！！！真的太好了！"));
        Assert.False(Tone.IsShouting("NASA launched a rocket, and the USA watched."));
        Assert.False(Tone.IsShouting("Hello! How are you?"));
    }

    [Fact]
    public void Chinese_form_of_address_and_emoji_are_read()
    {
        Assert.Equal("formal", Tone.Register("请问您需要什么帮助？"));
        Assert.Equal("informal", Tone.Register("你需要什么帮助？"));
        Assert.Null(Tone.Register("Hello there."));
        Assert.True(Tone.HasEmoji("Sure 😀"));
        Assert.True(Tone.HasEmoji("好的 ^_^"));
        Assert.False(Tone.HasEmoji("Sure, here it is."));
    }

    [Theory]
    [InlineData("The weather is mild today.", "Ugh. The weather is mild today, who cares.", "rude")]
    [InlineData("The weather is mild today.", "THE WEATHER IS MILD TODAY.", "shouting")]
    [InlineData("您好，请问您想了解什么？", "你好，你想了解什么？", "address formal to informal")]
    [InlineData("The weather is mild today.", "The weather is mild today 😀", "emoji")]
    public void A_changed_tone_is_named(string live, string candidate, string change) => Assert.Equal(change, Tone.Change(live, candidate));

    [Theory]
    [InlineData("The weather is mild today.", "It is a mild day, good for a walk.")]
    [InlineData("WOW!!! Great news!", "WOW!!! That is great!")] // live shouts too: the user's excitement, mirrored by both
    [InlineData("你好，你想了解什么？", "你好！你想知道什么？")]
    [InlineData("", "")]
    public void The_same_tone_in_other_words_is_no_change(string live, string candidate) => Assert.Null(Tone.Change(live, candidate));

    [Fact]
    public void A_candidate_that_turned_rude_fails_chat_defects_and_the_verdict_names_the_kind()
    {
        var policy = new RolloutPolicy { MinSamples = 20, MinStepDuration = TimeSpan.Zero, FalseAlarmRate = 0.001, MissRate = 0.05 };
        var card = new Scorecard { RolloutId = "r1" };
        ulong seq = 0;
        foreach (var i in Enumerable.Range(0, 30))
            card.Add(new ShadowSample
            {
                Id = $"c{i}", RolloutId = "r1", Task = InferTasks.Chat, UserText = "What should I cook tonight?", At = DateTimeOffset.UnixEpoch,
                Live = new SampleSide { Colour = "blue", Text = "How about a simple pasta with tomatoes?", FinishReason = "stop", ComputeMs = 20, TotalMs = 200 },
                Candidate = new SampleSide { Colour = "green", Text = "Ugh, figure it out yourself. Pasta.", FinishReason = "stop", ComputeMs = 20, TotalMs = 200 },
            }, ++seq, policy);
        var v = Evaluator.Evaluate(card, policy, DateTimeOffset.UnixEpoch);
        Assert.Equal("fail", v.Outcome);
        var check = Assert.Single(v.Checks, c => c.Name == "chat_defects");
        Assert.Equal("fail", check.Decision);
        Assert.Contains("tone: rude", check.Detail);
    }
}
