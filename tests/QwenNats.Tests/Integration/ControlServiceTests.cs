using System.Text.Json;
using NATS.Client.Core;
using QwenNats.Messaging;
using QwenNats.Messaging.Control;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>The operator API as services-framework endpoints: listed by <c>$SRV.INFO</c>, served by any promoter.</summary>
[Collection(RolloutCollection.Name)]
public sealed class ControlServiceTests(RolloutFixture fx)
{
    [Fact]
    public async Task The_promoter_lists_every_control_verb_in_SRV_INFO()
    {
        await using var nats = Nats.Connect(fx.Nats.Url);
        var info = await nats.RequestAsync<byte[], byte[]>($"$SRV.INFO.{Subjects.PromoterService}", []);
        var root = JsonDocument.Parse(info.Data!).RootElement;
        var endpoints = root.GetProperty("endpoints").EnumerateArray()
            .ToDictionary(e => e.GetProperty("name").GetString()!, e => e.GetProperty("subject").GetString()!);
        foreach (var verb in Rollouts.Verbs.All)
            Assert.Equal(Rollouts.Control(verb), endpoints[verb]);
        Assert.Equal(Subjects.ServiceStatus(root.GetProperty("metadata").GetProperty("instance").GetString()!), endpoints["instance-status"]);
    }

    [Fact]
    public async Task The_typed_client_answers_and_a_refusal_is_a_reply_with_a_code()
    {
        var client = new ControlClient(fx.Operator);
        var status = await client.StatusAsync();
        Assert.True(status.Ok, status.Error);
        Assert.NotNull(status.State);
        var refused = await client.SendAsync(Rollouts.Verbs.Promote, "{not json");
        Assert.False(refused.Ok);
        Assert.Equal("invalid_json", refused.Code);
        var history = await client.HistoryAsync(2);
        Assert.True(history.Ok, history.Error);
        Assert.True(history.Events!.Count <= 2);
    }

    [Fact]
    public async Task A_standby_promoter_forwards_commands_to_the_leader()
    {
        var leader = await fx.WaitForLeaderAsync();
        using var standby = await fx.StartPromoterAsync();
        try
        {
            // Requests are spread over both promoters' endpoints (one queue group): every answer comes from the leader.
            var client = new ControlClient(fx.Operator);
            var answers = await Task.WhenAll(Enumerable.Range(0, 12).Select(_ => client.StatusAsync()));
            Assert.All(answers, a => Assert.True(a.Ok, a.Error));
            Assert.All(answers, a => Assert.Equal(leader, a.Leader));
        }
        finally
        {
            await standby.StopAsync();
        }
    }
}
