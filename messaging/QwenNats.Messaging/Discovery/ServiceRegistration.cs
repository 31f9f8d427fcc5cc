using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using NATS.Client.Services;
using QwenNats.Messaging;

namespace QwenNats.Messaging;

/// <summary>What a service announces in the NATS services framework (<c>nats micro ls/info</c>).</summary>
public sealed record ServiceDescription(string Name, string Description, IReadOnlyDictionary<string, string> Metadata);

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
    NatsConnection nats, ServiceIdentity identity, ServiceDescription description, IEnumerable<IServiceEndpoints> endpoints, ILogger<ServiceRegistration> logger) : BackgroundService
{
    public static string StatusSubject(string instanceId) => Subjects.ServiceStatus(instanceId);

    /// <summary>The version announced in <c>$SRV.INFO</c>: the informational version of the messaging library's assembly.</summary>
    public static string Version { get; } = (typeof(ServiceRegistration).Assembly.GetName().Version ?? new Version(0, 1, 0)).ToString(3);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        INatsSvcServer server;
        try
        {
            server = await Internal.Retry.UntilDoneAsync(logger, "Service registration", async ct =>
            {
                await nats.ConnectAsync();
                var svc = new NatsSvcContext(nats);
                var metadata = new Dictionary<string, string>(description.Metadata) { ["instance"] = identity.InstanceId };
                if (identity.Colour is not null) metadata["colour"] = identity.Colour;
                var added = await svc.AddServiceAsync(new NatsSvcConfig(description.Name, Version) { Description = description.Description, Metadata = metadata }, ct);
                try
                {
                    await added.AddEndpointAsync<byte[]>(
                        m => m.ReplyAsync(metadata, serializer: StatusSerializer.Instance),
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
            return;
        }
        LogRegistered(logger, description.Name, identity.InstanceId);
        try
        {
            await Task.Delay(Timeout.Infinite, stoppingToken);
        }
        catch (OperationCanceledException)
        {
        }
        await server.StopAsync(CancellationToken.None);
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
        services.AddHostedService<ServiceRegistration>();
        return services;
    }
}
