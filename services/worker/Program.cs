using QwenNats.Worker;

var host = WorkerHost.Build(args);
await host.RunAsync();
