using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace QwenNats.Messaging;

public static class InferenceRegistration
{
    /// <summary>
    /// Registers the worker registry and the inference client (both hosted: heartbeats and replies are
    /// subscribed on start) with settings made from the container.
    /// </summary>
    public static IServiceCollection AddInferenceClient(this IServiceCollection services, Func<IServiceProvider, InferenceOptions> options)
    {
        services.AddSingleton(sp => Options.Create(options(sp)));
        services.AddSingleton<WorkerRegistry>();
        services.AddHostedService(sp => sp.GetRequiredService<WorkerRegistry>());
        services.AddSingleton<InferenceClient>();
        services.AddHostedService(sp => sp.GetRequiredService<InferenceClient>());
        return services;
    }
}
