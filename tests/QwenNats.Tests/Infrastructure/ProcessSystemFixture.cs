using NATS.Client.Core;

namespace QwenNats.Tests.Infrastructure;

/// <summary>
/// The system as separate processes (ingress, a blue worker, the promoter) on one nats-server, with API
/// keys and a console operator token configured: for security and hostile-input tests that watch the
/// processes themselves (exit, memory, what they log).
/// </summary>
public sealed class ProcessSystemFixture : IAsyncLifetime
{
    /// <summary>Keys are made-up test secrets; the logs must never show them.</summary>
    public const string KeyLimited = "test-key-limited-7c1d9e";
    public const string KeyBulk = "test-key-bulk-4f2a8b";
    public const string KeyWebSocket = "test-key-ws-9b3e51";
    public const string OperatorToken = "test-operator-token-2d7f60";

    public NatsServer Nats { get; private set; } = null!;
    public ServiceProcess Ingress { get; private set; } = null!;
    public ServiceProcess Worker { get; private set; } = null!;
    public ServiceProcess Promoter { get; private set; } = null!;
    public Uri Base { get; private set; } = null!;
    public NatsConnection Operator { get; private set; } = null!;

    public IEnumerable<ServiceProcess> Processes => [Ingress, Worker, Promoter];

    public HttpClient Client(string? key = KeyBulk)
    {
        var http = new HttpClient(new SocketsHttpHandler { UseCookies = false, MaxConnectionsPerServer = 64 }) { BaseAddress = Base, Timeout = TimeSpan.FromSeconds(60) };
        if (key is not null) http.DefaultRequestHeaders.Authorization = new("Bearer", key);
        return http;
    }

    public async Task InitializeAsync()
    {
        Nats = await NatsServer.StartAsync();
        var promoter = RolloutFixture.PromoterSettings(Nats.Url);
        promoter["Promoter:Automatic"] = "false";
        Promoter = ServiceProcess.Start("promoter", "QwenNats.Promoter", promoter);
        Worker = ServiceProcess.Start("worker", "QwenNats.Worker", new Dictionary<string, string?>
        {
            ["Nats:Url"] = Nats.Url, ["Logging:LogLevel:Default"] = "Debug", ["Logging:LogLevel:LLama"] = "Warning", ["Logging:LogLevel:NATS"] = "Warning",
            ["Worker:Colour"] = "blue", ["Worker:WorkerId"] = "blue-p1", ["Worker:ModelPath"] = Paths.Model, ["Worker:ProfilePath"] = Paths.Profile("v1"),
            ["Worker:Slots"] = "2", ["Worker:ContextSize"] = "512", ["Worker:Threads"] = "1", ["Worker:HeartbeatInterval"] = "00:00:00.250",
            ["Topology:Storage"] = "memory",
        });
        var port = ServiceProcess.FreePort();
        Base = new Uri($"http://127.0.0.1:{port}");
        Ingress = ServiceProcess.Start("ingress", "QwenNats.Ingress", new Dictionary<string, string?>
        {
            ["urls"] = Base.ToString().TrimEnd('/'), ["Nats:Url"] = Nats.Url,
            ["Logging:LogLevel:Default"] = "Debug", ["Logging:LogLevel:Microsoft.AspNetCore"] = "Information", ["Logging:LogLevel:NATS"] = "Warning",
            ["Topology:Storage"] = "memory", ["Ingress:WorkerStaleAfter"] = "00:00:10", ["Ingress:RequestTimeout"] = "00:00:20",
            ["Console:OperatorToken"] = OperatorToken,
            ["Security:ApiKeys:0:Name"] = "limited", ["Security:ApiKeys:0:Key"] = KeyLimited,
            ["Security:ApiKeys:0:RequestsPerMinute"] = "1", ["Security:ApiKeys:0:Burst"] = "3",
            ["Security:ApiKeys:1:Name"] = "bulk", ["Security:ApiKeys:1:KeySha256"] = QwenNats.Ingress.Security.ApiKeys.Hash(KeyBulk),
            ["Security:ApiKeys:1:RequestsPerMinute"] = "6000000", ["Security:ApiKeys:1:Burst"] = "100000",
            ["Security:ApiKeys:2:Name"] = "websocket", ["Security:ApiKeys:2:Key"] = KeyWebSocket,
            ["Security:ApiKeys:2:RequestsPerMinute"] = "1", ["Security:ApiKeys:2:Burst"] = "2",
        });
        Operator = await Ctl.ConnectAsync(Nats);
        await Ctl.WaitForLeaderAsync(Operator, TimeSpan.FromSeconds(60));
        using var http = Client();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        while (true)
        {
            try
            {
                await QwenSystem.WaitForWorkersAsync(http, "blue", 1, TimeSpan.FromSeconds(90));
                break;
            }
            catch (HttpRequestException) when (!cts.IsCancellationRequested)
            {
                if (Ingress.HasExited) throw new InvalidOperationException("the ingress exited: " + string.Join('\n', Ingress.Output.TakeLast(20)));
                await Task.Delay(250, cts.Token);
            }
        }
    }

    public async Task DisposeAsync()
    {
        if (Operator is not null) await Operator.DisposeAsync();
        foreach (var p in new[] { Ingress, Worker, Promoter })
            if (p is not null) await p.DisposeAsync();
        if (Nats is not null) await Nats.DisposeAsync();
    }
}

[CollectionDefinition(Name)]
public sealed class ProcessSystemCollection : ICollectionFixture<ProcessSystemFixture>
{
    public const string Name = "processes";
}
