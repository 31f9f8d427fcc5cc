using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using QwenNats.Messaging;
using QwenNats.Messaging.Topology;
using QwenNats.Tests.Infrastructure;
using QwenNats.Worker;

namespace QwenNats.Tests.Integration;

/// <summary>
/// Shadow isolation on one box, each test on its own nats-server: a worker admits live work before mirrored work,
/// and a candidate colour decodes at a lower OS priority (Linux nice value) only while it is a candidate.
/// </summary>
public sealed class ShadowIsolationTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task Queued_live_work_is_admitted_before_queued_mirrors(int slots)
    {
        await using var server = await NatsServer.StartAsync();
        await using var nats = await Ctl.ConnectAsync(server);
        var js = new NatsJSContext(nats);
        var topology = new TopologyClient(js, new NatsKVContext(js), new QwenTopology(new TopologyOptions { Storage = "memory" }), NullLogger<TopologyClient>.Instance);
        await topology.EnsureOwnedAsync(Owners.Ingress, null, CancellationToken.None);

        var handler = new RecordingHandler();
        // Live requests that hold every slot until released, so the rest queues behind them.
        for (var i = 0; i < slots; i++)
            await PublishAsync(js, Subjects.Infer("blue"), $"hold-{i}");

        using var stop = new CancellationTokenSource();
        var worker = new InferenceServer(nats, topology, NullLogger<InferenceServer>.Instance);
        var running = worker.RunAsync(handler, new InferenceServerOptions
        {
            WorkerId = "w1", Colour = "blue", Slots = slots, FetchExpiry = TimeSpan.FromSeconds(2), LiveWaitBeforeShadow = TimeSpan.FromMilliseconds(1500),
            ShadowPollMin = TimeSpan.FromMilliseconds(5), ShadowPollMax = TimeSpan.FromMilliseconds(20),
        }, stop.Token);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (handler.Started.Count < slots)
            await Task.Delay(10, timeout.Token);

        // While the slots are busy: mirrors first (older), then live work.
        for (var i = 0; i < 3; i++)
            await PublishAsync(js, Subjects.Shadow("blue"), $"mirror-{i}");
        for (var i = 0; i < 3; i++)
            await PublishAsync(js, Subjects.Infer("blue"), $"live-{i}");
        // Give the shadow side every chance to grab a slot it should not have.
        await Task.Delay(300, timeout.Token);
        handler.ReleaseAll();

        while (handler.Started.Count < slots + 6)
            await Task.Delay(10, timeout.Token);
        await stop.CancelAsync();
        await running;

        var order = handler.Started.ToArray();
        var lastLive = Array.FindLastIndex(order, id => !id.StartsWith("mirror", StringComparison.Ordinal));
        var firstMirror = Array.FindIndex(order, id => id.StartsWith("mirror", StringComparison.Ordinal));
        Assert.True(lastLive < firstMirror, $"a mirror started before queued live work: {string.Join(", ", order)}");
        Assert.Equal(3, order.Count(id => id.StartsWith("mirror", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task A_mirrored_copy_is_cancelled_on_the_candidate_when_the_live_client_leaves_without_an_answer()
    {
        await using var nats = await NatsServer.StartAsync();
        await using var system = new QwenSystem(nats);
        var promoterSettings = RolloutFixture.PromoterSettings(nats.Url);
        promoterSettings["Promoter:Automatic"] = "false";
        using var promoter = QwenNats.Promoter.PromoterHost.Build([], c => Microsoft.Extensions.Configuration.MemoryConfigurationBuilderExtensions.AddInMemoryCollection(c, promoterSettings));
        await promoter.StartAsync();
        // Both colours slowed: the live answer is still streaming when its client leaves, and the copy still running.
        var slow = new Dictionary<string, string?> { ["Faults:Fraction"] = "1", ["Faults:Slowdown"] = "40" };
        await system.StartWorkerAsync("blue", "v1", extra: slow);
        await system.StartWorkerAsync("green", "v2", extra: slow);
        var (ingress, http) = await system.StartIngressAsync(new() { ["Shadow:ScoreChat"] = "false" });
        await using var op = await Ctl.ConnectAsync(nats);
        await Ctl.WaitForLeaderAsync(op);
        await Pools.WaitReadyAsync(op);
        Assert.True((await Ctl.SendAsync(op, "start", "{\"candidate\":\"green\"}")).Ok);
        var view = ingress.Services.GetRequiredService<QwenNats.Ingress.Routing.RolloutView>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (view.Current.Phase != RolloutPhase.Shadow)
            await Task.Delay(20, cts.Token);
        await using var cancels = await op.SubscribeCoreAsync<CancelRequest>(Subjects.Cancel, cancellationToken: cts.Token);
        await op.PingAsync(cts.Token);

        string id;
        using (var request = Api.Post("/v1/chat/completions", Api.ChatBody("Once upon a time", maxTokens: 300, stream: true, temperature: 0.8)))
        using (var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token))
        {
            Assert.True(response.IsSuccessStatusCode);
            id = response.Headers.GetValues("X-Request-Id").Single();
            await using var stream = await response.Content.ReadAsStreamAsync(cts.Token);
            Assert.True(await stream.ReadAsync(new byte[64], cts.Token) > 0); // the answer has begun; now the client leaves
        }

        // The live call is cancelled on blue, and its mirrored copy on green: nobody would read it.
        var cancelled = new HashSet<string>();
        while (!cancelled.Contains(id + "-shadow") || !cancelled.Contains(id))
            cancelled.Add((await cancels.Msgs.ReadAsync(cts.Token)).Data!.Id);
        await promoter.StopAsync();
    }

    [Fact]
    public async Task A_candidate_decodes_on_a_thread_with_a_higher_nice_value_and_a_live_colour_at_normal_priority()
    {
        Assert.True(OperatingSystem.IsLinux(), "thread nice values are a Linux feature; this test runs on Linux");
        const string colour = "nicetest";
        await using var server = await NatsServer.StartAsync();
        await using var nats = await Ctl.ConnectAsync(server);
        var js = new NatsJSContext(nats);
        var kv = new NatsKVContext(js);
        var topology = new TopologyClient(js, kv, new QwenTopology(new TopologyOptions { Storage = "memory", Colours = ["blue", colour] }), NullLogger<TopologyClient>.Instance);
        await topology.EnsureOwnedAsync(Owners.Ingress, null, CancellationToken.None);
        await topology.EnsureOwnedAsync(Owners.Promoter, null, CancellationToken.None);
        var rollout = await kv.GetStoreAsync(Rollouts.Bucket);

        await using var system = new QwenSystem(server);
        var host = await system.StartWorkerAsync(colour, "v2", extra: new()
        {
            ["Topology:Colours:0"] = "blue", ["Topology:Colours:1"] = colour, ["Worker:CandidateNice"] = "7",
        });
        var engine = host.Services.GetRequiredService<WorkerService>().Current!.Engine;
        var normal = ThreadNice.Current();
        var (bootThread, bootNice) = engine.DecodeThread;
        Assert.Equal(normal, bootNice);
        Assert.Equal(normal, NiceOf(bootThread));

        // Shadow, this colour the candidate: a new decode thread, 7 nice levels lower, and the old one gone.
        await rollout.PutAsync(Rollouts.StateKey, new RolloutState
        {
            Phase = RolloutPhase.Shadow, Live = "blue", Candidate = colour, RolloutId = "r-nice", Version = 1, Since = DateTimeOffset.UtcNow,
        });
        var candidateThread = await WaitForDecodeThreadAsync(engine, colour, normal + 7, other: bootThread);
        await AnswerAsync(nats, js, colour, "while-candidate");
        Assert.Equal(normal + 7, NiceOf(candidateThread));
        Assert.True(CpuTicksOf(candidateThread) > 0, "the decode (llama.cpp's compute) did not run on the decode thread");

        // Canary: the colour serves live sessions again, at normal priority, on a fresh thread.
        await rollout.PutAsync(Rollouts.StateKey, new RolloutState
        {
            Phase = RolloutPhase.Canary, Live = "blue", Candidate = colour, RolloutId = "r-nice", Weight = 10, Step = 1, Version = 2, Since = DateTimeOffset.UtcNow,
        });
        var liveThread = await WaitForDecodeThreadAsync(engine, colour, normal, other: candidateThread);
        await AnswerAsync(nats, js, colour, "while-live");
        Assert.Equal(normal, NiceOf(liveThread));
        Assert.True(CpuTicksOf(liveThread) > 0, "the decode did not run on the new decode thread");
    }

    /// <summary>A yielding candidate's machine, as its workers name it.</summary>
    private const string YieldHost = "yield-test";

    /// <summary>Settings of a worker that yields mirrored work to live work on <see cref="YieldHost"/>, with every request
    /// made slow (fault injection burns the CPU a costlier model would), so a pause can be caught mid-answer. Its
    /// heartbeat is the production default (1 s), so a busy report counts for 3 s, not the 0.75 s of the tests' fast
    /// heartbeats: a report renewed late on a loaded test machine must not read as the live worker gone.</summary>
    private static Dictionary<string, string?> Yielding(string workerId, double slowdown) => new()
    {
        ["Worker:HeartbeatInterval"] = "00:00:01",
        ["Worker:ShadowYield"] = "true", ["Worker:Host"] = YieldHost, ["Worker:WorkerId"] = workerId,
        ["Worker:ShadowYieldIdleAfter"] = "00:00:00.100", ["Worker:ShadowYieldChunk"] = "4",
        ["Faults:Fraction"] = slowdown > 1 ? "1" : "0", ["Faults:Slowdown"] = slowdown.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    [Fact]
    public async Task A_yielding_candidate_takes_no_mirror_and_pauses_the_one_it_runs_while_live_work_runs_on_its_machine()
    {
        await using var rig = await YieldRig.StartAsync("green", "v2", "green-1", slowdown: 100);
        var (nats, js) = (rig.Nats, rig.Js);
        await using var live = new LiveReports(nats, "blue-1");

        // The same greedy chat on green's live queue: its prompt decoded in one piece, never held back.
        var reference = await Exchange.StartAsync(nats, js, Subjects.Infer("green"), "reference", budgetMs: 0);
        var referenceResult = (await reference.FinalAsync(TimeSpan.FromSeconds(60))).Result!;
        Assert.True(referenceResult.TotalMs > 800, $"the slowed answer took {referenceResult.TotalMs:F0} ms: too short to pause one mid-way");
        Assert.Null(referenceResult.YieldedMs);

        // 1. Live work runs on the machine before the mirror arrives: the mirror is not taken.
        await live.BusyAsync();
        await Task.Delay(300);
        var waiting = await Exchange.StartAsync(nats, js, Subjects.Shadow("green"), "mirror-waiting", budgetMs: 60_000);
        await Task.Delay(1500);
        Assert.Null(waiting.Accepted);
        await live.IdleAsync();
        var waited = (await waiting.FinalAsync(TimeSpan.FromSeconds(60))).Result!;
        Assert.Equal(referenceResult.Text, waited.Text);

        // 2. Live work starts while the mirror runs: it pauses between two steps until the machine is idle again, and
        // the pause is reported apart from the time the candidate took (which decoded its prompt 4 tokens at a time).
        var running = await Exchange.StartAsync(nats, js, Subjects.Shadow("green"), "mirror-running", budgetMs: 60_000);
        await running.AcceptedAsync(TimeSpan.FromSeconds(30));
        await Task.Delay(200);
        await live.BusyAsync();
        await Task.Delay(2000);
        Assert.False(running.Finished, "the mirror finished while live work ran on the machine");
        await live.IdleAsync();
        var paused = (await running.FinalAsync(TimeSpan.FromSeconds(60))).Result!;
        Assert.Equal(referenceResult.Text, paused.Text);
        Assert.True(paused.YieldedMs >= 1500, $"held back {paused.YieldedMs} ms, expected about 2000");
        Assert.True(paused.TotalMs < referenceResult.TotalMs * 3, $"total {paused.TotalMs:F0} ms includes the pause (reference {referenceResult.TotalMs:F0} ms)");

        // 3. Held back past its deadline: ended as a capacity miss, not as the candidate's failure to answer.
        var late = await Exchange.StartAsync(nats, js, Subjects.Shadow("green"), "mirror-late", budgetMs: 1500);
        await late.AcceptedAsync(TimeSpan.FromSeconds(30));
        await live.BusyAsync();
        var final = late.FinalAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(ErrorCodes.ShadowYielded, (await final).Error?.Code);
        await live.IdleAsync();
    }

    [Fact]
    public async Task A_one_slot_candidate_held_back_by_live_work_waits_at_the_server_instead_of_asking_again_and_again()
    {
        await using var rig = await YieldRig.StartAsync("green", "v2", "green-1", slowdown: 100, slots: 1);
        var (nats, js) = (rig.Nats, rig.Js);
        await using var live = new LiveReports(nats, "blue-1");
        // A mirror held back past its deadline by live work on the machine: it ends while that live work goes on.
        var late = await Exchange.StartAsync(nats, js, Subjects.Shadow("green"), "mirror-late", budgetMs: 1500);
        await late.AcceptedAsync(TimeSpan.FromSeconds(30));
        await live.BusyAsync();
        Assert.Equal(ErrorCodes.ShadowYielded, (await late.FinalAsync(TimeSpan.FromSeconds(30))).Error?.Code);

        // Its pulls (JetStream's next-message requests) while the live work goes on for two more seconds.
        var pulls = 0;
        await using var sub = await nats.SubscribeCoreAsync<byte[]>("$JS.API.CONSUMER.MSG.NEXT.>");
        await nats.PingAsync();
        var counting = Task.Run(async () =>
        {
            await foreach (var _ in sub.Msgs.ReadAllAsync())
                Interlocked.Increment(ref pulls);
        });
        await Task.Delay(2000);
        await live.IdleAsync();
        Assert.True(Volatile.Read(ref pulls) <= 10, $"{pulls} pulls in 2 s while mirrors had to wait");
    }

    [Fact]
    public async Task An_engine_retired_by_a_release_switch_is_no_longer_woken_when_mirrors_may_run_again()
    {
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        // Never connected: the machine's live-load reports are fed in by hand.
        await using var nats = new NatsConnection();
        await using var yield = new HostYield(nats, new HostYieldOptions { Host = "box", WorkerId = "me", IdleAfter = TimeSpan.FromMilliseconds(100) },
            clock, NullLogger<HostYield>.Instance);
        var options = new WorkerOptions { ModelPath = Paths.Model, Slots = 1, ContextSize = 256, Threads = 1 };
        var retired = new LlamaEngine(options, ModelSource.FromOptions(options), PromptProfile.Load(Paths.Profile("v1")), NullLogger<LlamaEngine>.Instance);
        retired.YieldTo(yield, 16);
        var opened = 0;
        yield.Opened += () => opened++;
        await retired.DisposeAsync();

        // Live work on the machine starts and ends; once it has been idle long enough the gate opens again on the timer.
        yield.Observe(new HostLiveLoad { WorkerId = "live-1", Colour = "blue", Live = 1, Sequence = 1 });
        Assert.False(yield.MayRunMirrors);
        clock.Advance(TimeSpan.FromSeconds(1));
        yield.Observe(new HostLiveLoad { WorkerId = "live-1", Colour = "blue", Live = 0, Sequence = 2 });
        clock.Advance(TimeSpan.FromMilliseconds(150));
        Assert.True(yield.MayRunMirrors);
        Assert.Equal(1, opened);
    }

    [Fact]
    public async Task A_worker_that_yields_reports_when_its_live_work_starts_and_ends_and_never_for_mirrors()
    {
        await using var rig = await YieldRig.StartAsync("blue", "v1", "blue-1", slowdown: 1);
        var (nats, js) = (rig.Nats, rig.Js);
        var reports = new ConcurrentQueue<HostLiveLoad>();
        await using var sub = await nats.SubscribeCoreAsync<HostLiveLoad>(Subjects.HostLive(YieldHost));
        var listening = Task.Run(async () =>
        {
            await foreach (var msg in sub.Msgs.ReadAllAsync())
                if (msg.Data is { } load)
                    reports.Enqueue(load);
        });
        await nats.PingAsync();

        var mirror = await Exchange.StartAsync(nats, js, Subjects.Shadow("blue"), "a-mirror", budgetMs: 30_000);
        Assert.NotNull((await mirror.FinalAsync(TimeSpan.FromSeconds(30))).Result);
        await Task.Delay(300);
        Assert.Empty(reports);

        var request = await Exchange.StartAsync(nats, js, Subjects.Infer("blue"), "a-live-one", budgetMs: 0);
        Assert.NotNull((await request.FinalAsync(TimeSpan.FromSeconds(30))).Result);
        await Eventually.TrueAsync(() => reports.Any(r => r.Live == 0), TimeSpan.FromSeconds(10));
        var seen = reports.ToArray();
        Assert.All(seen, r => Assert.Equal("blue-1", r.WorkerId));
        Assert.Equal(1, seen[0].Live);
        Assert.Equal(0, seen[^1].Live);
        Assert.True(seen.Zip(seen.Skip(1)).All(p => p.Second.Sequence > p.First.Sequence), "sequences do not increase");
    }

    /// <summary>A nats-server with the work queues, and one real worker that yields (<see cref="Yielding"/>).</summary>
    private sealed class YieldRig(NatsServer server, NatsConnection nats, QwenSystem system) : IAsyncDisposable
    {
        public NatsConnection Nats { get; } = nats;
        public NatsJSContext Js { get; } = new(nats);

        public static async Task<YieldRig> StartAsync(string colour, string profile, string workerId, double slowdown, int slots = 2)
        {
            var server = await NatsServer.StartAsync();
            var nats = await Ctl.ConnectAsync(server);
            var js = new NatsJSContext(nats);
            var topology = new TopologyClient(js, new NatsKVContext(js), new QwenTopology(new TopologyOptions { Storage = "memory" }), NullLogger<TopologyClient>.Instance);
            await topology.EnsureOwnedAsync(Owners.Ingress, null, CancellationToken.None);
            var system = new QwenSystem(server);
            var rig = new YieldRig(server, nats, system);
            try
            {
                await system.StartWorkerAsync(colour, profile, slots: slots, extra: Yielding(workerId, slowdown));
            }
            catch
            {
                await rig.DisposeAsync();
                throw;
            }
            return rig;
        }

        public async ValueTask DisposeAsync()
        {
            await system.DisposeAsync();
            await Nats.DisposeAsync();
            await server.DisposeAsync();
        }
    }

    /// <summary>Live work reported on <see cref="YieldHost"/> as a live worker there reports it.</summary>
    private sealed class LiveReports(NatsConnection nats, string workerId) : IAsyncDisposable
    {
        // Renewed far more often than a busy report goes stale (the candidate's 3 heartbeats), so a busy box stays busy
        // on a loaded test machine, as a real live worker's heartbeat renewals keep it.
        private static readonly TimeSpan RenewEvery = TimeSpan.FromMilliseconds(100);
        private readonly SemaphoreSlim _sending = new(1, 1);
        private readonly CancellationTokenSource _stop = new();
        private Task _renewing = Task.CompletedTask;
        private long _sequence;
        private bool _busy;

        /// <summary>Live work starts on the machine, and stays until <see cref="IdleAsync"/>.</summary>
        public async Task BusyAsync()
        {
            Volatile.Write(ref _busy, true);
            await SendAsync(1);
            if (_renewing.IsCompleted)
                _renewing = RenewAsync(_stop.Token);
        }

        public async Task IdleAsync()
        {
            Volatile.Write(ref _busy, false);
            await SendAsync(0);
        }

        // Until disposed: while busy, the report is sent again every tick.
        private async Task RenewAsync(CancellationToken ct)
        {
            using var timer = new PeriodicTimer(RenewEvery);
            while (await timer.WaitForNextTickAsync(ct))
                await SendAsync(1);
        }

        // One at a time, so sequences go out in order.
        private async Task SendAsync(int live)
        {
            await _sending.WaitAsync();
            try
            {
                if (live > 0 && !Volatile.Read(ref _busy))
                    return;
                await nats.PublishAsync(Subjects.HostLive(YieldHost), new HostLiveLoad { WorkerId = workerId, Colour = "blue", Live = live, Sequence = ++_sequence });
                await nats.PingAsync();
            }
            finally
            {
                _sending.Release();
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await _renewing.ContinueWith(_ => { }, TaskScheduler.Default);
            _stop.Dispose();
        }
    }

    /// <summary>One request on a work queue and its replies.</summary>
    private sealed class Exchange
    {
        private readonly TaskCompletionSource<InferAccepted> _accepted = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource<InferReply> _final = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public InferAccepted? Accepted => _accepted.Task.IsCompletedSuccessfully ? _accepted.Task.Result : null;
        public bool Finished => _final.Task.IsCompleted;

        public static async Task<Exchange> StartAsync(NatsConnection nats, NatsJSContext js, string subject, string id, long budgetMs)
        {
            var exchange = new Exchange();
            var inbox = $"qwen.reply.test.{id}";
            var sub = await nats.SubscribeCoreAsync<InferReply>(inbox);
            _ = Task.Run(async () =>
            {
                await using (sub)
                    await foreach (var msg in sub.Msgs.ReadAllAsync())
                    {
                        if (msg.Data?.Accepted is { } a) exchange._accepted.TrySetResult(a);
                        if (msg.Data is { IsFinal: true } final)
                        {
                            exchange._final.TrySetResult(final);
                            return;
                        }
                    }
            });
            var ack = await js.PublishAsync(subject, new InferRequest
            {
                Id = id, Task = InferTasks.Chat, Messages = [new ChatMessage(ChatRoles.User, "Once upon a time, in a small town, there lived a girl")],
                Sampling = new SamplingParams { Temperature = 0, MaxTokens = 48, Seed = 1 }, ReplyTo = inbox, AnswerBudgetMs = budgetMs,
            });
            ack.EnsureSuccess();
            return exchange;
        }

        public async Task AcceptedAsync(TimeSpan timeout) => await _accepted.Task.WaitAsync(timeout);

        public async Task<InferReply> FinalAsync(TimeSpan timeout) => await _final.Task.WaitAsync(timeout);
    }

    /// <summary>Until the engine decodes on a thread other than <paramref name="other"/>, with the nice value wanted, and the other has exited.</summary>
    private static async Task<int> WaitForDecodeThreadAsync(LlamaEngine engine, string colour, int nice, int other)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        while (true)
        {
            var (tid, _) = engine.DecodeThread;
            if (tid != other && tid != 0 && NiceOf(tid) == nice && !File.Exists($"/proc/self/task/{other}/stat"))
            {
                Assert.Equal($"decode {colour}", File.ReadAllText($"/proc/self/task/{tid}/comm").Trim());
                return tid;
            }
            await Task.Delay(50, timeout.Token);
        }
    }

    /// <summary>A thread's nice value, from /proc/self/task/&lt;tid&gt;/stat (field 19).</summary>
    private static int NiceOf(int tid) => int.Parse(StatFields(tid)[18], System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>A thread's user plus system CPU time in clock ticks (fields 14 and 15).</summary>
    private static long CpuTicksOf(int tid)
    {
        var f = StatFields(tid);
        return long.Parse(f[13], System.Globalization.CultureInfo.InvariantCulture) + long.Parse(f[14], System.Globalization.CultureInfo.InvariantCulture);
    }

    private static string[] StatFields(int tid)
    {
        var stat = File.ReadAllText($"/proc/self/task/{tid}/stat");
        // The name (field 2) is in parentheses and may hold spaces: split after its closing parenthesis.
        var rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return ["pid", "comm", .. rest];
    }

    /// <summary>Sends one chat request to the colour's live queue and waits for its answer.</summary>
    private static async Task AnswerAsync(NatsConnection nats, NatsJSContext js, string colour, string id)
    {
        var inbox = $"qwen.reply.test.{id}";
        await using var sub = await nats.SubscribeCoreAsync<InferReply>(inbox);
        await js.PublishAsync(Subjects.Infer(colour), new InferRequest
        {
            Id = id, Task = InferTasks.Chat, Messages = [new ChatMessage(ChatRoles.User, "Once upon a time")],
            Sampling = new SamplingParams { Temperature = 0, MaxTokens = 24 }, ReplyTo = inbox,
        });
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await foreach (var msg in sub.Msgs.ReadAllAsync(timeout.Token))
        {
            if (msg.Data is not { IsFinal: true } final) continue;
            Assert.NotNull(final.Result);
            return;
        }
    }

    private static async Task PublishAsync(NatsJSContext js, string subject, string id)
    {
        var ack = await js.PublishAsync(subject, new InferRequest { Id = id, Task = InferTasks.Sentiment, Input = "fine", ReplyTo = $"qwen.reply.test.{id}" });
        ack.EnsureSuccess();
    }

    /// <summary>Records the order in which requests start; the first ones wait until <see cref="ReleaseAll"/>.</summary>
    private sealed class RecordingHandler : IInferenceHandler
    {
        private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public ConcurrentQueue<string> Started { get; } = new();
        public bool Taking => true;
        public void ReleaseAll() => _release.TrySetResult();
        public Task WaitUntilServingAsync(CancellationToken ct) => Task.CompletedTask;

        public WorkerHeartbeat Heartbeat(bool leaving) => new()
        {
            WorkerId = "w1", Colour = "blue", ModelId = "none", ModelSha256 = "", ProfileVersion = "", Slots = 1, UnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
            Leaving = leaving, Serving = true,
        };

        public async Task HandleAsync(InferenceWork work, CancellationToken cancelled)
        {
            Started.Enqueue(work.Request.Id);
            await _release.Task.WaitAsync(cancelled);
            await work.ReplyAsync(InferReply.Of(new InferError { Id = work.Request.Id, Code = ErrorCodes.Cancelled, Message = "test" }));
        }
    }
}
