using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using QwenNats.Ingress;
using QwenNats.Worker;

namespace QwenNats.Tests.Infrastructure;

/// <summary>Real services started in-process against a real nats-server: workers (real LLamaSharp) and ingresses (real Kestrel).</summary>
public sealed class QwenSystem : IAsyncDisposable
{
    private readonly List<IHost> _workers = [];
    private readonly List<WebApplication> _ingresses = [];

    public QwenSystem(NatsServer nats) : this(nats.Url)
    {
    }

    /// <param name="natsUrl">One server's URL, or a cluster's (every node's, comma-separated).</param>
    public QwenSystem(string natsUrl) => NatsUrl = natsUrl;

    public string NatsUrl { get; }

    /// <summary>Common settings: fast heartbeats and a small context so tests stay quick.</summary>
    public Dictionary<string, string?> Base() => new()
    {
        ["Nats:Url"] = NatsUrl,
        ["Logging:LogLevel:Default"] = "Warning",
        ["Logging:LogLevel:LLama"] = "Error",
        ["Topology:Storage"] = "memory",
    };

    public async Task<IHost> StartWorkerAsync(string colour, string profile, int slots = 1, Dictionary<string, string?>? extra = null)
    {
        var host = await StartHostAsync(WorkerSettings(colour, slots, new()
        {
            ["Worker:ModelPath"] = Paths.Model,
            ["Worker:ProfilePath"] = Paths.Profile(profile),
        }, extra));
        // The model loads in the background once the host runs: the worker is returned when it serves, as a
        // started worker process would be awaited, so fixtures do not load several models at once.
        await host.Services.GetRequiredService<WorkerService>().WaitUntilServingAsync(new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token);
        return host;
    }

    /// <summary>A worker with no model: it waits for its colour's assigned release and follows every deploy.</summary>
    public Task<IHost> StartReleaseWorkerAsync(string colour, string workerId, string cacheDir, int slots = 2, Dictionary<string, string?>? extra = null) =>
        StartHostAsync(WorkerSettings(colour, slots, new()
        {
            ["Worker:WorkerId"] = workerId,
            ["Worker:ModelCacheDir"] = cacheDir,
        }, extra));

    /// <summary>Fast heartbeats, a small context and one thread, so tests stay quick.</summary>
    private Dictionary<string, string?> WorkerSettings(string colour, int slots, Dictionary<string, string?> own, Dictionary<string, string?>? extra)
    {
        var settings = Base();
        settings["Worker:Colour"] = colour;
        settings["Worker:Slots"] = slots.ToString(System.Globalization.CultureInfo.InvariantCulture);
        settings["Worker:ContextSize"] = "512";
        settings["Worker:Threads"] = "1";
        settings["Worker:HeartbeatInterval"] = "00:00:00.250";
        settings["Worker:FetchExpiry"] = "00:00:02";
        Merge(settings, own);
        Merge(settings, extra);
        return settings;
    }

    private async Task<IHost> StartHostAsync(Dictionary<string, string?> settings)
    {
        var host = WorkerHost.Build([], c => c.AddInMemoryCollection(settings));
        await host.StartAsync();
        _workers.Add(host);
        return host;
    }

    /// <summary>The operator token of test ingresses (unless a test sets its own or none): what <see cref="Api.Post"/>
    /// sends when a test chooses a colour, since only testers may.</summary>
    public const string OperatorToken = "test-operator-token-for-colour-choice";

    public async Task<(WebApplication App, HttpClient Http)> StartIngressAsync(Dictionary<string, string?>? extra = null)
    {
        var settings = Base();
        settings["urls"] = "http://127.0.0.1:0";
        settings["Console:OperatorToken"] = OperatorToken;
        // A worker is taken for dead after 40 missed heartbeats, not the 6 a loaded test machine can miss: tests about
        // noticing a dead worker (the drills) set their own, short window.
        settings["Ingress:WorkerStaleAfter"] = "00:00:10";
        Merge(settings, extra);
        var app = IngressApp.Build([], c => c.AddInMemoryCollection(settings));
        await app.StartAsync();
        _ingresses.Add(app);
        await app.Services.GetRequiredService<QwenNats.Messaging.IInferenceClient>().Ready.WaitAsync(TimeSpan.FromSeconds(15));
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var http = new HttpClient(new SocketsHttpHandler { UseCookies = false }) { BaseAddress = new Uri(address), Timeout = TimeSpan.FromSeconds(60) };
        return (app, http);
    }

    /// <summary>Waits until the ingress sees the given number of workers of a colour.</summary>
    public static async Task WaitForWorkersAsync(HttpClient http, string colour, int count, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(20));
        while (true)
        {
            var models = await http.GetFromJsonAsync<JsonElement>("/v1/models", cts.Token);
            var seen = models.GetProperty("data").EnumerateArray()
                .Where(m => m.GetProperty("colour").GetString() == colour)
                .Sum(m => m.GetProperty("workers").GetInt32());
            if (seen >= count) return;
            await Task.Delay(100, cts.Token);
        }
    }

    public async Task StopWorkerAsync(IHost worker)
    {
        await worker.StopAsync();
        worker.Dispose();
        _workers.Remove(worker);
    }

    private static void Merge(Dictionary<string, string?> into, Dictionary<string, string?>? from)
    {
        if (from is null) return;
        foreach (var (k, v) in from) into[k] = v;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var app in _ingresses)
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
        foreach (var w in _workers)
        {
            await w.StopAsync();
            w.Dispose();
        }
    }
}
