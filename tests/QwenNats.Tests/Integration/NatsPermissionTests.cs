using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using QwenNats.Messaging;
using QwenNats.ServiceDefaults;
using QwenNats.Tests.Infrastructure;
using Xunit.Abstractions;

namespace QwenNats.Tests.Integration;

/// <summary>
/// The whole system on a nats-server running deploy/nats/auth.conf: every service under its own user
/// does its job without a single permission violation, and each forbidden action is refused.
/// </summary>
public sealed class NatsPermissionTests(ITestOutputHelper output)
{
    private static readonly NatsUsers Users = new();
    private static readonly IReadOnlyDictionary<string, string> Passwords = Users.Passwords;

    private static Dictionary<string, string?> As(string user) => Users.Settings(user);

    [Fact]
    public async Task Every_service_works_under_its_own_user_and_every_forbidden_action_is_refused()
    {
        await using var nats = await NatsServer.StartAsync(NatsUsers.AuthConf, Users.ServerEnvironment());
        await using var system = new QwenSystem(nats);
        var hosts = new List<IHost>();
        try
        {
            var promoter = RolloutFixture.PromoterSettings(nats.Url);
            foreach (var (k, v) in As("promoter")) promoter[k] = v;
            promoter["Promoter:PolicyPath"] = Path.Combine(Paths.RepoRoot, "deploy", "rollout-policy.json");
            promoter["Promoter:Automatic"] = "false";
            hosts.Add(Promoter.PromoterHost.Build([], c => c.AddInMemoryCollection(promoter)));
            var judge = new Dictionary<string, string?>
            {
                ["Nats:Url"] = nats.Url, ["Logging:LogLevel:Default"] = "Warning", ["Judge:PolicyPath"] = Path.Combine(Paths.RepoRoot, "deploy", "rollout-policy.json"),
                ["Judge:EvaluateInterval"] = "00:00:00.250", ["Topology:Storage"] = "memory",
            };
            foreach (var (k, v) in As("judge")) judge[k] = v;
            hosts.Add(Judge.JudgeHost.Build([], c => c.AddInMemoryCollection(judge)));
            foreach (var h in hosts) await h.StartAsync();
            await system.StartWorkerAsync("blue", "v1", slots: 2, extra: As("worker_blue"));
            await system.StartWorkerAsync("green", "v2", slots: 2, extra: As("worker_green"));
            var ingress = As("ingress");
            ingress["Console:OperatorToken"] = "permission-test-token";
            ingress["Console:NatsUser"] = "operator";
            ingress["Console:NatsPassword"] = Passwords["operator"];
            var (_, http) = await system.StartIngressAsync(ingress);
            await QwenSystem.WaitForWorkersAsync(http, "blue", 1, TimeSpan.FromSeconds(30));
            await QwenSystem.WaitForWorkersAsync(http, "green", 1, TimeSpan.FromSeconds(30));
            await using var op = await ConnectAsync(nats, "operator");
            await Ctl.WaitForLeaderAsync(op, TimeSpan.FromSeconds(30));
            await using var viewer = await ConnectAsync(nats, "viewer");
            // Operators and on-call hear the judge's verdicts.
            await using var opVerdicts = await op.SubscribeCoreAsync<byte[]>(Judging.VerdictSubject);
            await using var viewerVerdicts = await viewer.SubscribeCoreAsync<byte[]>(Judging.VerdictSubject);

            // The whole flow works: inference, a rollout started by an operator, mirrored samples judged,
            // pins, the console's action over the operator's user.
            using (var r = await http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"a fine day\"}", session: "perm-1")))
                Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            var start = await Ctl.SendAsync(op, "start", "{\"candidate\":\"green\",\"reason\":\"permissions test\"}");
            Assert.True(start.Ok, start.Error);
            for (var i = 0; i < 6; i++)
            {
                using var r = await http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("Once upon a time", 8), session: $"perm-chat-{i}"));
                Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            }
            using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20)))
                while ((await Ctl.SendAsync(op, "status", ct: cts.Token)).Verdict is not { Samples: > 0 } v || v.RolloutId != start.State!.RolloutId)
                    await Task.Delay(200, cts.Token);
            // What the operator and the viewer may read, as a NATS client we did not write would read it: the fleet
            // ($SRV.PING / $SRV.INFO by raw requests), a watch of the rollout state, the audit stream, the verdicts.
            foreach (var (user, c, verdicts) in new[] { ("operator", op, opVerdicts), ("viewer", viewer, viewerVerdicts) })
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
                var pings = await RawRequestManyAsync(c, "$SRV.PING", FleetServices, cts.Token);
                Assert.True(pings.All(p => p.GetProperty("type").GetString() == "io.nats.micro.v1.ping_response"), user);
                Assert.Equal(2, pings.Count(p => p.GetProperty("name").GetString() == Subjects.WorkerService));
                Assert.Contains(pings, p => p.GetProperty("name").GetString() == Subjects.PromoterService);
                Assert.Contains(pings, p => p.GetProperty("name").GetString() == Subjects.JudgeService);
                var infos = await RawRequestManyAsync(c, $"$SRV.INFO.{Subjects.WorkerService}", 2, cts.Token);
                Assert.Equal(["blue", "green"], infos.Select(i => i.GetProperty("metadata").GetProperty("colour").GetString()).Order());
                output.WriteLine($"{user} lists the fleet: {pings.Count} services, workers {string.Join(", ", infos.Select(i => i.GetProperty("metadata").GetProperty("worker_id").GetString()))}");

                var rollout = await new NatsKVContext(new NatsJSContext(c)).GetStoreAsync(Rollouts.Bucket, cts.Token);
                await foreach (var entry in rollout.WatchAsync<byte[]>(Rollouts.StateKey, cancellationToken: cts.Token))
                {
                    Assert.Contains("\"Shadow\"", Encoding.UTF8.GetString(entry.Value!), StringComparison.Ordinal);
                    break;
                }
                Assert.Contains("\"Shadow\"", Encoding.UTF8.GetString((await rollout.GetEntryAsync<byte[]>(Rollouts.StateKey, cancellationToken: cts.Token)).Value!), StringComparison.Ordinal);

                var audit = await new NatsJSContext(c).CreateOrderedConsumerAsync(Rollouts.EventsStream, cancellationToken: cts.Token);
                var events = new List<string>();
                await foreach (var m in audit.FetchAsync<byte[]>(new NatsJSFetchOpts { MaxMsgs = 10, Expires = TimeSpan.FromSeconds(2) }, cancellationToken: cts.Token))
                    events.Add(m.Subject);
                Assert.Contains(Rollouts.Event("start"), events);

                var verdict = await verdicts.Msgs.ReadAsync(cts.Token);
                Assert.Contains("\"samples\"", Encoding.UTF8.GetString(verdict.Data!), StringComparison.OrdinalIgnoreCase);
                output.WriteLine($"{user} watches {Rollouts.Bucket}, reads {events.Count} audit events and hears verdicts");

                // The same with nats.js, a client the project did not write: the fleet and a watch of the rollout state.
                var (code, stdout, stderr) = await NodeClients.RunAsync("nats-js", "fleet.mjs",
                    new Dictionary<string, string> { ["NATS_URL"] = nats.Url, ["NATS_USER"] = user, ["NATS_PASSWORD"] = Passwords[user], ["FLEET_SERVICES"] = $"{FleetServices}" }, TimeSpan.FromSeconds(60));
                Assert.True(code == 0, $"nats.js as {user}: exit {code}: {stderr}");
                var fleet = JsonDocument.Parse(stdout).RootElement;
                var services = fleet.GetProperty("services").EnumerateArray().Select(p => p.GetProperty("name").GetString()).ToList();
                Assert.Equal(2, services.Count(n => n == Subjects.WorkerService));
                Assert.Contains(Subjects.PromoterService, services);
                Assert.Contains(Subjects.JudgeService, services);
                Assert.Equal(["blue", "green"], fleet.GetProperty("infos").EnumerateArray()
                    .Where(i => i.GetProperty("name").GetString() == Subjects.WorkerService)
                    .Select(i => i.GetProperty("metadata").GetProperty("colour").GetString()).Order());
                Assert.Equal("Shadow", fleet.GetProperty("rollout").GetProperty("value").GetProperty("phase").GetString());
                output.WriteLine($"nats.js as {user}: {services.Count} services, rollout state revision {fleet.GetProperty("rollout").GetProperty("revision")}");
            }
            using (var abort = new HttpRequestMessage(HttpMethod.Post, "/api/console/actions/abort") { Content = Api.Json("{\"reason\":\"from the console\"}") })
            {
                abort.Headers.Authorization = new("Bearer", "permission-test-token");
                using var r = await http.SendAsync(abort);
                Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            }
            // A release: the operator uploads the model and registers and deploys it; the green worker fetches and serves it.
            var store = await new NATS.Client.ObjectStore.NatsObjContext(new NATS.Client.JetStream.NatsJSContext(op)).GetObjectStoreAsync(Releases.ModelsBucket);
            var sha = (await ModelStore.UploadAsync(store, Paths.Model, CancellationToken.None)).Sha256;
            var registered = await Ctl.SendAsync(op, "release", System.Text.Json.JsonSerializer.Serialize(new ControlRequest
            {
                Release = "perm-r1", ModelSha256 = sha, Profile = PromptProfile.Load(Paths.Profile("v2")),
            }, QwenJsonContext.Default.ControlRequest));
            Assert.True(registered.Ok, registered.Error);
            var deployed = await Ctl.SendAsync(op, "deploy", "{\"colour\":\"green\",\"release\":\"perm-r1\"}");
            Assert.True(deployed.Ok, deployed.Error);
            using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
                while ((await Ctl.SendAsync(op, "status", ct: cts.Token)).Pools!.Single(p => p.Colour == "green") is not { Ready: true } green || green.Assigned is null)
                    await Task.Delay(200, cts.Token);
            var legit = nats.Log.Where(l => l.Contains("Violation", StringComparison.Ordinal)).ToList();
            foreach (var l in legit) output.WriteLine("unexpected: " + l);
            Assert.Empty(legit);
            var before = (await Ctl.SendAsync(op, "status")).State!;

            // Forbidden actions, each refused by the server (and logged as a violation).
            var refused = new List<(string User, string What, string Subject)>();
            async Task TryPublishAsync(string user, string subject, string what)
            {
                await using var c = await ConnectAsync(nats, user);
                try
                {
                    await c.RequestAsync<byte[], byte[]>(subject, Encoding.UTF8.GetBytes("{\"candidate\":\"green\",\"reason\":\"forbidden\"}"),
                        replyOpts: new NatsSubOpts { Timeout = TimeSpan.FromSeconds(1) });
                }
                catch (NatsException)
                {
                }
                refused.Add((user, what, subject));
            }
            async Task TrySubscribeAsync(string user, string subject, string what)
            {
                await using var c = await ConnectAsync(nats, user);
                await using var sub = await c.SubscribeCoreAsync<byte[]>(subject);
                await c.PingAsync();
                refused.Add((user, what, subject));
            }
            await TryPublishAsync("ingress", Rollouts.Control("start"), "send an operator command");
            await TryPublishAsync("ingress", "$KV.qwen_rollout.state", "write the rollout state");
            await TryPublishAsync("ingress", Rollouts.Event("start"), "forge a rollout transition in the audit log");
            await TryPublishAsync("worker_blue", "$JS.API.CONSUMER.MSG.NEXT.QWEN_WORK_GREEN.workers", "take green work");
            await TryPublishAsync("worker_blue", Rollouts.Control("promote"), "send an operator command");
            await TryPublishAsync("worker_blue", Subjects.Infer("blue"), "publish inference work");
            await TryPublishAsync("worker_green", "$JS.API.CONSUMER.MSG.NEXT.QWEN_WORK_BLUE.workers", "take blue work");
            await TryPublishAsync("judge", Subjects.Infer("green"), "publish inference work");
            await TryPublishAsync("judge", "$KV.qwen_rollout.state", "write the rollout state");
            await TryPublishAsync("judge", Rollouts.Control("rollback"), "send an operator command");
            await TryPublishAsync("operator", "$KV.qwen_rollout.state", "write the rollout state");
            await TryPublishAsync("operator", "$JS.API.STREAM.DELETE.QWEN_EVENTS", "delete the audit log");
            await TryPublishAsync("operator", "$KV.qwen_releases.assign.green", "assign a release without the promoter");
            await TryPublishAsync("operator", "$JS.API.STREAM.DELETE.OBJ_qwen_models", "delete the model store");
            await TryPublishAsync("worker_blue", "$KV.qwen_releases.assign.blue", "assign itself a release");
            await TryPublishAsync("worker_green", "$O.qwen_models.M.x", "write the model store");
            await TrySubscribeAsync("worker_blue", Subjects.Root + ".reply.>", "read other services' replies");
            await TrySubscribeAsync("worker_blue", Subjects.Direct("green"), "take green's direct offers");
            await TryPublishAsync("judge", Subjects.Direct("blue"), "offer inference work");
            await TrySubscribeAsync("judge", Rollouts.ControlWildcard, "listen to operator commands");
            await TrySubscribeAsync("operator", Judging.SamplesSubjects, "read shadow samples");
            await TryPublishAsync("operator", Subjects.Infer("blue"), "publish inference work");
            await TryPublishAsync("operator", "$JS.API.CONSUMER.MSG.NEXT.QWEN_SAMPLES.judge", "take the judge's samples");
            await TrySubscribeAsync("operator", Rollouts.ControlWildcard, "listen to other operators' commands");
            // The viewer reads and nothing else: no control verb, not even a read-only one, no inference, no write.
            await TryPublishAsync("viewer", Rollouts.Control("start"), "send an operator command");
            await TryPublishAsync("viewer", Rollouts.Control("status"), "send an operator command");
            await TryPublishAsync("viewer", Subjects.Infer("blue"), "publish inference work");
            await TryPublishAsync("viewer", Subjects.Shadow("green"), "publish mirrored work");
            await TryPublishAsync("viewer", Subjects.Direct("blue"), "offer inference work");
            await TryPublishAsync("viewer", "$KV.qwen_rollout.state", "write the rollout state");
            await TryPublishAsync("viewer", "$KV.qwen_sessions.s1", "pin a session");
            await TryPublishAsync("viewer", "$O.qwen_models.M.x", "upload a model");
            await TryPublishAsync("viewer", "$JS.API.STREAM.PURGE.QWEN_EVENTS", "purge the audit log");
            await TryPublishAsync("viewer", "$JS.API.CONSUMER.MSG.NEXT.QWEN_WORK_BLUE.workers", "take blue work");
            await TrySubscribeAsync("viewer", Rollouts.ControlWildcard, "listen to operator commands");
            await TrySubscribeAsync("viewer", Judging.SamplesSubjects, "read shadow samples");
            await TrySubscribeAsync("viewer", "qwen.reply.>", "read other services' replies");
            // nats-server logs each violation as it refuses it; the log is read from its output as it comes.
            string? Violation(string user, string subject) => nats.Log.FirstOrDefault(l =>
                l.Contains("Violation", StringComparison.Ordinal) && l.Contains($"\"{user}\"", StringComparison.Ordinal) && l.Contains(subject, StringComparison.Ordinal));
            try
            {
                await Eventually.TrueAsync(() => refused.All(r => Violation(r.User, r.Subject) is not null), TimeSpan.FromSeconds(15));
            }
            catch (OperationCanceledException)
            {
                // Reported one by one below.
            }
            foreach (var (user, what, subject) in refused)
            {
                var line = Violation(user, subject);
                output.WriteLine($"{user} may not {what} ({subject}): {(line is null ? "NOT REFUSED" : "refused")}");
                Assert.True(line is not null, $"{user} was not refused to {what} ({subject})");
            }
            var after = (await Ctl.SendAsync(op, "status")).State!;
            Assert.Equal(before.Version, after.Version);
            // A wrong password gets no connection at all.
            await using var intruder = new NatsConnection(Nats.Options(nats.Url, user: "operator", password: "wrong") with { MaxReconnectRetry = 0 });
            await Assert.ThrowsAnyAsync<NatsException>(async () => await intruder.ConnectAsync());
        }
        finally
        {
            foreach (var h in hosts)
            {
                await h.StopAsync();
                h.Dispose();
            }
        }
    }

    /// <summary>The services of this test's fleet: two workers, the promoter and the judge.</summary>
    private const int FleetServices = 4;

    /// <summary>The replies to a raw request, as JSON (a services-discovery request, as `nats micro ls` sends it): until
    /// <paramref name="expected"/> have come, or 15 s have passed (a reply missing then fails the test's count).</summary>
    private static async Task<List<System.Text.Json.JsonElement>> RawRequestManyAsync(NatsConnection c, string subject, int expected, CancellationToken ct)
    {
        var replies = new List<System.Text.Json.JsonElement>();
        await foreach (var msg in c.RequestManyAsync<byte[], byte[]>(subject, [], replyOpts: new NatsSubOpts { MaxMsgs = expected, Timeout = TimeSpan.FromSeconds(15) }, cancellationToken: ct))
        {
            msg.EnsureSuccess();
            replies.Add(System.Text.Json.JsonDocument.Parse(msg.Data!).RootElement.Clone());
        }
        return replies;
    }

    private static async Task<NatsConnection> ConnectAsync(NatsServer nats, string user)
    {
        var c = Nats.Connect(nats.Url, user: user, password: Passwords[user]);
        await c.ConnectAsync();
        return c;
    }
}
