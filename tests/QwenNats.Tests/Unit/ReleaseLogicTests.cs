using Microsoft.Extensions.Time.Testing;
using QwenNats.Messaging;
using QwenNats.Promoter;

namespace QwenNats.Tests.Unit;

/// <summary>Release names, digests and the readiness gates, without NATS or a model.</summary>
public sealed class ReleaseLogicTests
{
    private static readonly string ShaA = new('a', 64);
    private static readonly string ShaB = new('b', 64);
    private static readonly Assignment V3 = new() { Colour = "green", Release = "v3", ModelSha256 = ShaA, ProfileVersion = "v2", DeployId = "d-1" };

    private static WorkerHeartbeat Beat(string id, string? release, string sha, bool serving = true, string? loading = null, string? failed = null, string? failure = null) => new()
    {
        WorkerId = id, Colour = "green", ModelId = "m", ModelSha256 = sha, ProfileVersion = "v2", Serving = serving, Release = release,
        Loading = loading, FailedRelease = failed, Failure = failure,
    };

    [Theory]
    [InlineData("v3", true)]
    [InlineData("2026-11-27.1_rc-2", true)]
    [InlineData("", false)]
    [InlineData("-v3", false)]
    [InlineData("v3 beta", false)]
    [InlineData("v3.>", false)]
    [InlineData("v3*", false)]
    public void Release_ids_are_safe_kv_keys(string id, bool ok) => Assert.Equal(ok, Releases.IsWellFormedId(id));

    [Fact]
    public void An_object_store_digest_reads_as_the_hex_sha256_the_release_names()
    {
        var hash = System.Security.Cryptography.SHA256.HashData("model bytes"u8);
        var b64url = Convert.ToBase64String(hash).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        Assert.Equal(Convert.ToHexStringLower(hash), Releases.HexOfObjectDigest("SHA-256=" + b64url));
        Assert.True(Releases.IsSha256(Convert.ToHexStringLower(hash)));
        Assert.False(Releases.IsSha256(Convert.ToHexString(hash)));
        Assert.Null(Releases.HexOfObjectDigest("MD5=abc"));
        Assert.Null(Releases.HexOfObjectDigest(null));
    }

    [Fact]
    public void A_release_id_means_one_model_profile_and_notes()
    {
        var profile = PromptProfile.Load(Testing.Paths.Profile("v1"));
        var r = new Release { Id = "v3", ModelSha256 = ShaA, Profile = profile, Notes = "n", CreatedBy = "alice" };
        Assert.True(r.SameAs(r with { CreatedBy = "bob", CreatedAt = DateTimeOffset.UnixEpoch }));
        Assert.False(r.SameAs(r with { ModelSha256 = ShaB }));
        Assert.False(r.SameAs(r with { Notes = "other" }));
        Assert.False(r.SameAs(r with { Profile = profile with { Version = "v9" } }));
        Assert.False(r.SameAs(r with { Faults = new FaultOptions { Fraction = 1, FlipLabels = true } }));
    }

    [Fact]
    public void A_pool_is_ready_when_every_worker_serves_the_assigned_release()
    {
        Assert.True(ReleaseCatalog.Evaluate("green", V3, [Beat("g1", "v3", ShaA), Beat("g2", "v3", ShaA)]).Ready);

        var empty = ReleaseCatalog.Evaluate("green", V3, []);
        Assert.False(empty.Ready);
        Assert.Contains("no workers", empty.Why);

        var loading = ReleaseCatalog.Evaluate("green", V3, [Beat("g1", "v3", ShaA), Beat("g2", "v2", ShaB, loading: "v3")]);
        Assert.False(loading.Ready);
        Assert.False(loading.Failed);
        Assert.Contains("g2 loading v3", loading.Why);

        var waiting = ReleaseCatalog.Evaluate("green", V3, [Beat("g1", null, "", serving: false)]);
        Assert.False(waiting.Ready);
        Assert.Contains("g1 waiting", waiting.Why);

        // Same id, another model file: not the assigned release.
        Assert.False(ReleaseCatalog.Evaluate("green", V3, [Beat("g1", "v3", ShaB)]).Ready);

        var failed = ReleaseCatalog.Evaluate("green", V3, [Beat("g1", "v3", ShaA), Beat("g2", "v2", ShaB, failed: "v3", failure: "llama.cpp cannot load it")]);
        Assert.False(failed.Ready);
        Assert.True(failed.Failed);
        Assert.Contains("g2: llama.cpp cannot load it", failed.Why);
        // A worker retrying a release it failed before is loading, not failed.
        Assert.False(ReleaseCatalog.Evaluate("green", V3, [Beat("g2", "v2", ShaB, loading: "v3", failed: "v3", failure: "x")]).Failed);

        // The failure of an earlier deploy of the same release (the operator deploys it again once the cause is fixed)
        // is not this deploy's: until the worker reports on this one, the pool is behind, not failed.
        var again = V3 with { DeployId = "d-2" };
        var earlier = ReleaseCatalog.Evaluate("green", again, [Beat("g2", "v2", ShaB, failed: "v3", failure: "download_failed") with { FailedDeploy = "d-1" }]);
        Assert.False(earlier.Failed);
        Assert.False(earlier.Ready);
        Assert.True(ReleaseCatalog.Evaluate("green", again, [Beat("g2", "v2", ShaB, failed: "v3", failure: "download_failed") with { FailedDeploy = "d-2" }]).Failed);
    }

    [Fact]
    public void Without_an_assignment_a_pool_is_ready_when_a_worker_serves()
    {
        Assert.True(ReleaseCatalog.Evaluate("green", null, [Beat("g1", null, ShaA)]).Ready);
        Assert.False(ReleaseCatalog.Evaluate("green", null, [Beat("g1", null, "", serving: false)]).Ready);
    }

    [Fact]
    public void Start_is_refused_until_the_candidate_pool_is_ready_and_the_rollout_records_both_releases()
    {
        var clock = new FakeTimeProvider(new DateTimeOffset(2026, 11, 27, 12, 0, 0, TimeSpan.Zero));
        var options = new PromoterOptions { CanarySteps = [50], BakeWindow = TimeSpan.FromMinutes(1) };
        var stable = new RolloutState { Live = "blue" };
        var live = new ReleaseRef("v2", ShaB, "v1");

        var notReady = ReleaseCatalog.Evaluate("green", V3, [Beat("g1", "v2", ShaB, loading: "v3")]);
        var refused = new Rollout(stable, options, clock).Start("green", "ship v3", "ci", notReady, live);
        Assert.False(refused.Ok);
        Assert.Equal("pool_not_ready", refused.Code);
        Assert.Equal(stable, refused.State);
        var broken = ReleaseCatalog.Evaluate("green", V3, [Beat("g1", "v2", ShaB, failed: "v3", failure: "corrupt")]);
        Assert.Equal("release_failed", new Rollout(stable, options, clock).Start("green", "", "ci", broken, live).Code);

        var ready = ReleaseCatalog.Evaluate("green", V3, [Beat("g1", "v3", ShaA)]);
        var started = new Rollout(stable, options, clock).Start("green", "ship v3", "ci", ready, live);
        Assert.True(started.Ok);
        Assert.Equal(new ReleaseRef("v3", ShaA, "v2"), started.State.CandidateRelease);
        Assert.Equal(live, started.State.LiveRelease);
        var promoted = new Rollout(started.State, options, clock).Promote(true, "", "ci");
        Assert.Equal(started.State.CandidateRelease, promoted.State.CandidateRelease);
        clock.Advance(TimeSpan.FromMinutes(2));
        var finished = new Rollout(promoted.State, options, clock).FinishIfDue()!;
        Assert.Equal(RolloutPhase.Stable, finished.State.Phase);
        Assert.Null(finished.State.CandidateRelease);
    }
}
