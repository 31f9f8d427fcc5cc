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
        services.AddSingleton(sp => Options.Create(Validated(options(sp))));
        services.AddSingleton<WorkerRegistry>();
        services.AddHostedService(sp => sp.GetRequiredService<WorkerRegistry>());
        services.AddSingleton<InferenceClient>();
        services.AddHostedService(sp => sp.GetRequiredService<InferenceClient>());
        return services;
    }

    private static InferenceOptions Validated(InferenceOptions o)
    {
        var failures = new List<string>();
        if (string.IsNullOrWhiteSpace(o.InstanceId) || o.InstanceId.IndexOfAny(['*', '>', ' ']) >= 0)
            failures.Add($"InstanceId '{o.InstanceId}' may not contain NATS wildcards or spaces.");
        if (o.WorkerStaleAfter <= TimeSpan.Zero)
            failures.Add("WorkerStaleAfter must be positive.");
        if (o.BusLostGrace < TimeSpan.Zero)
            failures.Add("BusLostGrace must not be negative.");
        if (o.DirectAcceptTimeout <= TimeSpan.Zero)
            failures.Add("DirectAcceptTimeout must be positive.");
        return failures.Count == 0 ? o : throw new OptionsValidationException(nameof(InferenceOptions), typeof(InferenceOptions), failures);
    }
}
