using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using NATS.Client.ObjectStore.Models;
using QwenNats.Messaging;
using QwenNats.Messaging.Control;
using QwenNats.Tests.Infrastructure;
using Xunit.Abstractions;

namespace QwenNats.Tests.Integration;

/// <summary>
/// Releases end to end on real processes' code (in-process hosts, real nats-server, real LLamaSharp): a model uploaded
/// to the object store, a release registered, deployed to the idle colour, loaded by its workers without a restart,
/// and rolled out by the pipeline command, with the judge deciding.
/// </summary>
[Collection(ReleaseCollection.Name)]
public sealed class ReleaseTests(ReleaseFixture fx, ITestOutputHelper output) : IAsyncLifetime
{
    public Task InitializeAsync() => fx.SettleAsync();
    public Task DisposeAsync() => fx.SettleAsync();

    private void Print(PipelineResult result)
    {
        output.WriteLine($"{result.Outcome}: {result.Message} (deploy to ready {result.DeployToReady.TotalSeconds:F1} s)");
        foreach (var line in ReleasePipeline.Format(result))
            output.WriteLine(line);
    }

    private async Task<PipelineResult> ShipAsync(PipelineRequest request)
    {
        var result = await new ReleasePipeline(fx.Operator, line => output.WriteLine(line)).RunAsync(request with
        {
            ReadyTimeout = TimeSpan.FromSeconds(60), RolloutTimeout = TimeSpan.FromSeconds(180),
        });
        Print(result);
        return result;
    }

    /// <summary>Runs <paramref name="body"/> under client load (the judge compares mirrored live traffic) and checks no request failed.</summary>
    private async Task UnderLoadAsync(Func<Task> body)
    {
        using var stop = new CancellationTokenSource();
        var load = ClientLoad.RunAsync(fx.Http, stop.Token);
        try
        {
            await body();
        }
        finally
        {
            await stop.CancelAsync();
        }
        var (ok, failed) = await load;
        output.WriteLine($"client load: {ok} answered, {failed.Count} failed");
        Assert.Empty(failed);
    }

    /// <summary>The <c>$SRV.INFO</c> metadata a worker instance announces (waits for the re-registration after a switch).</summary>
    private async Task<Dictionary<string, string>> ServiceMetadataAsync(string instance, string release)
    {
        var until = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await foreach (var msg in fx.Operator.RequestManyAsync<byte[], byte[]>($"$SRV.INFO.{Subjects.WorkerService}", [],
                               replyOpts: new NATS.Client.Core.NatsSubOpts { Timeout = TimeSpan.FromMilliseconds(500) }, cancellationToken: cts.Token))
            {
                var metadata = JsonDocument.Parse(msg.Data!).RootElement.GetProperty("metadata").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
                if (metadata.GetValueOrDefault("instance") == instance && metadata.GetValueOrDefault("release") == release && !metadata.ContainsKey("loading"))
                    return metadata;
            }
            Assert.True(DateTime.UtcNow < until, $"worker {instance} announced no release {release} in $SRV.INFO");
            await Task.Delay(200);
        }
    }

    private static HashSet<string> WorkerIds(IEnumerable<PoolStatus> pools) => pools.SelectMany(p => p.Workers.Select(w => w.WorkerId)).ToHashSet();

    [Fact]
    public async Task A_pipeline_ships_a_new_model_file_and_profile_from_upload_to_Stable_under_load_with_no_failed_request_and_no_restart()
    {
        var colour = await fx.IdleColourAsync();
        var before = await fx.Ctl.StatusAsync();
        var workersBefore = WorkerIds(before.Pools!);
        var liveRelease = before.Pools!.Single(p => p.Colour == before.State!.Live).Assigned!.Release;
        var model = ModelFiles.Variant(fx.Dir, "rel02");
        var sha = await ModelStore.HashFileAsync(model, CancellationToken.None);
        Assert.NotEqual(fx.TinySha, sha);

        using var stop = new CancellationTokenSource();
        var load = ClientLoad.RunAsync(fx.Http, stop.Token);
        var result = await ShipAsync(new PipelineRequest
        {
            Release = "r2", ModelPath = model, Profile = PromptProfile.Load(Paths.Profile("v2")), Notes = "re-exported model, profile v2",
        });
        await stop.CancelAsync();
        var (ok, failed) = await load;

        Assert.Equal(PipelineOutcome.Promoted, result.Outcome);
        Assert.Equal(0, result.ExitCode);
        var status = await fx.Ctl.StatusAsync();
        Assert.Equal(colour, status.State!.Live);
        Assert.Equal(RolloutPhase.Stable, status.State.Phase);
        Assert.Empty(failed);
        Assert.True(ok > 20, $"{ok} requests answered");

        // The same worker processes (hosts) switched: nobody restarted them, and the colour's workers serve r2's model.
        Assert.Equal(workersBefore, WorkerIds(status.Pools!));
        var pool = status.Pools!.Single(p => p.Colour == colour);
        Assert.All(pool.Workers, w => Assert.Equal(("r2", sha), (w.Release, w.ModelSha256)));

        // Discovery says what the worker serves now: its services-framework registration was renewed with the release.
        var instance = (colour == "green" ? fx.GreenWorker : fx.BlueWorker).Services.GetRequiredService<ServiceIdentity>().InstanceId;
        var announced = await ServiceMetadataAsync(instance, "r2");
        Assert.Equal(("r2", sha, "true"), (announced["release"], announced["model_sha256"], announced["serving"]));

        // The audit log and the verdicts say which release and model digest they judged.
        Assert.Equal("start", result.Timeline[0].Trigger);
        Assert.All(result.Timeline.Where(e => e.State.RolloutId is not null), e => Assert.Equal(new ReleaseRef("r2", sha, "v2"), e.State.CandidateRelease));
        Assert.Equal(liveRelease, result.Timeline[0].State.LiveRelease!.Id);
        Assert.Contains(result.Timeline, e => e.Cause == "judge" && e.Reason.StartsWith("judge pass", StringComparison.Ordinal));
        Assert.NotNull(result.Verdict);
        Assert.Equal(("r2", sha), (result.Verdict!.CandidateRelease!.Id, result.Verdict.CandidateRelease.ModelSha256));
        Assert.Equal(liveRelease, result.Verdict.LiveRelease!.Id);
    }

    [Fact]
    public Task A_third_and_a_fourth_release_roll_out_one_after_another_with_no_configuration_edited() => UnderLoadAsync(async () =>
    {
        var third = ModelFiles.Variant(fx.Dir, "rel03");
        var shipped = await ShipAsync(new PipelineRequest { Release = "r3", ModelPath = third, Profile = PromptProfile.Load(Paths.Profile("v1")) });
        Assert.Equal(PipelineOutcome.Promoted, shipped.Outcome);

        // The fourth through the command a CI/CD job runs, as a process.
        var colour = await fx.IdleColourAsync();
        var fourth = ModelFiles.Variant(fx.Dir, "rel04");
        var (exit, stdout, stderr) = await Qwenctl.RunAsync(fx.Nats.Url,
            ["rollout", "--release", "r4", "--model", fourth, "--profile", Paths.Profile("v2"), "--notes", "fourth", "--ready-timeout", "60", "--timeout", "180"],
            TimeSpan.FromSeconds(240));
        output.WriteLine(stdout);
        output.WriteLine(stderr);
        Assert.Equal(0, exit);
        Assert.Contains("result: promoted", stdout);
        Assert.Contains("timeline:", stdout);
        var status = await fx.Ctl.StatusAsync();
        Assert.Equal(colour, status.State!.Live);
        Assert.Equal("r4", status.Pools!.Single(p => p.Colour == colour).Assigned!.Release);

        var listed = (await fx.Ctl.SendAsync(Rollouts.Verbs.Releases, "")).Releases!;
        Assert.Equal(["r4", "r3"], listed.Select(r => r.Release.Id).Take(2));
        Assert.Equal([colour], listed[0].DeployedTo);
    });

    [Fact]
    public async Task Refusals_change_nothing_and_say_why()
    {
        var before = await fx.Ctl.StatusAsync();
        var live = before.State!.Live;
        var idle = live == "blue" ? "green" : "blue";
        var liveAssigned = before.Pools!.Single(p => p.Colour == live).Assigned!;

        // Deploy to the live colour.
        var toLive = await fx.Ctl.SendAsync(Rollouts.Verbs.Deploy, new ControlRequest { Colour = live, Release = ReleaseFixture.FirstRelease });
        Assert.False(toLive.Ok);
        Assert.Equal("live_colour", toLive.Code);
        Assert.Contains("idle colour", toLive.Error);
        Assert.Equal(liveAssigned.DeployId, (await fx.PoolAsync(live)).Assigned!.DeployId);

        // A release whose model object does not hold what its name (the digest) says.
        var models = await fx.ModelsAsync();
        var claimed = new string('a', 64);
        await using (var other = File.OpenRead(Paths.Model))
            await models.PutAsync(new ObjectMetadata { Name = claimed }, other, leaveOpen: false);
        var forged = await fx.RegisterAsync("forged", claimed, "v1");
        Assert.False(forged.Ok);
        Assert.Equal("digest_mismatch", forged.Code);
        Assert.Contains(fx.TinySha, forged.Error);
        var missing = await fx.RegisterAsync("missing", new string('b', 64), "v1");
        Assert.Equal("model_not_found", missing.Code);
        // A release id never changes meaning.
        var reused = await fx.RegisterAsync(ReleaseFixture.FirstRelease, fx.TinySha, "v2");
        Assert.Equal("release_exists", reused.Code);
        Assert.Equal("v1", (await fx.Ctl.SendAsync(Rollouts.Verbs.Releases, "")).Releases!.Single(r => r.Release.Id == ReleaseFixture.FirstRelease).Release.Profile.Version);

        // Start before the candidate is ready: one more worker of the idle colour serves a model from its command line
        // and does not follow releases, so not every worker serves the assigned release.
        var stray = await fx.System.StartWorkerAsync(idle, "v1", extra: new() { ["Worker:WorkerId"] = $"{idle}-stray", ["Worker:FollowReleases"] = "false" });
        try
        {
            var notReady = await fx.WaitForPoolAsync(idle, p => p.Workers.Any(w => w.WorkerId == $"{idle}-stray"), TimeSpan.FromSeconds(10));
            Assert.False(notReady.Ready);
            var early = await fx.Ctl.SendAsync(Rollouts.Verbs.Start, new ControlRequest { Candidate = idle });
            Assert.False(early.Ok);
            Assert.Equal("pool_not_ready", early.Code);
            Assert.Contains($"{idle}-stray", early.Error);
            Assert.Equal(RolloutPhase.Stable, (await fx.Ctl.StatusAsync()).State!.Phase);
        }
        finally
        {
            await stray.StopAsync();
            stray.Dispose();
        }
        // The stray worker said it left; the promoter hears it a moment later (and the next test starts without it).
        await fx.WaitForPoolAsync(idle, p => p.Workers.All(w => w.WorkerId != $"{idle}-stray"), TimeSpan.FromSeconds(10));

        // A worker that cannot load the release (a corrupt file) says why, keeps serving its previous release, and the
        // pipeline stops at the deploy with exit code 6.
        var servedBefore = (await fx.PoolAsync(idle)).Workers.Single().Release;
        var corrupt = await fx.UploadAsync(ModelFiles.Corrupt(fx.Dir));
        Assert.True((await fx.RegisterAsync("broken", corrupt, "v1")).Ok);
        var result = await ShipAsync(new PipelineRequest { Release = "broken" });
        Assert.Equal(PipelineOutcome.DeployFailed, result.Outcome);
        Assert.Equal(6, result.ExitCode);
        var failedPool = await fx.PoolAsync(idle);
        Assert.True(failedPool.Failed);
        var worker = failedPool.Workers.Single();
        Assert.Equal(("broken", servedBefore), (worker.FailedRelease, worker.Release));
        Assert.Contains("cannot load", worker.Failure);
        Assert.Equal(RolloutPhase.Stable, (await fx.Ctl.StatusAsync()).State!.Phase);
        var startBroken = await fx.Ctl.SendAsync(Rollouts.Verbs.Start, new ControlRequest { Candidate = idle });
        Assert.Equal("release_failed", startBroken.Code);
        using (var request = Api.Post("/v1/sentiment", JsonSerializer.Serialize(new { input = "still served" })))
        {
            Api.ChooseColour(request, idle);
            using var answer = await fx.Http.SendAsync(request);
            var body = await answer.Content.ReadAsStringAsync();
            Assert.True(answer.IsSuccessStatusCode, body);
        }

        // Put the idle colour back on a good release for the tests that follow.
        Assert.True((await fx.Ctl.SendAsync(Rollouts.Verbs.Deploy, new ControlRequest { Colour = idle, Release = ReleaseFixture.FirstRelease })).Ok);
        await fx.WaitForPoolAsync(idle, p => p.Ready, TimeSpan.FromSeconds(60));
    }

    [Fact]
    public Task The_pipeline_exit_code_says_rolled_back_and_paused() => UnderLoadAsync(async () =>
    {
        // A drill release whose workers flip every sentiment label: the judge rolls it back.
        var bad = await fx.UploadAsync(ModelFiles.Variant(fx.Dir, "bad05"));
        Assert.True((await fx.RegisterAsync("flips", bad, "v1", new FaultOptions { Fraction = 1, FlipLabels = true })).Ok);
        var (exit, stdout, _) = await Qwenctl.RunAsync(fx.Nats.Url, ["rollout", "--release", "flips", "--ready-timeout", "60", "--timeout", "180"], TimeSpan.FromSeconds(240));
        output.WriteLine(stdout);
        Assert.Equal(3, exit);
        Assert.Contains("result: rolledback", stdout);
        Assert.Contains("judge fail", stdout);

        // A rollout an operator pauses.
        await fx.SettleAsync();
        Assert.True((await fx.RegisterAsync("held", bad, "v2")).Ok);
        var pipeline = Qwenctl.RunAsync(fx.Nats.Url, ["rollout", "--release", "held", "--ready-timeout", "60", "--timeout", "180"], TimeSpan.FromSeconds(240));
        using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90)))
        {
            while ((await fx.Ctl.StatusAsync(cts.Token)).State!.Phase != RolloutPhase.Shadow)
                await Task.Delay(100, cts.Token);
        }
        Assert.True((await fx.Ctl.SendAsync(Rollouts.Verbs.Pause, new ControlRequest { Reason = "look closer" })).Ok);
        (exit, stdout, _) = await pipeline;
        output.WriteLine(stdout);
        Assert.Equal(4, exit);
        Assert.Contains("result: paused", stdout);
    });
}
