using Microsoft.AspNetCore.Builder;

namespace QwenNats.Tests.Infrastructure;

/// <summary>
/// The shared system of the integration tests: one nats-server, two blue workers (profile v1),
/// one green worker (profile v2), one ingress whose colours also list 'red', a pool nobody runs.
/// </summary>
public sealed class SystemFixture : IAsyncLifetime
{
    public NatsServer Nats { get; private set; } = null!;
    public QwenSystem System { get; private set; } = null!;
    public HttpClient Http { get; private set; } = null!;
    public WebApplication Ingress { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Nats = await NatsServer.StartAsync();
        System = new QwenSystem(Nats);
        await System.StartWorkerAsync("blue", "v1", extra: new() { ["Worker:WorkerId"] = "blue-1" });
        await System.StartWorkerAsync("blue", "v1", extra: new() { ["Worker:WorkerId"] = "blue-2" });
        await System.StartWorkerAsync("green", "v2", extra: new() { ["Worker:WorkerId"] = "green-1" });
        (Ingress, Http) = await System.StartIngressAsync(new()
        {
            ["Topology:Colours:0"] = "blue",
            ["Topology:Colours:1"] = "green",
            ["Topology:Colours:2"] = "red",
            ["Ingress:MaxBodyBytes"] = "65536",
        });
        await QwenSystem.WaitForWorkersAsync(Http, "blue", 2);
        await QwenSystem.WaitForWorkersAsync(Http, "green", 1);
    }

    public async Task DisposeAsync()
    {
        Http?.Dispose();
        if (System is not null) await System.DisposeAsync();
        if (Nats is not null) await Nats.DisposeAsync();
    }
}

[CollectionDefinition(Name)]
public sealed class SystemCollection : ICollectionFixture<SystemFixture>
{
    public const string Name = "system";
}
