using QwenNats.Messaging;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;

namespace QwenNats.ServiceDefaults;

public static class ServiceDefaultsExtensions
{
    /// <summary>
    /// What every QwenNats service does alike: identity, log format (<c>[service][COLOUR]</c> prefix,
    /// or with <c>Logging:Format=json</c> one JSON object a line carrying service, colour, instance and host),
    /// the NATS connection from the <c>Nats</c> section, JetStream and KV contexts, and a NATS health check.
    /// </summary>
    /// <param name="configuredId">The id this process goes by in replies and answers when one is configured (a worker's
    /// <c>Worker:WorkerId</c>, an ingress's <c>Ingress:InstanceId</c>): the <c>instance</c> of its JSON log lines.
    /// Otherwise they carry the identity's instance id (service, host, process id and a random suffix).</param>
    public static IHostApplicationBuilder AddQwenDefaults(this IHostApplicationBuilder builder, string service, string? colour = null, string? configuredId = null)
    {
        var identity = new ServiceIdentity(service, colour, ServiceIdentity.NewInstanceId(service));

        builder.Logging.ClearProviders();
        var format = builder.Configuration["Logging:Format"];
        if (string.Equals(format, "json", StringComparison.OrdinalIgnoreCase))
        {
            builder.Logging.AddConsole(o => o.FormatterName = QwenJsonConsoleFormatter.FormatterName)
                .AddConsoleFormatter<QwenJsonConsoleFormatter, QwenJsonConsoleFormatterOptions>(o =>
                {
                    o.IncludeScopes = true;
                    o.Service = service;
                    o.Colour = colour;
                    o.Instance = string.IsNullOrWhiteSpace(configuredId) ? identity.InstanceId : configuredId;
                });
        }
        else if (!string.IsNullOrEmpty(format) && !string.Equals(format, "text", StringComparison.OrdinalIgnoreCase))
        {
            throw new InvalidOperationException($"Logging:Format '{format}' is not known: use text (the default) or json.");
        }
        else
        {
            builder.Logging.AddConsole(o => o.FormatterName = QwenConsoleFormatter.FormatterName)
                .AddConsoleFormatter<QwenConsoleFormatter, QwenConsoleFormatterOptions>(o =>
                {
                    o.IncludeScopes = true;
                    o.Prefix = colour is null ? $"[{service}]" : $"[{service}]{Messaging.Colours.Tag(colour)}";
                });
        }

        builder.AddQwenMessaging(identity);
        builder.Services.AddSingleton<QwenMetrics>();
        builder.Services.Configure<MetricsOptions>(builder.Configuration.GetSection(MetricsOptions.Section));
        builder.Services.AddHostedService<MetricsServer>();
        return builder;
    }
}
