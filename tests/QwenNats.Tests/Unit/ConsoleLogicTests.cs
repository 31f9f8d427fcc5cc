using System.Text.Json;
using QwenNats.Ingress.OperatorConsole;

namespace QwenNats.Tests.Unit;

public sealed class ConsoleLogicTests
{
    [Fact]
    public void Recent_latency_keeps_only_the_window_and_splits_by_colour()
    {
        var recent = new RecentLatency(TimeSpan.FromSeconds(10));
        for (var i = 1; i <= 20; i++) recent.Record(1_000, "blue", i * 10, ok: true);   // old: falls out of the window
        for (var i = 1; i <= 100; i++) recent.Record(20_000, "blue", i, ok: true);
        recent.Record(20_000, "green", 500, ok: true);
        recent.Record(20_000, "green", 9_999, ok: false);

        var snapshot = recent.Snapshot(25_000);

        Assert.Equal(["blue", "green"], snapshot.Select(s => s.Colour));
        var blue = snapshot[0];
        Assert.Equal((100, 0, 50.0, 95.0), (blue.Requests, blue.Errors, blue.P50Ms, blue.P95Ms));
        var green = snapshot[1];
        // A failed request counts, but its time does not enter the percentiles.
        Assert.Equal((2, 1, 500.0, 500.0), (green.Requests, green.Errors, green.P50Ms, green.P95Ms));
        Assert.Empty(recent.Snapshot(40_000));
    }

    [Fact]
    public void Recent_latency_is_bounded()
    {
        var recent = new RecentLatency(TimeSpan.FromMinutes(1), capacity: 50);
        for (var i = 0; i < 1_000; i++) recent.Record(1_000, "blue", i, ok: true);
        var blue = Assert.Single(recent.Snapshot(1_000));
        Assert.Equal(50, blue.Requests);
        Assert.Equal(974.0, blue.P50Ms);
    }

    [Theory]
    [InlineData("start", "{\"reason\":\"ship v2\",\"candidate\":\"green\"}", null)]
    [InlineData("promote", "{\"reason\":\"ok\",\"full\":true}", null)]
    [InlineData("set-weight", "{\"reason\":\"more\",\"weight\":30}", null)]
    [InlineData("start", "{\"candidate\":\"green\"}", "reason_required")]
    [InlineData("rollback", "{\"reason\":\"   \"}", "reason_required")]
    [InlineData("rollback", "{\"reason\":\"line\\nbreak\"}", "invalid_request")]
    [InlineData("rollback", "[1]", "invalid_request")]
    [InlineData("start", "{\"reason\":\"x\",\"candidate\":7}", "invalid_request")]
    [InlineData("set-weight", "{\"reason\":\"x\"}", "invalid_request")]
    [InlineData("set-weight", "{\"reason\":\"x\",\"weight\":\"ten\"}", "invalid_request")]
    public void Console_actions_need_a_reason_and_well_typed_fields(string verb, string body, string? code)
    {
        using var doc = JsonDocument.Parse(body);
        var ok = ConsoleEndpoints.TryParseAction(doc.RootElement, verb, new ConsoleOptions { Actor = "console" }, out var request, out var error);
        Assert.Equal(code is null, ok);
        if (ok)
        {
            Assert.Equal("console", request.Actor);
            Assert.False(string.IsNullOrWhiteSpace(request.Reason));
        }
        else
            Assert.Equal(code, error!.Code);
    }

    [Fact]
    public void A_reason_longer_than_the_limit_is_refused()
    {
        using var doc = JsonDocument.Parse(JsonSerializer.Serialize(new { reason = new string('a', 501) }));
        Assert.False(ConsoleEndpoints.TryParseAction(doc.RootElement, "pause", new ConsoleOptions { MaxReasonChars = 500 }, out _, out var error));
        Assert.Equal("reason", error!.Param);
    }

    [Fact]
    public void Tokens_compare_by_value()
    {
        Assert.True(ConsoleEndpoints.SameSecret("s3cret", "s3cret"));
        Assert.False(ConsoleEndpoints.SameSecret("s3cret", "s3cre"));
        Assert.False(ConsoleEndpoints.SameSecret("", "s3cret"));
    }
}
