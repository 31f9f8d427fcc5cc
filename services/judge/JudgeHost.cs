using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using QwenNats.Messaging;
using QwenNats.ServiceDefaults;

namespace QwenNats.Judge;

/// <summary>
/// The judge's host: consumes paired samples, keeps scorecards and publishes verdicts.
/// </summary>
public static class JudgeHost
{
    public static IHost Build(string[] args, Action<IConfigurationBuilder>? configure = null)
    {
        var builder = QwenHost.CreateBuilder(args, "judge", configure);
        builder.Services.AddDiscovery(_ => new ServiceDescription(Subjects.JudgeService, "QwenNats judge: compares candidate answers with live",
            new Dictionary<string, string> { ["role"] = "judge" }));
        builder.Services.AddOptions<JudgeOptions>().Bind(builder.Configuration.GetSection(JudgeOptions.Section))
            .Validate(o => o.EvaluateInterval > TimeSpan.Zero, "Judge:EvaluateInterval must be positive.")
            .Validate(o => o.PersistEvery >= 1, "Judge:PersistEvery must be at least 1.")
            .ValidateOnStart();
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddHostedService<JudgeService>();
        return builder.Build();
    }
}
