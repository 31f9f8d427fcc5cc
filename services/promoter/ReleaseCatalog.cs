using NATS.Client.KeyValueStore;
using NATS.Client.ObjectStore;
using QwenNats.Messaging;
using QwenNats.Messaging.Topology;

namespace QwenNats.Promoter;

/// <summary>
/// The promoter's side of releases: registers releases (once per id, in <see cref="Releases.Bucket"/>), assigns
/// them to colours (<c>qwen.ctl.deploy</c>), and tells from the workers' heartbeats whether a pool serves its
/// assigned release (the readiness gates of <c>start</c>, <c>promote</c> and <c>rollback</c>).
/// </summary>
public sealed class ReleaseCatalog(TopologyClient topology, WorkerRegistry workers, TimeProvider clock)
{
    private INatsKVStore? _bucket;
    private INatsObjStore? _models;

    public async Task EnsureAsync(CancellationToken ct)
    {
        _bucket = await topology.BucketAsync(Releases.Bucket, ct);
        _models = await topology.ObjectStoreAsync(Releases.ModelsBucket, ct);
    }

    private INatsKVStore Bucket => _bucket ?? throw new InvalidOperationException("ReleaseCatalog is not initialised.");

    /// <summary>Registers a release; the same id again is accepted only with the same content (an id never changes meaning).</summary>
    public async Task<ControlReply> RegisterAsync(ControlRequest r, string actor, CancellationToken ct)
    {
        var id = r.Release?.Trim();
        if (!Releases.IsWellFormedId(id))
            return ControlReply.Refused("invalid_request", "'release' (the id) is required: a letter or digit, then up to 63 letters, digits, '.', '_' or '-'.");
        var sha = r.ModelSha256?.Trim().ToLowerInvariant();
        if (!Releases.IsSha256(sha))
            return ControlReply.Refused("invalid_request", "'model_sha256' is required: the SHA-256 of the model file (64 hex digits), uploaded first with `qwenctl upload <file.gguf>`.");
        if (r.Profile is null)
            return ControlReply.Refused("invalid_request", "'profile' is required: a prompt profile object (as in deploy/profiles/v1.json).");
        try
        {
            r.Profile.Validate($"release {id}");
        }
        catch (InvalidOperationException e)
        {
            return ControlReply.Refused("invalid_profile", e.Message);
        }
        long size;
        try
        {
            size = await ModelStore.VerifyStoredAsync(_models!, sha!, ct);
        }
        catch (ModelStoreException e)
        {
            return ControlReply.Refused(e.Code, e.Message);
        }
        var release = new Release
        {
            Id = id!, ModelSha256 = sha!, ModelSizeBytes = size, Profile = r.Profile, Notes = r.Notes?.Trim() ?? "", Faults = r.Faults,
            ModelName = (await ModelStore.InfoAsync(_models!, sha!, ct))?.Description,
            CreatedAt = clock.GetUtcNow(), CreatedBy = actor,
        };
        try
        {
            await Bucket.CreateAsync(Releases.ReleaseKey(release.Id), release, cancellationToken: ct);
            return new ControlReply { Ok = true, Release = release };
        }
        catch (NatsKVCreateException)
        {
            var existing = await GetAsync(release.Id, ct);
            if (existing is not null && existing.SameAs(release))
                return new ControlReply { Ok = true, Release = existing };
            return ControlReply.Refused("release_exists",
                $"Release '{release.Id}' already exists with other content (model {existing?.ModelSha256[..12]}, profile {existing?.Profile.Version}); a release id never changes meaning: register a new id.");
        }
    }

    public async Task<Release?> GetAsync(string id, CancellationToken ct)
    {
        var entry = await Bucket.TryGetEntryAsync<Release>(Releases.ReleaseKey(id), cancellationToken: ct);
        return entry.Success ? entry.Value.Value : null;
    }

    /// <summary>A stored golden result (<see cref="GoldenKeys.Key"/>), or null.</summary>
    public async Task<GoldenResult?> GoldenAsync(string key, CancellationToken ct)
    {
        var entry = await Bucket.TryGetEntryAsync<GoldenResult>(key, cancellationToken: ct);
        return entry.Success ? entry.Value.Value : null;
    }

    /// <summary>Stores a colour's complete golden result under its key (the same key always means the same answers).</summary>
    public Task StoreGoldenAsync(string key, GoldenResult result, CancellationToken ct) =>
        Bucket.PutAsync(key, result, cancellationToken: ct).AsTask();

    public async Task<Assignment?> AssignmentAsync(string colour, CancellationToken ct)
    {
        var entry = await Bucket.TryGetEntryAsync<Assignment>(Releases.AssignmentKey(colour), cancellationToken: ct);
        return entry.Success ? entry.Value.Value : null;
    }

    /// <summary>Every release, newest first, with the colours it is assigned to.</summary>
    public async Task<IReadOnlyList<ReleaseListing>> ListAsync(IReadOnlyList<string> colours, CancellationToken ct)
    {
        var assigned = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var colour in colours)
            if (await AssignmentAsync(colour, ct) is { } a)
                (assigned.TryGetValue(a.Release, out var list) ? list : assigned[a.Release] = []).Add(colour);
        var releases = new List<Release>();
        await foreach (var key in Bucket.GetKeysAsync([Releases.ReleasePrefix + ">"], cancellationToken: ct))
            if (await GetAsync(key[Releases.ReleasePrefix.Length..], ct) is { } release)
                releases.Add(release);
        return releases.OrderByDescending(r => r.CreatedAt)
            .Select(r => new ReleaseListing { Release = r, DeployedTo = assigned.TryGetValue(r.Id, out var c) ? c : [] })
            .ToArray();
    }

    public async Task<Assignment> AssignAsync(string colour, Release release, string actor, string reason, CancellationToken ct)
    {
        var assignment = new Assignment
        {
            Colour = colour, Release = release.Id, ModelSha256 = release.ModelSha256, ProfileVersion = release.Profile.Version,
            DeployId = $"d-{clock.GetUtcNow():yyyyMMddHHmmss}-{Guid.NewGuid().ToString("N")[..6]}", At = clock.GetUtcNow(), Actor = actor, Reason = reason,
        };
        await Bucket.PutAsync(Releases.AssignmentKey(colour), assignment, cancellationToken: ct);
        return assignment;
    }

    /// <summary>One pool's readiness from its workers' heartbeats (a worker draining on its way out no longer counts).</summary>
    public PoolStatus Pool(string colour, Assignment? assigned) => Evaluate(colour, assigned, workers.Known(colour).Where(w => !w.Draining).ToArray());

    public async Task<IReadOnlyList<PoolStatus>> PoolsAsync(IReadOnlyList<string> colours, CancellationToken ct)
    {
        var pools = new List<PoolStatus>(colours.Count);
        foreach (var colour in colours)
            pools.Add(Pool(colour, await AssignmentAsync(colour, ct)));
        return pools;
    }

    /// <summary>
    /// Ready: at least one worker serves, and every worker serves the assigned release (when the colour has one;
    /// a colour without an assignment runs models given on the workers' command lines).
    /// </summary>
    public static PoolStatus Evaluate(string colour, Assignment? assigned, IReadOnlyList<WorkerHeartbeat> beats)
    {
        var statuses = beats.Select(b => b.ReleaseStatus).ToArray();
        if (statuses.Length == 0)
            return new PoolStatus { Colour = colour, Assigned = assigned, Ready = false, Why = $"the {colour} pool has no workers" };
        if (assigned is null)
        {
            var any = statuses.Any(s => s.Serving);
            return new PoolStatus { Colour = colour, Workers = statuses, Ready = any, Why = any ? "" : $"no worker of the {colour} pool serves yet (no release is assigned: qwen.ctl.deploy)" };
        }
        // Failed on this deploy: a worker's report of an earlier deploy of the same release (the operator deploys it
        // again once the cause is fixed) is not this one's outcome. (Workers that do not name the deploy: any.)
        var failed = statuses.Where(s => s.FailedRelease == assigned.Release && s.Release != assigned.Release && s.Loading is null
                                         && (s.FailedDeploy is null || s.FailedDeploy == assigned.DeployId)).ToArray();
        var behind = statuses.Where(s => !(s.Serving && s.Release == assigned.Release && s.ModelSha256 == assigned.ModelSha256)).ToArray();
        if (behind.Length == 0)
            return new PoolStatus { Colour = colour, Assigned = assigned, Workers = statuses, Ready = true };
        var why = failed.Length > 0
            ? $"{failed.Length} of {statuses.Length} workers of the {colour} pool cannot load release {assigned.Release}: {failed[0].WorkerId}: {failed[0].Failure}"
            : $"{behind.Length} of {statuses.Length} workers of the {colour} pool do not serve release {assigned.Release} yet ({string.Join(", ", behind.Select(Describe))})";
        return new PoolStatus { Colour = colour, Assigned = assigned, Workers = statuses, Ready = false, Failed = failed.Length > 0, Why = why };
    }

    private static string Describe(WorkerReleaseStatus s) =>
        s.Loading is { } l ? $"{s.WorkerId} loading {l}" : s.Serving ? $"{s.WorkerId} serves {s.Release ?? "its command-line model"}" : $"{s.WorkerId} waiting";
}
