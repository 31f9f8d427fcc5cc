using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using QwenNats.Contracts;
using QwenNats.ServiceDefaults;

namespace QwenNats.Judge;

/// <summary>
/// The judge's host. Today it connects and registers for discovery; comparing shadow samples and
/// publishing verdicts is the next capability built on it (see the README's roadmap).
/// </summary>
public static class JudgeHost
{
    public static IHost Build(string[] args, Action<IConfigurationBuilder>? configure = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = args, ContentRootPath = AppContext.BaseDirectory });
        configure?.Invoke(builder.Configuration);
        builder.AddQwenDefaults("judge");
        builder.Services.AddSingleton(new ServiceDescription(Subjects.JudgeService, "QwenNats judge: compares candidate answers with live",
            new Dictionary<string, string> { ["role"] = "judge" }));
        builder.Services.AddHostedService<ServiceRegistration>();
        return builder.Build();
    }
}
