using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using QwenNats.Messaging.Topology;

namespace QwenNats.Messaging;

public static class MessagingExtensions
{
    /// <summary>
    /// The messaging side of every QwenNats process: the NATS connection from the <c>Nats</c> section (named after
    /// the instance, the project's serializers, reconnecting forever), JetStream and KV contexts, the topology
    /// table from the <c>Topology</c> section and its client, and a <c>nats</c> health check. Options are
    /// validated when the host starts: a bad setting stops the process with a message naming it.
    /// </summary>
    public static IHostApplicationBuilder AddQwenMessaging(this IHostApplicationBuilder builder, ServiceIdentity identity)
    {
        var services = builder.Services;
        services.AddSingleton(identity);
        services.AddOptions<NatsOptions>().Bind(builder.Configuration.GetSection(NatsOptions.Section))
            .Validate(o => Uri.TryCreate(o.Url.Split(',')[0].Trim(), UriKind.Absolute, out _), "Nats:Url must be a NATS URL such as nats://127.0.0.1:4222.")
            .Validate(o => o.ConnectTimeout > TimeSpan.Zero && o.RequestTimeout > TimeSpan.Zero, "Nats:ConnectTimeout and Nats:RequestTimeout must be positive.")
            .ValidateOnStart();
        services.AddOptions<TopologyOptions>().Bind(builder.Configuration.GetSection(TopologyOptions.Section))
            .ValidateDataAnnotations()
            .Validate(o => !o.Problems().Any(), "Topology settings are invalid: see Topology:Colours and the durations (they must be positive).")
            .ValidateOnStart();

        services.AddSingleton(sp =>
        {
            return QwenConnection.Create(sp.GetRequiredService<IOptions<NatsOptions>>().Value, identity.InstanceId, sp.GetRequiredService<ILoggerFactory>());
        });
        services.AddSingleton<INatsConnection>(sp => sp.GetRequiredService<NatsConnection>());
        services.AddSingleton<INatsJSContext>(sp => new NatsJSContext(sp.GetRequiredService<NatsConnection>()));
        services.AddSingleton<INatsKVContext>(sp => new NatsKVContext(sp.GetRequiredService<INatsJSContext>()));
        services.AddSingleton(sp => new QwenTopology(sp.GetRequiredService<IOptions<TopologyOptions>>().Value));
        services.AddSingleton<TopologyClient>();
        services.AddHealthChecks()
            .AddCheck<NatsHealthCheck>("nats", tags: [HealthTags.Ready])
            .AddCheck<TopologyClient.HealthCheck>("topology", tags: [HealthTags.Ready]);
        return builder;
    }
}

/// <summary>Health-check tags: <c>ready</c> checks decide <c>/readyz</c>.</summary>
public static class HealthTags
{
    public const string Ready = "ready";
}

/// <summary>Healthy while the NATS connection is open.</summary>
public sealed class NatsHealthCheck(NatsConnection connection) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(connection.ConnectionState == NatsConnectionState.Open
            ? HealthCheckResult.Healthy("connected")
            : HealthCheckResult.Unhealthy($"NATS connection is {connection.ConnectionState}"));
}
