using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using QwenNats.Messaging;

namespace QwenNats.Tests.Unit;

public sealed class InferenceOptionsTests
{
    [Theory]
    [InlineData("ingress-*", 3)]
    [InlineData("", 3)]
    [InlineData("ingress-1", 0)]
    public void Inference_client_settings_that_cannot_work_fail_when_resolved(string instanceId, int staleSeconds)
    {
        var services = new ServiceCollection();
        services.AddInferenceClient(_ => new InferenceOptions { InstanceId = instanceId, WorkerStaleAfter = TimeSpan.FromSeconds(staleSeconds) });
        using var provider = services.BuildServiceProvider();
        Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IOptions<InferenceOptions>>());
    }

    [Fact]
    public void Valid_inference_client_settings_resolve()
    {
        var services = new ServiceCollection();
        services.AddInferenceClient(_ => new InferenceOptions { InstanceId = "ingress-host.1-abc" });
        using var provider = services.BuildServiceProvider();
        Assert.Equal("ingress-host.1-abc", provider.GetRequiredService<IOptions<InferenceOptions>>().Value.InstanceId);
    }
}
