using NATS.Client.JetStream.Models;
using NATS.Client.KeyValueStore;
using NATS.Client.ObjectStore;

namespace QwenNats.Messaging.Topology;

/// <summary>The services that own resources. Only a resource's owner creates or updates it.</summary>
public static class Owners
{
    public const string Ingress = "ingress";
    public const string Worker = "worker";
    public const string Judge = "judge";
    public const string Promoter = "promoter";
}

public enum ResourceKind
{
    Stream,
    Consumer,
    Bucket,
    ObjectStore,
}

/// <summary>One JetStream resource: its kind, name (a consumer's <see cref="Stream"/> too), owner and, for
/// colour resources, the colour it serves.</summary>
public sealed record TopologyResource(ResourceKind Kind, string Name, string Owner, string Description, string? Stream = null, string? Colour = null)
{
    /// <summary>How the resource is named in messages: <c>stream QWEN_WORK_BLUE</c>, <c>consumer workers on stream QWEN_WORK_BLUE</c>.</summary>
    public string Display => Kind switch
    {
        ResourceKind.Consumer => $"consumer {Name} on stream {Stream}",
        ResourceKind.Bucket => $"KV bucket {Name}",
        ResourceKind.ObjectStore => $"object store {Name}",
        _ => $"stream {Name}",
    };
}

/// <summary>
/// The declarative table of every stream, consumer and KV bucket of QwenNats, with one owning service each and
/// the configuration the owner applies (from <see cref="TopologyOptions"/>). The table is the only place a
/// JetStream configuration is written; <see cref="TopologyClient"/> applies it (owner) or binds to it (others).
/// </summary>
public sealed class QwenTopology
{
    private readonly TopologyOptions _o;
    private readonly List<(TopologyResource Resource, object Config)> _table = [];

    public QwenTopology(TopologyOptions options)
    {
        _o = options;
        var streamStorage = _o.InMemory ? StreamConfigStorage.Memory : StreamConfigStorage.File;
        var kvStorage = _o.InMemory ? NatsKVStorageType.Memory : NatsKVStorageType.File;

        foreach (var colour in _o.ColourList)
        {
            var work = new StreamConfig(Subjects.WorkStream(colour), [Subjects.Infer(colour)])
            {
                Description = $"Pending inference work of the {colour} pool",
                Retention = StreamConfigRetention.Workqueue,
                Discard = StreamConfigDiscard.New,
                MaxMsgs = _o.MaxMessages,
                MaxAge = _o.MaxAge,
                Storage = streamStorage,
                NumReplicas = _o.Replicas,
            };
            AddStream(work, Owners.Ingress, colour);
            AddStream(work with
            {
                Name = Judging.ShadowStream(colour),
                Subjects = [Subjects.Shadow(colour)],
                Description = $"Mirrored (shadow) work for the {colour} pool",
                MaxMsgs = _o.ShadowMaxMessages,
            }, Owners.Ingress, colour);
            foreach (var stream in new[] { Subjects.WorkStream(colour), Judging.ShadowStream(colour) })
            {
                AddConsumer(stream, new ConsumerConfig(Subjects.WorkConsumer)
                {
                    Description = $"Workers of the {colour} pool",
                    AckPolicy = ConsumerConfigAckPolicy.Explicit,
                    AckWait = _o.AckWait,
                    MaxDeliver = _o.MaxDeliver,
                    MaxAckPending = _o.MaxAckPending,
                    DeliverPolicy = ConsumerConfigDeliverPolicy.All,
                }, Owners.Worker, colour);
            }
        }

        AddStream(new StreamConfig(Judging.SamplesStream, [Judging.SamplesSubjects])
        {
            Description = "Live and candidate answers to the same requests, for the judge",
            MaxAge = _o.SamplesMaxAge,
            MaxBytes = _o.SamplesMaxBytes,
            Storage = streamStorage,
            NumReplicas = _o.Replicas,
        }, Owners.Ingress);
        AddConsumer(Judging.SamplesStream, new ConsumerConfig(Judging.JudgeConsumer)
        {
            Description = "The judge's scorecards",
            AckPolicy = ConsumerConfigAckPolicy.Explicit,
            AckWait = _o.JudgeAckWait,
            DeliverPolicy = ConsumerConfigDeliverPolicy.All,
        }, Owners.Judge);
        AddBucket(new NatsKVConfig(Judging.Bucket)
        {
            Description = "QwenNats judge scorecards and latest verdict", History = 1, Storage = kvStorage, NumberOfReplicas = _o.Replicas,
        }, Owners.Judge);

        AddBucket(new NatsKVConfig(Rollouts.Bucket)
        {
            Description = "QwenNats rollout state and promoter lease", History = _o.RolloutHistory, Storage = kvStorage, NumberOfReplicas = _o.Replicas,
        }, Owners.Promoter);
        AddBucket(new NatsKVConfig(Rollouts.SessionsBucket)
        {
            Description = "QwenNats session pins (TTL = session idle timeout)", History = 1, MaxAge = _o.SessionIdle, Storage = kvStorage, NumberOfReplicas = _o.Replicas,
        }, Owners.Promoter);
        AddBucket(new NatsKVConfig(Rollouts.ConversationsBucket)
        {
            Description = "QwenNats WebSocket conversations by session (TTL = session idle timeout)", History = 1, MaxAge = _o.SessionIdle,
            Storage = kvStorage, NumberOfReplicas = _o.Replicas,
        }, Owners.Ingress);
        AddStream(new StreamConfig(Rollouts.EventsStream, [Rollouts.EventsSubjects])
        {
            Description = "QwenNats audit log",
            MaxAge = _o.EventsMaxAge,
            Storage = streamStorage,
            NumReplicas = _o.Replicas,
        }, Owners.Promoter);
        AddBucket(new NatsKVConfig(Releases.Bucket)
        {
            Description = "QwenNats releases (written once) and each colour's assigned release", History = _o.ReleasesHistory, Storage = kvStorage,
            NumberOfReplicas = _o.Replicas,
        }, Owners.Promoter);
        var models = new NatsObjConfig(Releases.ModelsBucket)
        {
            Description = "QwenNats model files, named by their SHA-256",
            Storage = _o.InMemory ? NatsObjStorageType.Memory : NatsObjStorageType.File,
            NumberOfReplicas = _o.Replicas,
        };
        if (_o.ModelsMaxBytes > 0) models = models with { MaxBytes = _o.ModelsMaxBytes };
        _table.Add((new TopologyResource(ResourceKind.ObjectStore, models.Bucket, Owners.Promoter, models.Description ?? ""), models));
    }

    public TopologyOptions Options => _o;

    /// <summary>Every resource, streams before their consumers.</summary>
    public IEnumerable<TopologyResource> Resources => _table.Select(e => e.Resource);

    /// <summary>The resources one service owns (of one colour, for a worker).</summary>
    public IEnumerable<TopologyResource> OwnedBy(string owner, string? colour = null) =>
        Resources.Where(r => r.Owner == owner && (colour is null || r.Colour is null || r.Colour == colour));

    public StreamConfig StreamConfig(string name) => (StreamConfig)Entry(ResourceKind.Stream, name, null).Config;

    public ConsumerConfig ConsumerConfig(string stream, string name) => (ConsumerConfig)Entry(ResourceKind.Consumer, name, stream).Config;

    public NatsKVConfig BucketConfig(string name) => (NatsKVConfig)Entry(ResourceKind.Bucket, name, null).Config;

    public NatsObjConfig ObjectStoreConfig(string name) => (NatsObjConfig)Entry(ResourceKind.ObjectStore, name, null).Config;

    /// <summary>The table's entry for a resource; a name the table does not know is a configuration error.</summary>
    public TopologyResource Find(ResourceKind kind, string name, string? stream = null) => Entry(kind, name, stream).Resource;

    private (TopologyResource Resource, object Config) Entry(ResourceKind kind, string name, string? stream)
    {
        foreach (var e in _table)
            if (e.Resource.Kind == kind && e.Resource.Name == name && e.Resource.Stream == stream)
                return e;
        throw new KeyNotFoundException($"The topology has no {kind.ToString().ToLowerInvariant()} named {name}{(stream is null ? "" : $" on {stream}")}; check Topology:Colours.");
    }

    private void AddStream(StreamConfig config, string owner, string? colour = null) =>
        _table.Add((new TopologyResource(ResourceKind.Stream, config.Name!, owner, config.Description ?? "", Colour: colour), config));

    private void AddConsumer(string stream, ConsumerConfig config, string owner, string? colour = null) =>
        _table.Add((new TopologyResource(ResourceKind.Consumer, config.Name!, owner, config.Description ?? "", stream, colour), config));

    private void AddBucket(NatsKVConfig config, string owner) =>
        _table.Add((new TopologyResource(ResourceKind.Bucket, config.Bucket, owner, config.Description ?? ""), config));
}
