using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;

namespace QwenNats.ServiceDefaults;

public static class QwenHost
{
    /// <summary>
    /// A Generic Host builder for a QwenNats service: configuration from the binary's folder, the
    /// caller's extra configuration (tests), and the shared defaults.
    /// </summary>
    public static HostApplicationBuilder CreateBuilder(string[] args, string service, Action<IConfigurationBuilder>? configure = null, Func<IConfiguration, string?>? colour = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = args, ContentRootPath = AppContext.BaseDirectory });
        configure?.Invoke(builder.Configuration);
        builder.AddQwenDefaults(service, colour?.Invoke(builder.Configuration));
        return builder;
    }
}
