using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using QwenNats.Contracts;
using QwenNats.ServiceDefaults;

namespace QwenNats.Promoter;

/// <summary>
/// The promoter's host. Today it connects and registers for discovery; the rollout state machine and
/// the <c>qwen.ctl.*</c> operator API are the next capability built on it (see the README's roadmap).
/// </summary>
public static class PromoterHost
{
    public static IHost Build(string[] args, Action<IConfigurationBuilder>? configure = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = args, ContentRootPath = AppContext.BaseDirectory });
        configure?.Invoke(builder.Configuration);
        builder.AddQwenDefaults("promoter");
        builder.Services.AddSingleton(new ServiceDescription(Subjects.PromoterService, "QwenNats promoter: drives rollouts",
            new Dictionary<string, string> { ["role"] = "promoter" }));
        builder.Services.AddHostedService<ServiceRegistration>();
        return builder.Build();
    }
}
