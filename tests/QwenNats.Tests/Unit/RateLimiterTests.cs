using System.Net;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;
using QwenNats.Ingress.Security;

namespace QwenNats.Tests.Unit;

public sealed class RateLimiterTests
{
    private static ApiKeys Keys(int perMinute, int burst, int cap) => new(Options.Create(new SecurityOptions
    {
        AnonymousRequestsPerMinute = perMinute,
        AnonymousBurst = burst,
        MaxTrackedLimiters = cap,
    }), Options.Create(new QwenNats.Ingress.OperatorConsole.ConsoleOptions()));

    private static Caller From(ApiKeys keys, int address)
    {
        var http = new DefaultHttpContext();
        http.Connection.RemoteIpAddress = new IPAddress(BitConverter.GetBytes(0x0A000000 + address));
        var (caller, error) = keys.Authenticate(http);
        Assert.Null(error);
        return caller!;
    }

    [Fact]
    public void Addresses_seen_once_do_not_accumulate_beyond_the_cap()
    {
        using var keys = Keys(perMinute: 60, burst: 5, cap: 16);
        for (var address = 1; address <= 1000; address++)
            From(keys, address);
        Assert.InRange(keys.TrackedLimiters, 1, 17);
    }

    [Fact]
    public void An_address_being_limited_stays_limited_while_others_come_and_go()
    {
        using var keys = Keys(perMinute: 1, burst: 1, cap: 4);
        var limited = From(keys, 1);
        Assert.True(ApiKeys.Take(limited).Allowed);
        Assert.False(ApiKeys.Take(limited).Allowed);
        for (var address = 2; address <= 100; address++)
            From(keys, address);
        Assert.False(ApiKeys.Take(From(keys, 1)).Allowed);
        Assert.False(ApiKeys.Take(limited).Allowed);
    }
}
