using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using NATS.Client.Services;
using QwenNats.Messaging;

namespace QwenNats.Messaging;

/// <summary>What a service announces in the NATS services framework (<c>nats micro ls/info</c>).</summary>
public sealed record ServiceDescription(string Name, string Description, IReadOnlyDictionary<string, string> Metadata);

/// <summary>
/// Registers the process with the NATS services framework, with its metadata and a <c>status</c>
/// endpoint on <c>qwen.svc.&lt;instance&gt;.status</c> that answers the same metadata as JSON.
/// Re-registers after the connection comes back.
/// </summary>
public sealed class ServiceRegistration(NatsConnection nats, ServiceIdentity identity, ServiceDescription description, ILogger<ServiceRegistration> logger) : BackgroundService
{
    public static string StatusSubject(string instanceId) => $"qwen.svc.{instanceId}.status";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        INatsSvcServer? server = null;
        while (server is null && !stoppingToken.IsCancellationRequested)
        {
            try
            {
                await nats.ConnectAsync();
                var svc = new NatsSvcContext(nats);
                var metadata = new Dictionary<string, string>(description.Metadata) { ["instance"] = identity.InstanceId };
                if (identity.Colour is not null) metadata["colour"] = identity.Colour;
                server = await svc.AddServiceAsync(new NatsSvcConfig(description.Name, "0.1.0") { Description = description.Description, Metadata = metadata }, stoppingToken);
                await server.AddEndpointAsync<byte[]>(
                    m => m.ReplyAsync(metadata, serializer: StatusSerializer.Instance),
                    name: "status", subject: StatusSubject(identity.InstanceId), cancellationToken: stoppingToken);
                logger.LogInformation("Registered {Service} as {Instance}", description.Name, identity.InstanceId);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                logger.LogWarning("Service registration failed ({Reason}); retrying", e.Message);
                await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken);
            }
        }
        try
        {
            await Task.Delay(Timeout.Infinite, stoppingToken);
        }
        catch (OperationCanceledException)
        {
        }
        if (server is not null)
            await server.StopAsync(CancellationToken.None);
    }
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
