using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using NATS.Client.Services;
using QwenNats.Messaging;

namespace QwenNats.Messaging;

/// <summary>What a service announces in the NATS services framework (<c>nats micro ls/info</c>). <paramref name="Current"/>,
/// when set, gives metadata that changes while the process runs (a worker's release); it is read at every
/// re-registration (<see cref="ServiceAnnouncer.Changed"/>) and by every <c>instance-status</c> request.</summary>
public sealed record ServiceDescription(string Name, string Description, IReadOnlyDictionary<string, string> Metadata, Func<IReadOnlyDictionary<string, string>>? Current = null)
{
    public IReadOnlyDictionary<string, string> Now() => Current?.Invoke() ?? Metadata;
}

/// <summary>Tells <see cref="ServiceRegistration"/> that the service's metadata changed, so it registers again with the new values.</summary>
public sealed class ServiceAnnouncer
{
    private readonly System.Threading.Channels.Channel<bool> _changes = System.Threading.Channels.Channel.CreateBounded<bool>(
        new System.Threading.Channels.BoundedChannelOptions(1) { FullMode = System.Threading.Channels.BoundedChannelFullMode.DropWrite });

    public void Changed() => _changes.Writer.TryWrite(true);

    internal ValueTask<bool> WaitAsync(CancellationToken ct) => _changes.Reader.WaitToReadAsync(ct);

    internal void Consume()
    {
        while (_changes.Reader.TryRead(out _)) { }
    }
}

/// <summary>Endpoints a service adds to its services-framework registration (besides <c>status</c>).</summary>
public interface IServiceEndpoints
{
    ValueTask AddToAsync(INatsSvcServer server, CancellationToken ct);
}

/// <summary>
/// Registers the process with the NATS services framework, with its metadata, an <c>instance-status</c> endpoint on
/// <c>qwen.svc.&lt;instance&gt;.status</c> that answers the same metadata as JSON, and the endpoints of every
/// registered <see cref="IServiceEndpoints"/> (the promoter's <c>qwen.ctl.*</c>). The version is the assembly's.
/// </summary>
public sealed partial class ServiceRegistration(
    NatsConnection nats, ServiceIdentity identity, ServiceDescription description, IEnumerable<IServiceEndpoints> endpoints, ServiceAnnouncer announcer, ILogger<ServiceRegistration> logger) : BackgroundService
{
    public static string StatusSubject(string instanceId) => Subjects.ServiceStatus(instanceId);

    /// <summary>The version announced in <c>$SRV.INFO</c>: the informational version of the messaging library's assembly.</summary>
    public static string Version { get; } = (typeof(ServiceRegistration).Assembly.GetName().Version ?? new Version(0, 1, 0)).ToString(3);

    private Dictionary<string, string> MetadataNow()
    {
        var metadata = new Dictionary<string, string>(description.Now()) { ["instance"] = identity.InstanceId };
        if (identity.Colour is not null) metadata["colour"] = identity.Colour;
        return metadata;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            announcer.Consume();
            if (await RegisterOnceAsync(stoppingToken) is not { } server)
                return;
            try
            {
                await announcer.WaitAsync(stoppingToken);
                // Several changes in a row (loading, then serving) make one re-registration.
                await Task.Delay(TimeSpan.FromMilliseconds(200), stoppingToken);
            }
            catch (OperationCanceledException)
            {
            }
            await server.StopAsync(CancellationToken.None);
        }
    }

    private async Task<INatsSvcServer?> RegisterOnceAsync(CancellationToken stoppingToken)
    {
        INatsSvcServer server;
        try
        {
            server = await Internal.Retry.UntilDoneAsync(logger, "Service registration", async ct =>
            {
                await nats.ConnectAsync();
                var svc = new NatsSvcContext(nats);
                var metadata = MetadataNow();
                var added = await svc.AddServiceAsync(new NatsSvcConfig(description.Name, Version) { Description = description.Description, Metadata = metadata }, ct);
                try
                {
                    await added.AddEndpointAsync<byte[]>(
                        m => m.ReplyAsync(MetadataNow(), serializer: StatusSerializer.Instance),
                        name: "instance-status", subject: StatusSubject(identity.InstanceId), cancellationToken: ct);
                    foreach (var e in endpoints)
                        await e.AddToAsync(added, ct);
                }
                catch
                {
                    await added.StopAsync(CancellationToken.None);
                    throw;
                }
                return added;
            }, stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            return null;
        }
        LogRegistered(logger, description.Name, identity.InstanceId);
        return server;
    }

    [LoggerMessage(EventId = 1001, Level = LogLevel.Information, Message = "Registered {Service} as {Instance}")]
    private static partial void LogRegistered(ILogger logger, string service, string instance);
}

internal sealed class StatusSerializer : INatsSerialize<Dictionary<string, string>>
{
    public static readonly StatusSerializer Instance = new();

    public void Serialize(System.Buffers.IBufferWriter<byte> bufferWriter, Dictionary<string, string> value)
    {
        using var writer = new System.Text.Json.Utf8JsonWriter(bufferWriter);
        writer.WriteStartObject();
        foreach (var (k, v) in value.OrderBy(p => p.Key, StringComparer.Ordinal))
            writer.WriteString(k, v);
        writer.WriteEndObject();
    }
}

public static class DiscoveryExtensions
{
    /// <summary>Registers this process with the NATS services framework under <paramref name="describe"/>'s name and metadata.</summary>
    public static IServiceCollection AddDiscovery(this IServiceCollection services, Func<IServiceProvider, ServiceDescription> describe)
    {
        services.AddSingleton(describe);
        services.TryAddSingleton<ServiceAnnouncer>();
        services.AddHostedService<ServiceRegistration>();
        return services;
    }
}
