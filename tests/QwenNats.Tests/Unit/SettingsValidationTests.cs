using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;
using QwenNats.Ingress;
using QwenNats.Promoter;

namespace QwenNats.Tests.Unit;

/// <summary>A bad setting stops a service at start with a message that names it (ValidateOnStart), before it touches NATS.</summary>
public sealed class SettingsValidationTests
{
    [Theory]
    [InlineData("Ingress:LiveColour", "purple", "Ingress:LiveColour")]
    [InlineData("Topology:Storage", "disk", "Topology:Storage")]
    [InlineData("Topology:Colours:0", "Blue!", "Topology settings are invalid")]
    [InlineData("Nats:Url", "not a url", "Nats:Url")]
    public async Task The_ingress_refuses_to_start_on_a_bad_setting(string key, string value, string named)
    {
        await using var app = IngressApp.Build([], c => c.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["urls"] = "http://127.0.0.1:0", ["Nats:Url"] = "nats://127.0.0.1:1", [key] = value,
        }));
        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => app.StartAsync());
        Assert.Contains(named, e.Message);
    }

    [Fact]
    public async Task The_promoter_refuses_canary_weights_outside_1_to_100()
    {
        using var host = PromoterHost.Build([], c => c.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Nats:Url"] = "nats://127.0.0.1:1", ["Promoter:CanarySteps:0"] = "150",
        }));
        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());
        Assert.Contains("Promoter:CanarySteps", e.Message);
    }
}
