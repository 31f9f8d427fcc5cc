using Microsoft.Extensions.DependencyInjection.Extensions;
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
        }, instanceIdKey: $"{WorkerOptions.Section}:{nameof(WorkerOptions.WorkerId)}");
        builder.Services.AddOptions<WorkerOptions>().Bind(builder.Configuration.GetSection(WorkerOptions.Section))
            .Validate(o => o.Slots >= 1 && o.ContextSize >= 64 && o.BatchSize >= 1, "Worker:Slots, Worker:ContextSize (at least 64) and Worker:BatchSize must be positive.")
            .Validate(o => o.HeartbeatInterval > TimeSpan.Zero && o.FetchExpiry > TimeSpan.FromSeconds(1) && o.DrainTimeout >= TimeSpan.Zero && o.RetireTimeout >= TimeSpan.Zero,
                "Worker:HeartbeatInterval must be positive, Worker:FetchExpiry more than 1 s, Worker:DrainTimeout and Worker:RetireTimeout not negative.")
            .Validate(o => o.ShadowPollMin > TimeSpan.Zero && o.ShadowPollMax >= o.ShadowPollMin, "Worker:ShadowPollMin must be positive and at most Worker:ShadowPollMax.")
            .Validate(o => o.LiveWaitBeforeShadow > TimeSpan.FromSeconds(1), "Worker:LiveWaitBeforeShadow must be more than 1 s.")
            .Validate(o => o.ShadowYieldIdleAfter >= TimeSpan.Zero && o.ShadowYieldChunk >= 1, "Worker:ShadowYieldIdleAfter must not be negative and Worker:ShadowYieldChunk must be at least 1.")
            .Validate(o => o.CandidateNice is >= 0 and <= 19, "Worker:CandidateNice must be between 0 (off) and 19.")
            .Validate(o => string.IsNullOrWhiteSpace(o.ModelPath) || !string.IsNullOrWhiteSpace(o.ProfilePath), "Worker:ModelPath needs Worker:ProfilePath (a prompt profile such as deploy/profiles/v1.json).")
            .Validate(o => !string.IsNullOrWhiteSpace(o.ModelPath) || o.FollowReleases, "Worker:ModelPath is empty and Worker:FollowReleases is off: the worker would never serve anything.")
            .Validate(o => o.SwitchMode is "auto" or "beside" or "drain" && o.LoadMemoryFactor > 0, "Worker:SwitchMode must be auto, beside or drain, and Worker:LoadMemoryFactor positive.")
            .ValidateOnStart();
        // The host gives its services this long to stop: the drain, then the goodbye heartbeat, must fit in it.
        builder.Services.AddOptions<HostOptions>().Configure<IOptions<WorkerOptions>>((host, worker) =>
            host.ShutdownTimeout = worker.Value.DrainTimeout + TimeSpan.FromSeconds(10));
        builder.Services.Configure<FaultOptions>(builder.Configuration.GetSection(FaultOptions.Section));
        builder.Services.AddSingleton<ServiceAnnouncer>();
        builder.Services.AddSingleton<InferenceServer>();
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddSingleton(sp =>
        {
            NativeLogging.Route(sp.GetRequiredService<ILoggerFactory>());
            return ActivatorUtilities.CreateInstance<WorkerService>(sp);
        });
        builder.Services.AddHostedService(sp => sp.GetRequiredService<WorkerService>());
        builder.Services.AddDiscovery(sp =>
        {
            var worker = sp.GetRequiredService<WorkerService>();
            return new ServiceDescription(Messaging.Subjects.WorkerService, "QwenNats llama.cpp worker", worker.Metadata(), worker.Metadata);
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
