using QwenNats.Ingress;

var app = IngressApp.Build(args);
await app.RunAsync();

/// <summary>Entry point; public so tests can reference the assembly.</summary>
public partial class Program;
