using QwenNats.Worker;

namespace QwenNats.Tests.Unit;

public sealed class StopMatcherTests
{
    [Fact]
    public void Text_without_stops_passes_through()
    {
        var m = new StopMatcher(["<|im_end|>"]);
        Assert.Equal("Hello", m.Push("Hello"));
        Assert.Equal(" world", m.Push(" world"));
        Assert.False(m.Stopped);
        Assert.Equal("", m.Flush());
    }

    [Fact]
    public void A_stop_split_across_pushes_is_never_emitted()
    {
        var m = new StopMatcher(["<|im_end|>"]);
        var emitted = m.Push("Bye<|im") + m.Push("_en") + m.Push("d|> trailing");
        Assert.Equal("Bye", emitted);
        Assert.True(m.Stopped);
        Assert.Equal("", m.Push("more"));
    }

    [Fact]
    public void A_held_back_prefix_that_turns_out_not_to_be_a_stop_is_released()
    {
        var m = new StopMatcher(["STOP"]);
        Assert.Equal("a", m.Push("aST"));
        Assert.Equal("STx", m.Push("x"));
        Assert.Equal("S", m.Push("S") + m.Flush());
    }

    [Fact]
    public void The_earliest_of_several_stops_wins()
    {
        var m = new StopMatcher(["END", "\n\n"]);
        Assert.Equal("one", m.Push("one\n\ntwo END"));
        Assert.True(m.Stopped);
    }

    [Fact]
    public void Empty_stop_strings_are_ignored()
    {
        var m = new StopMatcher(["", "x"]);
        Assert.Equal("ab", m.Push("ab"));
        Assert.Equal("", m.Push("x"));
        Assert.True(m.Stopped);
    }
}
