using Microsoft.Extensions.Logging;
using NATS.Client.JetStream;
using NATS.Client.JetStream.Models;
using NATS.Client.KeyValueStore;
using NATS.Client.ObjectStore;

namespace QwenNats.Messaging.Topology;

/// <summary>A resource another service should have created is not there (yet).</summary>
public sealed class TopologyMissingException(TopologyResource resource, Exception? inner = null)
    : Exception($"{resource.Display} does not exist: it is created by the {resource.Owner} service. Start the {resource.Owner} (or check that it reaches this NATS server and JetStream domain).", inner)
{
    public TopologyResource Resource { get; } = resource;
}

/// <summary>
/// Applies the <see cref="QwenTopology"/> table: the owner of a resource creates or updates it with the table's
/// configuration (<see cref="EnsureOwnedAsync"/>); every other service only binds to it (<see cref="StreamAsync"/>,
/// <see cref="ConsumerAsync"/>, <see cref="BucketAsync"/>), and a missing resource is a
/// <see cref="TopologyMissingException"/> that names its owner.
/// </summary>
public sealed partial class TopologyClient(INatsJSContext js, INatsKVContext kv, QwenTopology table, ILogger<TopologyClient> logger)
{
    private readonly NatsObjContext _obj = new(js);
    private const int NotFound = 404;

    public QwenTopology Table => table;

    private volatile bool _bound;
    private volatile string? _missing;

    /// <summary>True once the service has every resource it needs (its owner code calls <see cref="MarkBound"/>).</summary>
    public bool Bound => _bound;

    /// <summary>While not bound: the last missing resource and who creates it.</summary>
    public string? Missing => _missing;

    /// <summary>Called by a service once it has created and bound everything it needs: it is ready as far as the topology goes.</summary>
    public void MarkBound()
    {
        _bound = true;
        _missing = null;
    }

    private TopologyMissingException Missed(TopologyResource r, Exception inner)
    {
        var e = new TopologyMissingException(r, inner);
        if (!_bound) _missing = e.Message;
        return e;
    }

    /// <summary>Creates or updates every resource <paramref name="owner"/> owns (for a worker: of its colour).</summary>
    public async Task EnsureOwnedAsync(string owner, string? colour, CancellationToken ct)
    {
        foreach (var r in table.OwnedBy(owner, colour))
        {
            switch (r.Kind)
            {
                case ResourceKind.Stream:
                    await js.CreateOrUpdateStreamAsync(table.StreamConfig(r.Name), ct);
                    break;
                case ResourceKind.Consumer:
                    try
                    {
                        await js.CreateOrUpdateConsumerAsync(r.Stream!, table.ConsumerConfig(r.Stream!, r.Name), ct);
                    }
                    catch (NatsJSApiException e) when (e.Error.Code == NotFound)
                    {
                        throw Missed(table.Find(ResourceKind.Stream, r.Stream!), e);
                    }
                    break;
                case ResourceKind.Bucket:
                    await kv.CreateOrUpdateStoreAsync(table.BucketConfig(r.Name), ct);
                    break;
                case ResourceKind.ObjectStore:
                    // The client has no create-or-update for object stores: create it when missing, keep it otherwise.
                    try
                    {
                        await _obj.GetObjectStoreAsync(r.Name, ct);
                    }
                    catch (Exception e) when (e is NatsJSApiException { Error.Code: NotFound } or NatsObjException)
                    {
                        await _obj.CreateObjectStoreAsync(table.ObjectStoreConfig(r.Name), ct);
                    }
                    break;
            }
            LogEnsured(logger, r.Display, owner);
        }
    }

    /// <summary>Binds to a stream of the table.</summary>
    public async Task<INatsJSStream> StreamAsync(string name, CancellationToken ct)
    {
        var r = table.Find(ResourceKind.Stream, name);
        try
        {
            return await js.GetStreamAsync(name, cancellationToken: ct);
        }
        catch (NatsJSApiException e) when (e.Error.Code == NotFound)
        {
            throw Missed(r, e);
        }
    }

    /// <summary>Binds to a consumer of the table.</summary>
    public async Task<INatsJSConsumer> ConsumerAsync(string stream, string name, CancellationToken ct)
    {
        var r = table.Find(ResourceKind.Consumer, name, stream);
        try
        {
            return await js.GetConsumerAsync(stream, name, ct);
        }
        catch (NatsJSApiException e) when (e.Error.Code == NotFound)
        {
            throw Missed(r, e);
        }
    }

    /// <summary>Binds to a KV bucket of the table.</summary>
    public async Task<INatsKVStore> BucketAsync(string name, CancellationToken ct)
    {
        var r = table.Find(ResourceKind.Bucket, name);
        try
        {
            return await kv.GetStoreAsync(name, ct);
        }
        catch (NatsJSApiException e) when (e.Error.Code == NotFound)
        {
            throw Missed(r, e);
        }
        catch (NatsKVException e)
        {
            throw Missed(r, e);
        }
    }

    /// <summary>Binds to an object store of the table.</summary>
    public async Task<INatsObjStore> ObjectStoreAsync(string name, CancellationToken ct)
    {
        var r = table.Find(ResourceKind.ObjectStore, name);
        try
        {
            return await _obj.GetObjectStoreAsync(name, ct);
        }
        catch (NatsJSApiException e) when (e.Error.Code == NotFound)
        {
            throw Missed(r, e);
        }
        catch (NatsObjException e)
        {
            throw Missed(r, e);
        }
    }

    /// <summary>Readiness (tag <c>ready</c>): healthy once the service has bound its topology; otherwise says what is missing.</summary>
    public sealed class HealthCheck(TopologyClient topology) : Microsoft.Extensions.Diagnostics.HealthChecks.IHealthCheck
    {
        public Task<Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckResult> CheckHealthAsync(Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckContext context, CancellationToken cancellationToken = default) =>
            Task.FromResult(topology.Bound
                ? Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckResult.Healthy("bound")
                : Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckResult.Unhealthy(topology.Missing ?? "not bound yet"));
    }

    [LoggerMessage(EventId = 1100, Level = LogLevel.Debug, Message = "{Resource} ensured by its owner, the {Owner}")]
    private static partial void LogEnsured(ILogger logger, string resource, string owner);
}
