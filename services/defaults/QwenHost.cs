using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;

namespace QwenNats.ServiceDefaults;

public static class QwenHost
{
    /// <summary>
    /// A Generic Host builder for a QwenNats service: configuration from the binary's folder, the
    /// caller's extra configuration (tests), and the shared defaults. <c>instanceIdKey</c> names the setting that
    /// fixes the id the process goes by, if the service has one (<c>Worker:WorkerId</c>), for its log lines.
    /// </summary>
    public static HostApplicationBuilder CreateBuilder(string[] args, string service, Action<IConfigurationBuilder>? configure = null, Func<IConfiguration, string?>? colour = null,
        string? instanceIdKey = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = args, ContentRootPath = AppContext.BaseDirectory });
        configure?.Invoke(builder.Configuration);
        builder.AddQwenDefaults(service, colour?.Invoke(builder.Configuration), instanceIdKey is null ? null : builder.Configuration[instanceIdKey]);
        return builder;
    }
}
