using QwenNats.Messaging;
using QwenNats.Messaging.Topology;

namespace QwenNats.Tests.Unit;

/// <summary>The topology table: one owner per resource, names the rest of the code uses.</summary>
public sealed class TopologyTableTests
{
    private static readonly QwenTopology Table = new(new TopologyOptions());

    [Fact]
    public void Every_resource_has_exactly_one_known_owner_and_a_unique_name()
    {
        string[] owners = [Owners.Ingress, Owners.Worker, Owners.Judge, Owners.Promoter];
        var resources = Table.Resources.ToList();
        Assert.All(resources, r => Assert.Contains(r.Owner, owners));
        var keys = resources.Select(r => (r.Kind, r.Name, r.Stream)).ToList();
        Assert.Equal(keys.Count, keys.Distinct().Count());
    }

    [Fact]
    public void The_table_covers_every_stream_consumer_and_bucket_the_services_use()
    {
        foreach (var colour in Colours.Default)
        {
            Assert.Equal(Owners.Ingress, Table.Find(ResourceKind.Stream, Subjects.WorkStream(colour)).Owner);
            Assert.Equal(Owners.Ingress, Table.Find(ResourceKind.Stream, Judging.ShadowStream(colour)).Owner);
            Assert.Equal(Owners.Worker, Table.Find(ResourceKind.Consumer, Subjects.WorkConsumer, Subjects.WorkStream(colour)).Owner);
            Assert.Equal(Owners.Worker, Table.Find(ResourceKind.Consumer, Subjects.WorkConsumer, Judging.ShadowStream(colour)).Owner);
        }
        Assert.Equal(Owners.Ingress, Table.Find(ResourceKind.Stream, Judging.SamplesStream).Owner);
        Assert.Equal(Owners.Judge, Table.Find(ResourceKind.Consumer, Judging.JudgeConsumer, Judging.SamplesStream).Owner);
        Assert.Equal(Owners.Judge, Table.Find(ResourceKind.Bucket, Judging.Bucket).Owner);
        Assert.Equal(Owners.Promoter, Table.Find(ResourceKind.Bucket, Rollouts.Bucket).Owner);
        Assert.Equal(Owners.Promoter, Table.Find(ResourceKind.Bucket, Rollouts.SessionsBucket).Owner);
        Assert.Equal(Owners.Promoter, Table.Find(ResourceKind.Stream, Rollouts.EventsStream).Owner);
        Assert.Equal(Owners.Promoter, Table.Find(ResourceKind.Bucket, Releases.Bucket).Owner);
        Assert.Equal(Owners.Promoter, Table.Find(ResourceKind.ObjectStore, Releases.ModelsBucket).Owner);
        Assert.Equal(17, Table.Resources.Count());
    }

    [Fact]
    public void A_worker_owns_only_the_consumers_of_its_own_colour()
    {
        var owned = Table.OwnedBy(Owners.Worker, Colours.Green).ToList();
        Assert.Equal(2, owned.Count);
        Assert.All(owned, r => Assert.Equal(Colours.Green, r.Colour));
    }

    [Fact]
    public void Settings_come_from_the_options_and_a_colour_list_configures_the_work_queues()
    {
        var table = new QwenTopology(new TopologyOptions { Colours = ["blue", "green", "red"], MaxMessages = 7, Storage = "memory", EventsMaxAge = TimeSpan.FromDays(3) });
        Assert.Equal(7, table.StreamConfig(Subjects.WorkStream("red")).MaxMsgs);
        Assert.Equal(NATS.Client.JetStream.Models.StreamConfigStorage.Memory, table.StreamConfig(Rollouts.EventsStream).Storage);
        Assert.Equal(TimeSpan.FromDays(3), table.StreamConfig(Rollouts.EventsStream).MaxAge);
        var missing = Assert.Throws<KeyNotFoundException>(() => Table.StreamConfig(Subjects.WorkStream("red")));
        Assert.Contains("Topology:Colours", missing.Message);
    }

    [Fact]
    public void Invalid_settings_are_named()
    {
        var problems = new TopologyOptions { Colours = ["Blue!"], AckWait = TimeSpan.Zero }.Problems().ToList();
        Assert.Contains(problems, p => p.Contains("'Blue!'"));
        Assert.Contains(problems, p => p.Contains("Topology:AckWait"));
        Assert.Empty(new TopologyOptions().Problems());
    }

    [Fact]
    public void A_missing_resource_says_which_service_creates_it()
    {
        var e = new TopologyMissingException(Table.Find(ResourceKind.Bucket, Rollouts.Bucket));
        Assert.Contains("KV bucket qwen_rollout", e.Message);
        Assert.Contains("created by the promoter", e.Message);
    }
}
