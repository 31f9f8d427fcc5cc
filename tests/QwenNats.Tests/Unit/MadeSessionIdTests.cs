using QwenNats.Ingress.Routing;

namespace QwenNats.Tests.Unit;

public sealed class MadeSessionIdTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);
    private static readonly byte[] Random12 = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xff];

    [Fact]
    public void A_made_up_id_round_trips_its_version_and_time_in_whole_seconds()
    {
        var id = MadeSessionId.Format(42, Now.AddMilliseconds(750), Random12);
        Assert.Equal($"q1-42-{Now.ToUnixTimeSeconds()}-00112233445566778899aaff", id);
        Assert.True(MadeSessionId.TryParse(id, out var made));
        Assert.Equal(new MadeSessionId(42, Now), made);

        var fresh = MadeSessionId.New(7, Now);
        Assert.StartsWith("q1-7-", fresh, StringComparison.Ordinal);
        Assert.True(MadeSessionId.TryParse(fresh, out var parsed));
        Assert.Equal(new MadeSessionId(7, Now), parsed);
        Assert.NotEqual(fresh, MadeSessionId.New(7, Now));
        // Within the ingress's limit on session ids, and safe in a cookie and a header.
        var longest = MadeSessionId.Format(long.MaxValue, DateTimeOffset.MaxValue, Random12);
        Assert.True(longest.Length <= 128, longest);
        Assert.True(MadeSessionId.TryParse(longest, out var max));
        Assert.Equal(long.MaxValue, max.Version);
        Assert.All(fresh, c => Assert.True(char.IsAsciiLetterOrDigit(c) || c == '-'));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("q1-")]
    [InlineData("my-session")]
    [InlineData("load-4-0")]
    [InlineData("0123456789abcdef0123456789abcdef")] // the GUIDs ingresses made up before
    [InlineData("q1-5-1764072000")]
    [InlineData("q1-5-1764072000-00112233445566778899aaf")] // 23 hex
    [InlineData("q1-5-1764072000-00112233445566778899aaff0")] // 25 hex
    [InlineData("q1-5-1764072000-00112233445566778899AAFF")] // upper case: not as written
    [InlineData("q1-5-1764072000-00112233445566778899aafg")]
    [InlineData("q1-5-1764072000-00112233445566778899aaff-x")]
    [InlineData("q2-5-1764072000-00112233445566778899aaff")]
    [InlineData("Q1-5-1764072000-00112233445566778899aaff")]
    [InlineData("q1--5-1764072000-00112233445566778899aaff")]
    [InlineData("q1-+5-1764072000-00112233445566778899aaff")]
    [InlineData("q1-05-1764072000-00112233445566778899aaff")] // leading zero
    [InlineData("q1- 5-1764072000-00112233445566778899aaff")]
    [InlineData("q1-5-1764072000.5-00112233445566778899aaff")]
    [InlineData("q1-٥-1764072000-00112233445566778899aaff")] // a non-ASCII digit
    [InlineData("q1-9223372036854775808-1764072000-00112233445566778899aaff")] // long.MaxValue + 1
    [InlineData("q1-99999999999999999999-1764072000-00112233445566778899aaff")]
    [InlineData("q1-5-253402300800-00112233445566778899aaff")] // after 9999-12-31
    [InlineData("q1-5-9223372036854775807-00112233445566778899aaff")]
    public void Anything_not_in_the_format_is_not_a_made_up_id(string? id)
    {
        Assert.False(MadeSessionId.TryParse(id, out var made));
        Assert.Equal(default, made);
    }

    [Fact]
    public void An_id_carries_a_pin_only_while_younger_than_the_idle_ttl_and_not_from_the_future()
    {
        var idle = TimeSpan.FromMinutes(30);
        var skew = TimeSpan.FromMinutes(1);
        var made = new MadeSessionId(1, Now);
        Assert.True(made.IsFresh(Now, idle, skew));
        Assert.True(made.IsFresh(Now + idle - TimeSpan.FromSeconds(1), idle, skew));
        Assert.False(made.IsFresh(Now + idle, idle, skew));
        Assert.False(made.IsFresh(Now.AddDays(3), idle, skew));
        // Made by an ingress whose clock runs ahead a little: fresh; further ahead, or far in the future: not.
        Assert.True(made.IsFresh(Now - skew, idle, skew));
        Assert.False(made.IsFresh(Now - skew - TimeSpan.FromSeconds(1), idle, skew));
        Assert.False(new MadeSessionId(1, DateTimeOffset.MaxValue).IsFresh(Now, idle, skew));
        // A bucket with no max age: no expiry (no overflow either).
        Assert.True(new MadeSessionId(1, DateTimeOffset.UnixEpoch).IsFresh(Now, TimeSpan.MaxValue, skew));
    }

    [Fact]
    public void Formatting_refuses_what_it_cannot_write()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => MadeSessionId.Format(-1, Now, Random12));
        Assert.Throws<ArgumentOutOfRangeException>(() => MadeSessionId.Format(1, DateTimeOffset.UnixEpoch.AddSeconds(-1), Random12));
        Assert.Throws<ArgumentException>(() => MadeSessionId.Format(1, Now, Random12[..11]));
    }
}
