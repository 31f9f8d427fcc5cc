using System.Diagnostics;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>An ingress stops gracefully without waiting for its host's shutdown timeout because of a long-lived stream.</summary>
public sealed class IngressShutdownTests
{
    [Fact]
    public async Task An_open_console_stream_does_not_hold_the_ingress_s_stop()
    {
        await using var server = await NatsServer.StartAsync();
        await using var system = new QwenSystem(server);
        var (app, http) = await system.StartIngressAsync(new() { ["Console:OperatorToken"] = "" });
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var stream = await http.GetStreamAsync("/api/console/stream", cts.Token);
        using var reader = new StreamReader(stream);
        Assert.StartsWith(": console feed", await reader.ReadLineAsync(cts.Token));

        // The host waits up to its shutdown timeout (30 s) for requests in flight; the console's feed is not one to wait for.
        var clock = Stopwatch.StartNew();
        await app.StopAsync(cts.Token);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"the ingress took {clock.Elapsed} to stop with a console open");
    }
}
