using System.Text.Json;
using NATS.Client.Core;
using QwenNats.Messaging;
using QwenNats.Messaging.Control;
using QwenNats.Tests.Infrastructure;
using Xunit.Abstractions;

namespace QwenNats.Tests.Integration;

/// <summary>
/// The pipeline (<c>qwenctl rollout</c>) against a control plane the test plays on a real nats-server, so the promoters'
/// answers can be scripted: here, an election while the pipeline follows a rollout.
/// </summary>
public sealed class ReleasePipelineTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_pipeline_following_a_rollout_waits_through_an_election_instead_of_failing()
    {
        await using var server = await NatsServer.StartAsync();
        await using var nats = QwenNats.Testing.Nats.Connect(server.Url);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var assignment = new Assignment { Colour = "green", Release = "r2", ModelSha256 = new string('a', 64), DeployId = "d-1" };
        var shadow = new RolloutState { Phase = RolloutPhase.Shadow, Live = "blue", Candidate = "green", RolloutId = "r-1", Version = 2 };
        var statuses = 0;
        await using var played = await nats.SubscribeCoreAsync<byte[]>(Rollouts.Control(">"), cancellationToken: cts.Token);
        var promoter = Task.Run(async () =>
        {
            await foreach (var msg in played.Msgs.ReadAllAsync(cts.Token))
            {
                var verb = msg.Subject["qwen.ctl.".Length..];
                var reply = verb switch
                {
                    Rollouts.Verbs.Deploy => new ControlReply { Ok = true, Assignment = assignment, State = new RolloutState { Live = "blue" } },
                    Rollouts.Verbs.Start => new ControlReply { Ok = true, State = shadow },
                    Rollouts.Verbs.History => new ControlReply { Ok = true, Events = [] },
                    Rollouts.Verbs.Status => ++statuses switch
                    {
                        // Before the deploy, then the pool ready.
                        1 => new ControlReply { Ok = true, State = new RolloutState { Live = "blue" }, Pools = [new PoolStatus { Colour = "blue", Ready = true }, new PoolStatus { Colour = "green" }] },
                        2 => new ControlReply { Ok = true, State = new RolloutState { Live = "blue" }, Pools = [new PoolStatus { Colour = "green", Ready = true, Assigned = assignment }] },
                        // Following the rollout: the leader dies; a standby answers no_leader until it takes the lease,
                        // and a leader that failed to answer says internal_error; then the rollout is seen promoted.
                        3 => new ControlReply { Ok = true, State = shadow },
                        4 or 5 => ControlReply.Refused("no_leader", "No promoter leads right now; retry shortly."),
                        6 => ControlReply.Refused("internal_error", "The promoter failed to handle the command."),
                        _ => new ControlReply { Ok = true, State = shadow with { Phase = RolloutPhase.Promoted, Live = "green", Candidate = null, Standby = "blue", Version = 5 } },
                    },
                    _ => ControlReply.Refused("unknown_verb", verb),
                };
                await msg.ReplyAsync(JsonSerializer.SerializeToUtf8Bytes(reply, QwenJsonContext.Default.ControlReply), cancellationToken: cts.Token);
            }
        }, cts.Token);
        await nats.PingAsync(cts.Token);

        var lines = new List<string>();
        var pipeline = new ReleasePipeline(nats, line => { lines.Add(line); output.WriteLine(line); });
        var result = await pipeline.ShipAsync(new PipelineRequest
        {
            Release = "r2", UntilPromoted = true, PollInterval = TimeSpan.FromMilliseconds(20), ReadyTimeout = TimeSpan.FromSeconds(20), RolloutTimeout = TimeSpan.FromSeconds(20),
        }, cts.Token);

        Assert.Equal(PipelineOutcome.Promoted, result.Outcome);
        Assert.True(statuses >= 7);
        Assert.Contains(lines, l => l.Contains("waiting: no_leader", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("waiting: internal_error", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("answer again", StringComparison.Ordinal));
        await cts.CancelAsync();
        await Task.WhenAny(promoter);
    }
}
