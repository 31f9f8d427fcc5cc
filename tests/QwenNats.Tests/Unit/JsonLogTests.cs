using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;
using QwenNats.ServiceDefaults;

namespace QwenNats.Tests.Unit;

/// <summary>With <c>Logging:Format=json</c> every service's lines carry service, colour (workers), instance and host as fields.</summary>
public sealed class JsonLogTests
{
    private static Action<IConfigurationBuilder> Settings(params (string Key, string Value)[] extra) => c => c.AddInMemoryCollection(
        new Dictionary<string, string?>(extra.Select(e => KeyValuePair.Create(e.Key, (string?)e.Value))) { ["Logging:Format"] = "json", ["Nats:Url"] = "nats://127.0.0.1:1" });

    /// <summary>One line written through the formatter the host configured, with a request scope as the ingress and workers open one.</summary>
    private static JsonElement LogLine(IServiceProvider services)
    {
        Assert.Equal(QwenJsonConsoleFormatter.FormatterName, services.GetRequiredService<IOptionsMonitor<ConsoleLoggerOptions>>().CurrentValue.FormatterName);
        var formatter = services.GetServices<ConsoleFormatter>().Single(f => f.Name == QwenJsonConsoleFormatter.FormatterName);
        var scopes = new LoggerExternalScopeProvider();
        using var scope = scopes.Push(new Dictionary<string, object?> { ["request_id"] = "r-1", ["session_id"] = "s-1", ["service"] = "spoofed" });
        var state = new List<KeyValuePair<string, object?>> { new("Task", "chat"), new("Ms", 12.5), new("Tokens", 7), new("{OriginalFormat}", "Served {Task} in {Ms} ms, {Tokens} tokens") };
        var entry = new LogEntry<IReadOnlyList<KeyValuePair<string, object?>>>(LogLevel.Information, "QwenNats.Test", new EventId(1290, "Served"), state, null,
            (_, _) => "Served chat in 12.5 ms, 7 tokens");
        using var output = new StringWriter();
        formatter.Write(entry, scopes, output);
        var text = output.ToString();
        Assert.Single(text.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private static void AssertCommonFields(JsonElement line, string service)
    {
        Assert.Equal(service, line.GetProperty("service").GetString());
        Assert.Equal(Environment.MachineName, line.GetProperty("host").GetString());
        Assert.Equal("information", line.GetProperty("level").GetString());
        Assert.Equal("QwenNats.Test", line.GetProperty("category").GetString());
        Assert.Equal(1290, line.GetProperty("event_id").GetInt32());
        Assert.Equal("Served chat in 12.5 ms, 7 tokens", line.GetProperty("message").GetString());
        Assert.Equal("r-1", line.GetProperty("request_id").GetString());
        Assert.Equal("s-1", line.GetProperty("session_id").GetString());
        Assert.Equal(7, line.GetProperty("state").GetProperty("Tokens").GetInt32());
        Assert.Equal(12.5, line.GetProperty("state").GetProperty("Ms").GetDouble());
        Assert.True(DateTimeOffset.TryParse(line.GetProperty("time").GetString(), System.Globalization.CultureInfo.InvariantCulture, out _));
    }

    [Fact]
    public void A_worker_line_carries_service_colour_and_its_worker_id()
    {
        using var host = Worker.WorkerHost.Build([], Settings(("Worker:Colour", "green"), ("Worker:WorkerId", "green-7")));
        var line = LogLine(host.Services);
        AssertCommonFields(line, "worker");
        Assert.Equal("green", line.GetProperty("colour").GetString());
        Assert.Equal("green-7", line.GetProperty("instance").GetString());
    }

    [Fact]
    public void A_worker_without_a_fixed_id_logs_its_instance_id()
    {
        using var host = Worker.WorkerHost.Build([], Settings(("Worker:Colour", "blue")));
        var line = LogLine(host.Services);
        Assert.Equal("blue", line.GetProperty("colour").GetString());
        Assert.Equal(host.Services.GetRequiredService<Messaging.ServiceIdentity>().InstanceId, line.GetProperty("instance").GetString());
        Assert.StartsWith("worker-", line.GetProperty("instance").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_ingress_line_carries_service_and_instance_and_no_colour()
    {
        await using var app = Ingress.IngressApp.Build(["--urls", "http://127.0.0.1:0"], Settings(("Ingress:InstanceId", "edge-1")));
        var line = LogLine(app.Services);
        AssertCommonFields(line, "ingress");
        Assert.Equal("edge-1", line.GetProperty("instance").GetString());
        Assert.False(line.TryGetProperty("colour", out _));
    }

    [Fact]
    public void Judge_and_promoter_lines_carry_service_and_instance()
    {
        using var judge = Judge.JudgeHost.Build([], Settings());
        using var promoter = Promoter.PromoterHost.Build([], Settings());
        foreach (var (host, service) in new[] { (judge, "judge"), (promoter, "promoter") })
        {
            var line = LogLine(host.Services);
            AssertCommonFields(line, service);
            Assert.False(line.TryGetProperty("colour", out _));
            Assert.Equal(host.Services.GetRequiredService<Messaging.ServiceIdentity>().InstanceId, line.GetProperty("instance").GetString());
        }
    }

    [Fact]
    public void An_unknown_log_format_is_refused_by_name()
    {
        var error = Assert.Throws<InvalidOperationException>(() => Judge.JudgeHost.Build([], c => c.AddInMemoryCollection(new Dictionary<string, string?> { ["Logging:Format"] = "xml" })));
        Assert.Contains("Logging:Format 'xml'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_exception_is_one_field_of_the_same_line()
    {
        var formatter = new QwenJsonConsoleFormatter(new StaticOptions(new QwenJsonConsoleFormatterOptions { Service = "judge", Instance = "j-1" }));
        var entry = new LogEntry<string>(LogLevel.Error, "QwenNats.Test", new EventId(7), "x", new InvalidOperationException("boom\nsecond line"), (s, _) => "failed");
        using var output = new StringWriter();
        formatter.Write(entry, new LoggerExternalScopeProvider(), output);
        Assert.Single(output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries));
        var line = JsonDocument.Parse(output.ToString()).RootElement;
        Assert.Equal("error", line.GetProperty("level").GetString());
        Assert.Contains("boom", line.GetProperty("exception").GetString(), StringComparison.Ordinal);
        Assert.False(line.TryGetProperty("state", out _));
    }

    private sealed class StaticOptions(QwenJsonConsoleFormatterOptions value) : IOptionsMonitor<QwenJsonConsoleFormatterOptions>
    {
        public QwenJsonConsoleFormatterOptions CurrentValue => value;
        public QwenJsonConsoleFormatterOptions Get(string? name) => value;
        public IDisposable? OnChange(Action<QwenJsonConsoleFormatterOptions, string?> listener) => null;
    }
}
