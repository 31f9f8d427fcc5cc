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
    /// or JSON with <c>Logging:Format=json</c>), the NATS connection from the <c>Nats</c> section,
    /// JetStream and KV contexts, and a NATS health check.
    /// </summary>
    public static IHostApplicationBuilder AddQwenDefaults(this IHostApplicationBuilder builder, string service, string? colour = null)
    {
        var identity = new ServiceIdentity(service, colour, ServiceIdentity.NewInstanceId(service));

        builder.Logging.ClearProviders();
        var format = builder.Configuration["Logging:Format"];
        if (string.Equals(format, "json", StringComparison.OrdinalIgnoreCase))
        {
            builder.Logging.AddJsonConsole(o => o.IncludeScopes = true);
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
