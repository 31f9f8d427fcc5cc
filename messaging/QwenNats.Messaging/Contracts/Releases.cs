using System.Text.RegularExpressions;

namespace QwenNats.Messaging;

/// <summary>Names of the release plane: the releases bucket, the model object store and their keys.</summary>
public static partial class Releases
{
    /// <summary>KV bucket (with history) of releases (<c>release.&lt;id&gt;</c>, written once) and of each colour's
    /// assigned release (<c>assign.&lt;colour&gt;</c>, the latest deploy).</summary>
    public const string Bucket = "qwen_releases";

    /// <summary>Object store of model files, each named by the SHA-256 of its content (lowercase hex).</summary>
    public const string ModelsBucket = "qwen_models";

    public const string ReleasePrefix = "release.";
    public const string AssignmentPrefix = "assign.";

    public static string ReleaseKey(string id) => ReleasePrefix + id;
    public static string AssignmentKey(string colour) => AssignmentPrefix + colour;

    /// <summary>Release ids: a letter or digit, then up to 63 letters, digits, '.', '_' or '-' (they are KV keys).</summary>
    public static bool IsWellFormedId(string? id) => id is not null && IdPattern().IsMatch(id);

    /// <summary>A model digest: 64 lowercase hex digits.</summary>
    public static bool IsSha256(string? digest) => digest is not null && Sha256Pattern().IsMatch(digest);

    /// <summary>The object store's digest (<c>SHA-256=&lt;base64url&gt;</c>) as lowercase hex; null when it is another algorithm.</summary>
    public static string? HexOfObjectDigest(string? digest)
    {
        const string prefix = "SHA-256=";
        if (digest is null || !digest.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)) return null;
        var b64 = digest[prefix.Length..].Replace('-', '+').Replace('_', '/');
        b64 = b64.PadRight(b64.Length + (4 - b64.Length % 4) % 4, '=');
        try
        {
            return Convert.ToHexStringLower(Convert.FromBase64String(b64));
        }
        catch (FormatException)
        {
            return null;
        }
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex IdPattern();

    [GeneratedRegex("^[0-9a-f]{64}$")]
    private static partial Regex Sha256Pattern();
}

/// <summary>
/// A release: a named, immutable description of what a pool serves — the model (by digest), the prompt profile
/// with its sampling defaults, and notes. Stored once under <see cref="Releases.ReleaseKey"/>; an id never changes meaning.
/// </summary>
public sealed record Release
{
    public required string Id { get; init; }
    /// <summary>SHA-256 (lowercase hex) of the GGUF file, the object's name in <see cref="Releases.ModelsBucket"/>.</summary>
    public required string ModelSha256 { get; init; }
    /// <summary>The file name it was uploaded from (informative).</summary>
    public string? ModelName { get; init; }
    public long ModelSizeBytes { get; init; }
    /// <summary>The prompt profile, with the sampling defaults (<c>chat.temperature</c>, <c>top_p</c>, <c>max_tokens</c>, <c>stop</c>).</summary>
    public required PromptProfile Profile { get; init; }
    public string Notes { get; init; } = "";
    /// <summary>A drill release: the workers serve it with these faults injected (see <see cref="FaultOptions"/>).</summary>
    public FaultOptions? Faults { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public string CreatedBy { get; init; } = "";

    public ReleaseRef Ref => new(Id, ModelSha256, Profile.Version);

    /// <summary>Same meaning: same model, profile, notes and faults (who registered it and when do not count).</summary>
    public bool SameAs(Release other) =>
        Id == other.Id && ModelSha256 == other.ModelSha256 && Notes == other.Notes && Equals(Faults, other.Faults)
        && System.Text.Json.JsonSerializer.Serialize(Profile, ProfileJsonContext.Default.PromptProfile)
           == System.Text.Json.JsonSerializer.Serialize(other.Profile, ProfileJsonContext.Default.PromptProfile);
}

/// <summary>Which release (and model digest and profile version) something was: carried by answers, samples, verdicts, golden reports and audit events.</summary>
public sealed record ReleaseRef(string Id, string ModelSha256, string ProfileVersion)
{
    public override string ToString() => $"{Id} (model {ModelSha256[..Math.Min(12, ModelSha256.Length)]}, profile {ProfileVersion})";
}

/// <summary>A colour's assigned release (<see cref="Releases.AssignmentKey"/>): its workers load it, and every worker that joins later does too.</summary>
public sealed record Assignment
{
    public required string Colour { get; init; }
    public required string Release { get; init; }
    public required string ModelSha256 { get; init; }
    public string ProfileVersion { get; init; } = "";
    /// <summary>Unique per deploy, so deploying the same release again is a new assignment workers act on.</summary>
    public required string DeployId { get; init; }
    public DateTimeOffset At { get; init; }
    public string Actor { get; init; } = "";
    public string Reason { get; init; } = "";

    public ReleaseRef Ref => new(Release, ModelSha256, ProfileVersion);
}

/// <summary>What one worker of a pool reports about its release (from its heartbeats).</summary>
public sealed record WorkerReleaseStatus
{
    public required string WorkerId { get; init; }
    /// <summary>The release it serves; null when it serves a model given on its command line, or nothing yet.</summary>
    public string? Release { get; init; }
    public string? ModelSha256 { get; init; }
    public bool Serving { get; init; }
    /// <summary>The release it is loading now (download, load, warm-up).</summary>
    public string? Loading { get; init; }
    /// <summary>The release it last failed to load, and why; it keeps serving what it served before.</summary>
    public string? FailedRelease { get; init; }
    public string? Failure { get; init; }
    /// <summary>The deploy (<see cref="Assignment.DeployId"/>) that failed: a later deploy of the same release is tried anew.</summary>
    public string? FailedDeploy { get; init; }
}

/// <summary>One colour's pool: its assignment, its workers and whether it is ready to take part in a rollout.</summary>
public sealed record PoolStatus
{
    public required string Colour { get; init; }
    public Assignment? Assigned { get; init; }
    public IReadOnlyList<WorkerReleaseStatus> Workers { get; init; } = [];
    /// <summary>At least one worker serves, and every worker serves the assigned release (when there is one).</summary>
    public bool Ready { get; init; }
    /// <summary>Why the pool is not ready (empty when it is).</summary>
    public string Why { get; init; } = "";
    /// <summary>Some worker failed to load the assigned release.</summary>
    public bool Failed { get; init; }
}

/// <summary>A release in the list of <c>qwen.ctl.releases</c>: the release and the colours it is assigned to.</summary>
public sealed record ReleaseListing
{
    public required Release Release { get; init; }
    public IReadOnlyList<string> DeployedTo { get; init; } = [];
}
