using QwenNats.Messaging;
using QwenNats.Ingress.OperatorConsole;
using QwenNats.Ingress.Endpoints;
using QwenNats.Ingress.OpenAi;
using Prometheus;
using QwenNats.ServiceDefaults;
using QwenNats.Ingress.Security;

namespace QwenNats.Ingress;

public static class IngressApp
{
    /// <summary>Builds the ingress; tests call this with their own settings (e.g. <c>--urls http://127.0.0.1:0</c>).</summary>
    public static WebApplication Build(string[] args, Action<IConfigurationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
        configure?.Invoke(builder.Configuration);
        builder.AddQwenDefaults("ingress", configuredId: builder.Configuration[$"{IngressOptions.Section}:{nameof(IngressOptions.InstanceId)}"]);
        builder.AddIngressServices();

        var app = builder.Build();
        app.UseMiddleware<ErrorBoundary>();
        app.UseWebSockets(new WebSocketOptions { KeepAliveInterval = TimeSpan.FromSeconds(20) });
        // The OpenAI-compatible API and the WebSocket chat: API key and rate limit on the groups.
        var v1 = app.MapGroup("/v1").RequireApiKey();
        v1.MapChatApi();
        v1.MapCompletionsApi();
        v1.MapSentimentApi();
        v1.MapModelsApi();
        app.MapGroup("/ws").RequireApiKey().MapWebSocketChat();
        app.MapStatusApi();
        if (ConsoleEnabled(app.Configuration))
            app.MapConsole();
        var registry = app.Services.GetRequiredService<QwenMetrics>().Registry;
        registry.AddBeforeCollectCallback(() =>
        {
            var metrics = app.Services.GetRequiredService<IngressMetrics>();
            var workers = app.Services.GetRequiredService<WorkerRegistry>();
            var live = app.Services.GetRequiredService<Routing.RolloutView>().Current.Live;
            var options = app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<IngressOptions>>().Value;
            foreach (var colour in options.Colours)
                metrics.PoolWorkers.WithLabels(colour).Set(workers.Live(colour).Count);
            metrics.LivePoolWorkers.Set(workers.Live(live).Count);
        });
        app.MapMetrics("/metrics", registry);
        var routes = ((IEndpointRouteBuilder)app).DataSources.SelectMany(d => d.Endpoints).OfType<RouteEndpoint>()
            .Select(e => "/" + e.RoutePattern.RawText?.TrimStart('/')).ToHashSet(StringComparer.OrdinalIgnoreCase);
        // Every path, also one whose last segment has a dot (a model id such as qwen2.5-0.5b): the default fallback
        // pattern leaves those to a bare 404.
        app.MapFallback("{*path}", http => routes.Contains(http.Request.Path.Value ?? "")
            ? JsonAnswers.WriteErrorAsync(http, new ApiError(405, "method_not_allowed", $"{http.Request.Method} is not allowed on {http.Request.Path}."))
            : JsonAnswers.WriteErrorAsync(http, new ApiError(404, "not_found", $"No route for {http.Request.Method} {http.Request.Path}.")));
        return app;
    }

    /// <summary>
    /// Registers everything the ingress runs: options, routing and rollout state, the worker registry, the
    /// inference client and shadow mirror, API keys and limits, metrics, and the operator console when enabled.
    /// </summary>
    public static WebApplicationBuilder AddIngressServices(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<IngressOptions>().Bind(builder.Configuration.GetSection(IngressOptions.Section))
            .PostConfigure<Microsoft.Extensions.Options.IOptions<Messaging.Topology.TopologyOptions>>((o, t) => o.Colours = t.Value.ColourList)
            .Validate(o => o.Colours.Contains(o.LiveColour, StringComparer.Ordinal), "Ingress:LiveColour must be one of Topology:Colours.")
            .Validate(o => o.RequestTimeout > TimeSpan.Zero && o.MaxBodyBytes > 0 && o.WorkerStaleAfter > TimeSpan.Zero && o.DirectAcceptTimeout > TimeSpan.Zero, "Ingress:RequestTimeout, Ingress:MaxBodyBytes, Ingress:WorkerStaleAfter and Ingress:DirectAcceptTimeout must be positive.")
            .Validate(o => o.ImplicitPinClockSkew >= TimeSpan.Zero, "Ingress:ImplicitPinClockSkew must not be negative.")
            .ValidateOnStart();
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.Configure<OperatorConsole.ConsoleOptions>(builder.Configuration.GetSection(OperatorConsole.ConsoleOptions.Section));
        builder.Services.AddSingleton(sp => new OperatorConsole.RecentLatency(sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<OperatorConsole.ConsoleOptions>>().Value.LatencyWindow));
        builder.Services.AddSingleton<IngressMetrics>();
        builder.Services.AddOptions<Security.SecurityOptions>().Bind(builder.Configuration.GetSection(Security.SecurityOptions.Section))
            .Validate(o => o.ApiKeys.All(k => k.Scopes.All(s => Security.ApiScopes.All.Contains(s, StringComparer.Ordinal))),
                $"Security:ApiKeys has an unknown scope; known scopes: {string.Join(", ", Security.ApiScopes.All)}.")
            .ValidateOnStart();
        builder.Services.AddSingleton<Security.ApiKeys>();
        builder.Services.AddSingleton<Routing.RolloutView>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<Routing.RolloutView>());
        builder.Services.AddSingleton<Routing.SessionPins>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<Routing.SessionPins>());
        builder.Services.AddSingleton<Routing.SessionRouter>();
        builder.Services.AddSingleton<RequestRouting>();
        builder.Services.AddSingleton<Routing.AccessAudit>();
        builder.Services.AddSingleton<Endpoints.ConversationStore>();
        builder.Services.AddInferenceClient(sp => IngressInference(sp.GetRequiredService<ServiceIdentity>(), sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<IngressOptions>>().Value));
        builder.Services.AddSingleton<IInferenceObserver, IngressInferenceObserver>();
        builder.Services.AddSingleton<IInferenceClient, MirroringInferenceClient>();
        builder.Services.Configure<ShadowOptions>(builder.Configuration.GetSection(ShadowOptions.Section));
        builder.Services.AddSingleton<ShadowMirror>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ShadowMirror>());
        if (ConsoleEnabled(builder.Configuration))
        {
            builder.Services.AddSingleton<OperatorConsole.ConsoleHub>();
            builder.Services.AddSingleton<OperatorConsole.OperatorBus>();
            builder.Services.AddHostedService(sp => sp.GetRequiredService<OperatorConsole.ConsoleHub>());
        }
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = builder.Configuration.GetValue<long?>($"{IngressOptions.Section}:MaxBodyBytes") ?? 1_048_576);
        if (string.IsNullOrEmpty(builder.Configuration["urls"]) && string.IsNullOrEmpty(builder.Configuration["ASPNETCORE_URLS"]))
            builder.WebHost.UseUrls($"http://127.0.0.1:{builder.Configuration.GetValue<int?>($"{IngressOptions.Section}:Port") ?? 8080}");

        return builder;
    }

    /// <summary>The inference client's settings from the ingress's: its instance id, liveness and bus grace, and the topology it owns (the work queues).</summary>
    private static InferenceOptions IngressInference(ServiceIdentity identity, IngressOptions o) => new()
    {
        InstanceId = o.InstanceId ?? identity.InstanceId,
        WorkerStaleAfter = o.WorkerStaleAfter,
        BusLostGrace = o.BusLostGrace,
        DirectDelivery = o.DirectDelivery,
        DirectAcceptTimeout = o.DirectAcceptTimeout,
        TopologyOwner = Messaging.Topology.Owners.Ingress,
    };

    private static bool ConsoleEnabled(IConfiguration configuration) =>
        (configuration.GetSection(OperatorConsole.ConsoleOptions.Section).Get<OperatorConsole.ConsoleOptions>() ?? new OperatorConsole.ConsoleOptions()).Enabled;
}
