using Microsoft.Extensions.DependencyInjection;
using QwenNats.Worker;

var host = WorkerHost.Build(args);
var worker = host.Services.GetRequiredService<WorkerService>();
await host.RunAsync();
// Stopped because its engine stopped for good: a failure, so a supervisor (systemd, compose) starts it again.
return worker.EngineFailure is null ? 0 : 1;
