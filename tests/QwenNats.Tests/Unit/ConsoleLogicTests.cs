using System.Text.Json;
using QwenNats.Ingress.OperatorConsole;

namespace QwenNats.Tests.Unit;

public sealed class ConsoleLogicTests
{
    private static readonly string[] Colours = ["blue", "green"];

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
    [InlineData("deploy", "{\"reason\":\"ship r2\",\"colour\":\"green\",\"release\":\"r2\"}", null)]
    [InlineData("deploy", "{\"colour\":\"green\",\"release\":\"r2\"}", "reason_required")]
    [InlineData("deploy", "{\"reason\":\"x\",\"release\":\"r2\"}", "invalid_request")]
    [InlineData("deploy", "{\"reason\":\"x\",\"colour\":\"purple\",\"release\":\"r2\"}", "invalid_request")]
    [InlineData("deploy", "{\"reason\":\"x\",\"colour\":\"green\"}", "invalid_request")]
    [InlineData("deploy", "{\"reason\":\"x\",\"colour\":\"green\",\"release\":\"  \"}", "invalid_request")]
    [InlineData("deploy", "{\"reason\":\"x\",\"colour\":\"green\",\"release\":7}", "invalid_request")]
    public void Console_actions_need_a_reason_and_well_typed_fields(string verb, string body, string? code)
    {
        using var doc = JsonDocument.Parse(body);
        var ok = ConsoleEndpoints.TryParseAction(doc.RootElement, verb, new ConsoleOptions { Actor = "console" }, Colours, out var request, out var error);
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
        Assert.False(ConsoleEndpoints.TryParseAction(doc.RootElement, "pause", new ConsoleOptions { MaxReasonChars = 500 }, Colours, out _, out var error));
        Assert.Equal("reason", error!.Param);
    }

    [Theory]
    [InlineData("{\"reason\":\"x\",\"release\":\"r2\"}", "colour")]
    [InlineData("{\"reason\":\"x\",\"colour\":\"green\"}", "release")]
    public void A_deploy_names_the_missing_field(string body, string param)
    {
        using var doc = JsonDocument.Parse(body);
        Assert.False(ConsoleEndpoints.TryParseAction(doc.RootElement, "deploy", new ConsoleOptions(), Colours, out _, out var error));
        Assert.Equal(param, error!.Param);
        Assert.Contains(param, error.Message);
    }

    [Fact]
    public void A_deploy_carries_colour_release_reason_and_the_console_actor()
    {
        using var doc = JsonDocument.Parse(JsonSerializer.Serialize(new { reason = " ship it ", colour = "green", release = new string('r', 64) }));
        Assert.True(ConsoleEndpoints.TryParseAction(doc.RootElement, "deploy", new ConsoleOptions { Actor = "console" }, Colours, out var request, out _));
        Assert.Equal(("green", new string('r', 64), "ship it", "console"), (request.Colour, request.Release, request.Reason, request.Actor));
        using var tooLong = JsonDocument.Parse(JsonSerializer.Serialize(new { reason = "x", colour = "green", release = new string('r', 65) }));
        Assert.False(ConsoleEndpoints.TryParseAction(tooLong.RootElement, "deploy", new ConsoleOptions(), Colours, out _, out var error));
        Assert.Equal("release", error!.Param);
    }

    [Fact]
    public void Tokens_compare_by_value()
    {
        Assert.True(ConsoleEndpoints.SameSecret("s3cret", "s3cret"));
        Assert.False(ConsoleEndpoints.SameSecret("s3cret", "s3cre"));
        Assert.False(ConsoleEndpoints.SameSecret("", "s3cret"));
    }
}
