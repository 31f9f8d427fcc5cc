using QwenNats.Messaging;
using LLama.Native;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using QwenNats.ServiceDefaults;

namespace QwenNats.Worker;

public static class WorkerHost
{
    /// <summary>Builds a worker host; tests call this with their own settings.</summary>
    public static IHost Build(string[] args, Action<IConfigurationBuilder>? configure = null)
    {
        var builder = QwenHost.CreateBuilder(args, "worker", configure, config =>
        {
            var colour = config[$"{WorkerOptions.Section}:Colour"] ?? Messaging.Colours.Blue;
            return Messaging.Colours.IsWellFormed(colour)
                ? colour
                : throw new InvalidOperationException($"Worker:Colour '{colour}' is not a valid colour (lowercase letters, digits, '-').");
        });
        builder.Services.AddOptions<WorkerOptions>().Bind(builder.Configuration.GetSection(WorkerOptions.Section))
            .Validate(o => o.Slots >= 1 && o.ContextSize >= 64 && o.BatchSize >= 1, "Worker:Slots, Worker:ContextSize (at least 64) and Worker:BatchSize must be positive.")
            .Validate(o => o.HeartbeatInterval > TimeSpan.Zero && o.FetchExpiry > TimeSpan.FromSeconds(1) && o.DrainTimeout >= TimeSpan.Zero, "Worker:HeartbeatInterval must be positive and Worker:FetchExpiry more than 1 s.")
            .Validate(o => o.ShadowPollMin > TimeSpan.Zero && o.ShadowPollMax >= o.ShadowPollMin, "Worker:ShadowPollMin must be positive and at most Worker:ShadowPollMax.")
            .ValidateOnStart();
        builder.Services.Configure<FaultOptions>(builder.Configuration.GetSection(FaultOptions.Section));
        builder.Services.AddSingleton<FaultInjector>();
        builder.Services.AddSingleton(sp => PromptProfile.Load(sp.GetRequiredService<IOptions<WorkerOptions>>().Value.ProfilePath));
        builder.Services.AddSingleton(sp =>
        {
            NativeLogging.Route(sp.GetRequiredService<ILoggerFactory>());
            return new LlamaEngine(sp.GetRequiredService<IOptions<WorkerOptions>>(), sp.GetRequiredService<PromptProfile>(), sp.GetRequiredService<ILogger<LlamaEngine>>());
        });
        builder.Services.AddSingleton<InferenceServer>();
        builder.Services.AddHostedService<WorkerService>();
        builder.Services.AddDiscovery(sp =>
        {
            var engine = sp.GetRequiredService<LlamaEngine>();
            var o = sp.GetRequiredService<IOptions<WorkerOptions>>().Value;
            var inv = System.Globalization.CultureInfo.InvariantCulture;
            return new ServiceDescription(Messaging.Subjects.WorkerService, "QwenNats llama.cpp worker", new Dictionary<string, string>
            {
                ["worker_id"] = o.WorkerId ?? sp.GetRequiredService<ServiceIdentity>().InstanceId,
                ["model"] = engine.Model.Id,
                ["model_sha256"] = engine.Model.Sha256,
                ["profile"] = engine.Profile.Version,
                ["slots"] = engine.Slots.ToString(inv),
                ["context"] = engine.ContextSize.ToString(inv),
            });
        });
        return builder.Build();
    }
}

/// <summary>Sends llama.cpp's own log lines to the host's logging (category LLama.Native) instead of stderr.</summary>
internal static class NativeLogging
{
    private static int _routed;

    public static void Route(ILoggerFactory loggers)
    {
        if (Interlocked.Exchange(ref _routed, 1) == 1 || NativeLibraryConfig.LLama.LibraryHasLoaded)
            return;
        NativeLibraryConfig.All.WithLogCallback(loggers.CreateLogger("LLama.Native"));
    }
}
