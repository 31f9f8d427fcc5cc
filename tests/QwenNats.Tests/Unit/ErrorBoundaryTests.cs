using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging.Abstractions;
using NATS.Client.Core;
using QwenNats.Ingress;

namespace QwenNats.Tests.Unit;

public sealed class ErrorBoundaryTests
{
    private static async Task<(int Status, string Code, string Type, string? RetryAfter)> Run(Exception thrown)
    {
        var http = new DefaultHttpContext();
        http.Request.Method = "POST";
        http.Request.Path = "/v1/chat/completions";
        http.Response.Body = new MemoryStream();
        var boundary = new ErrorBoundary(_ => throw thrown, NullLogger<ErrorBoundary>.Instance);
        await boundary.InvokeAsync(http);
        http.Response.Body.Position = 0;
        using var doc = await JsonDocument.ParseAsync(http.Response.Body);
        var error = doc.RootElement.GetProperty("error");
        var retryAfter = http.Response.Headers.RetryAfter.ToString();
        return (http.Response.StatusCode, error.GetProperty("code").GetString()!, error.GetProperty("type").GetString()!, retryAfter.Length == 0 ? null : retryAfter);
    }

    [Fact]
    public async Task An_internal_failure_is_a_500_internal_error_not_a_502()
    {
        var (status, code, type, _) = await Run(new InvalidOperationException("a bug"));
        Assert.Equal(500, status);
        Assert.Equal("internal_error", code);
        Assert.Equal("server_error", type);
    }

    [Fact]
    public async Task A_nats_failure_is_a_503_bus_unavailable_with_retry_after()
    {
        var (status, code, _, retryAfter) = await Run(new NatsNoRespondersException());
        Assert.Equal(503, status);
        Assert.Equal("bus_unavailable", code);
        Assert.NotNull(retryAfter);
    }

    [Fact]
    public async Task A_bad_request_escaping_a_handler_stays_a_4xx()
    {
        var (status, code, _, _) = await Run(new BadHttpRequestException("bad framing", 400));
        Assert.Equal(400, status);
        Assert.Equal("invalid_request", code);
    }
}
