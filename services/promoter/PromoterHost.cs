using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using QwenNats.Messaging;
using QwenNats.Messaging.Control;
using QwenNats.ServiceDefaults;

namespace QwenNats.Promoter;

/// <summary>
/// The promoter's host: the rollout state machine, its state in KV, the audit log and the
/// <c>qwen.ctl.*</c> operator API; registered with the NATS services framework.
/// </summary>
public static class PromoterHost
{
    public static IHost Build(string[] args, Action<IConfigurationBuilder>? configure = null)
    {
        var builder = QwenHost.CreateBuilder(args, "promoter", configure);
        builder.Services.AddDiscovery(_ => new ServiceDescription(Subjects.PromoterService, "QwenNats promoter: drives rollouts",
            new Dictionary<string, string> { ["role"] = "promoter" }));
        builder.Services.AddOptions<PromoterOptions>().Bind(builder.Configuration.GetSection(PromoterOptions.Section))
            .PostConfigure<Microsoft.Extensions.Options.IOptions<Messaging.Topology.TopologyOptions>>((o, t) => o.Colours = t.Value.ColourList)
            .Validate(o => o.Colours.Contains(o.InitialLive, StringComparer.Ordinal), "Promoter:InitialLive must be one of Topology:Colours.")
            .Validate(o => o.CanarySteps.Count > 0 && o.CanarySteps.All(w => w is > 0 and <= 100), "Promoter:CanarySteps must list weights between 1 and 100.")
            .Validate(o => o.LeaseTtl > TimeSpan.Zero && o.TickInterval > TimeSpan.Zero && o.TickInterval < o.LeaseTtl, "Promoter:LeaseTtl and Promoter:TickInterval must be positive, the tick shorter than the lease.")
            .Validate(o => o.GoldenTimeout > TimeSpan.Zero && o.GoldenChatMaxTokens > 0 && o.GoldenInFlight > 0 && o.GoldenStoredTextChars >= 16,
                "Promoter:GoldenTimeout, GoldenChatMaxTokens and GoldenInFlight must be positive, GoldenStoredTextChars at least 16.")
            .Validate(o => o.CompareMaxInputs > 0 && o.CompareMaxInputChars > 0 && o.CompareMaxReplyBytes >= 16 * 1024 && o.CompareMaxAnswerChars >= 16,
                "Promoter:CompareMaxInputs and CompareMaxInputChars must be positive, CompareMaxReplyBytes at least 16384 and CompareMaxAnswerChars at least 16.")
            .Validate(o => o.PoolsSettleWait >= TimeSpan.Zero, "Promoter:PoolsSettleWait must not be negative.")
            .ValidateOnStart();
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<RolloutStore>();
        builder.Services.AddInferenceClient(sp => new InferenceOptions { InstanceId = sp.GetRequiredService<ServiceIdentity>().InstanceId });
        builder.Services.AddSingleton<GoldenRunner>();
        builder.Services.AddSingleton<GoldenService>();
        builder.Services.AddSingleton(sp => PromoterSettings.Load(sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<PromoterOptions>>()));
        builder.Services.AddSingleton<PromoterMetrics>();
        builder.Services.AddSingleton<IRolloutLog>(sp => sp.GetRequiredService<RolloutStore>());
        builder.Services.AddSingleton<LeaderLease>();
        builder.Services.AddSingleton<RolloutChanges>();
        builder.Services.AddSingleton<ReleaseCatalog>();
        builder.Services.AddSingleton<ControlCommands>();
        builder.Services.AddSingleton<VerdictFollower>();
        builder.Services.AddSingleton<PromoterService>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<PromoterService>());
        builder.Services.AddSingleton<IControlHandler>(sp => sp.GetRequiredService<PromoterService>());
        builder.Services.AddSingleton<IServiceEndpoints, ControlEndpoints>();
        return builder.Build();
    }
}
