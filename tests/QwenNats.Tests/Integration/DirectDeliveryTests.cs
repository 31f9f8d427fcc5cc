using Xunit.Abstractions;
using Microsoft.Extensions.DependencyInjection;
using NATS.Client.Core;
using NATS.Client.JetStream;
using QwenNats.Messaging;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>
/// Live requests offered directly to a free worker (core NATS, <see cref="Subjects.Direct"/>) and the JetStream work
/// queue behind it, each test on its own nats-server: a free worker takes the offer and the queue never sees the
/// request; an offer nobody takes is queued at once; a request whose direct worker goes away, or whose acceptance never
/// comes, is queued again and answered once, by a later attempt.
/// </summary>
public sealed class DirectDeliveryTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static InferRequest Sentiment(string id) => new() { Id = id, Task = InferTasks.Sentiment, Input = "What a lovely day", ReplyTo = "" };

    private static InferRequest LongChat(string id) => new()
    {
        Id = id, Task = InferTasks.Chat, Messages = [new ChatMessage(ChatRoles.User, "Once upon a time")],
        Sampling = new SamplingParams { Temperature = 0, MaxTokens = 200 }, ReplyTo = "",
    };

    private static async Task<ulong> QueuedEverAsync(NatsConnection nats, string colour) =>
        (await new NatsJSContext(nats).GetStreamAsync(Subjects.WorkStream(colour))).Info.State.LastSeq;

    private static async Task WaitForOffersAsync(WorkerRegistry registry, string colour, CancellationToken ct)
    {
        while (!registry.Pool(colour).TakesOffers)
            await Task.Delay(50, ct);
    }

    private static async Task<(List<InferAccepted> Accepts, InferReply Final)> ReadAllAsync(InferenceCall call, CancellationToken ct)
    {
        var accepts = new List<InferAccepted>();
        InferReply? final = null;
        await foreach (var reply in call.ReadAsync(ct))
        {
            if (reply.Accepted is { } a) accepts.Add(a);
            if (reply.IsFinal) final = reply;
        }
        return (accepts, final!);
    }

    [Fact]
    public async Task A_free_worker_takes_live_requests_directly_and_the_work_queue_never_holds_them()
    {
        await using var server = await NatsServer.StartAsync();
        await using var system = new QwenSystem(server);
        // Long acceptance and stale windows (each has a test of its own below): a loaded machine's late acceptance or
        // heartbeat must not send a request to the queue here.
        var (ingress, http) = await system.StartIngressAsync(new() { ["Ingress:DirectAcceptTimeout"] = "00:01:00", ["Ingress:WorkerStaleAfter"] = "00:00:30" });
        await system.StartWorkerAsync("blue", "v1", slots: 2, extra: new() { ["Worker:WorkerId"] = "direct-1" });
        using var cts = new CancellationTokenSource(Patience);
        await WaitForOffersAsync(ingress.Services.GetRequiredService<WorkerRegistry>(), "blue", cts.Token);
        await using var nats = Nats.Connect(server.Url);
        var client = ingress.Services.GetRequiredService<IInferenceClient>();

        for (var i = 0; i < 5; i++)
        {
            await using var call = (await client.TryStartAsync(InferenceQueue.Live, "blue", Sentiment($"direct-{i}"), Patience, cts.Token)).Call!;
            var (accepts, final) = await ReadAllAsync(call, cts.Token);
            Assert.True(final.Result is not null, $"request {i}: {final.Error?.Code} {final.Error?.Message}");
            Assert.Contains(final.Result.Label, new[] { "positive", "negative", "neutral" });
            Assert.Equal("direct-1", final.Result.WorkerId);
            Assert.Equal(1, final.Result.Attempt);
            Assert.Equal([1], accepts.Select(a => a.Attempt));
        }
        // Over HTTP too, and a streamed chat.
        using (var r = await http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"fine\"}"), cts.Token))
            Assert.Equal(System.Net.HttpStatusCode.OK, r.StatusCode);
        using (var r = await http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("Once upon a time", maxTokens: 8, stream: true)), cts.Token))
        {
            var events = await Api.ReadEventsAsync(r, cts.Token);
            Assert.Equal("[DONE]", events[^1]);
        }
        Assert.Equal(0UL, await QueuedEverAsync(nats, "blue"));

        // The same ingress with direct delivery off queues every request.
        var (queued, _) = await system.StartIngressAsync(new() { ["Ingress:DirectDelivery"] = "false" });
        await WaitForOffersAsync(queued.Services.GetRequiredService<WorkerRegistry>(), "blue", cts.Token);
        await using (var call = (await queued.Services.GetRequiredService<IInferenceClient>().TryStartAsync(InferenceQueue.Live, "blue", Sentiment("queued"), Patience, cts.Token)).Call!)
            Assert.NotNull((await ReadAllAsync(call, cts.Token)).Final.Result);
        Assert.Equal(1UL, await QueuedEverAsync(nats, "blue"));
    }

    [Fact]
    public async Task An_offer_the_worker_has_no_slot_for_is_refused_at_once_and_served_from_the_work_queue()
    {
        await using var server = await NatsServer.StartAsync();
        await using var system = new QwenSystem(server);
        // A long acceptance timeout: a refusal that did not come back would show as a test that times out.
        var (ingress, _) = await system.StartIngressAsync(new() { ["Ingress:DirectAcceptTimeout"] = "00:10:00" });
        await system.StartWorkerAsync("blue", "v1", slots: 2, extra: new() { ["Faults:Fraction"] = "1", ["Faults:Slowdown"] = "20" });
        using var cts = new CancellationTokenSource(Patience);
        await WaitForOffersAsync(ingress.Services.GetRequiredService<WorkerRegistry>(), "blue", cts.Token);
        await using var nats = Nats.Connect(server.Url);
        var client = ingress.Services.GetRequiredService<IInferenceClient>();

        // The first request takes the free slot directly; the other slot is the one the worker's queue pull holds.
        await using var first = (await client.TryStartAsync(InferenceQueue.Live, "blue", LongChat("first"), Patience, cts.Token)).Call!;
        Assert.Equal(1, (await FirstAcceptAsync(first, cts.Token)).Attempt);
        Assert.Equal(0UL, await QueuedEverAsync(nats, "blue"));

        await using var second = (await client.TryStartAsync(InferenceQueue.Live, "blue", Sentiment("second"), Patience, cts.Token)).Call!;
        var (accepts, final) = await ReadAllAsync(second, cts.Token);
        Assert.True(final.Result is not null, $"{final.Error?.Code} {final.Error?.Message}");
        Assert.Equal(1, final.Result.Attempt);
        Assert.Equal([1], accepts.Select(a => a.Attempt));
        Assert.Equal(1UL, await QueuedEverAsync(nats, "blue"));
        Assert.NotNull((await ReadAllAsync(first, cts.Token)).Final.Result);
    }

    [Fact]
    public async Task A_worker_told_to_stop_finishes_what_it_has_taken_and_its_client_does_not_take_it_for_gone()
    {
        await using var server = await NatsServer.StartAsync();
        await using var system = new QwenSystem(server);
        // A stale window of 20 heartbeats (a loaded machine can delay a few; a shorter window then forgets a live worker),
        // and an answer slowed to take several times longer: were the worker's heartbeats to stop with the stop, the
        // ingress would take it for gone (and queue the request again) before its answer.
        var (ingress, _) = await system.StartIngressAsync(new() { ["Ingress:WorkerStaleAfter"] = "00:00:05" });
        // A drain long enough for the slowed answer on a loaded machine (the answer takes seconds, the drain allows minutes).
        var worker = await system.StartWorkerAsync("blue", "v1", slots: 2,
            extra: new() { ["Faults:Fraction"] = "1", ["Faults:Slowdown"] = "100", ["Worker:DrainTimeout"] = "00:03:00" });
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        var registry = ingress.Services.GetRequiredService<WorkerRegistry>();
        await WaitForOffersAsync(registry, "blue", cts.Token);
        var client = ingress.Services.GetRequiredService<IInferenceClient>();

        await using var call = (await client.TryStartAsync(InferenceQueue.Live, "blue", LongChat("drained"), TimeSpan.FromMinutes(4), cts.Token)).Call!;
        var accepted = await FirstAcceptAsync(call, cts.Token);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var stopping = worker.StopAsync(cts.Token);
        // While it drains, it takes no new work: the pool has no other worker, so a new request is refused at once.
        while (registry.Pool("blue").Serving)
            await Task.Delay(20, cts.Token);
        Assert.False(registry.IsGone(accepted.WorkerId));
        var refused = await client.TryStartAsync(InferenceQueue.Live, "blue", Sentiment("while draining"), Patience, cts.Token);
        Assert.False(refused.Started);

        var (accepts, final) = await ReadAllAsync(call, cts.Token);
        var answeredAfter = clock.Elapsed;
        Assert.True(final.Result is not null, $"{final.Error?.Code} {final.Error?.Message}");
        Assert.Equal(1, final.Result.Attempt);
        Assert.Empty(accepts); // no second attempt
        // The answer outlasted the stale window plus the client's one-second look at the worker, so a worker whose
        // heartbeats stopped with the stop would have been taken for gone before it.
        Assert.True(answeredAfter > TimeSpan.FromSeconds(6), $"the answer came {answeredAfter.TotalMilliseconds:F0} ms after the stop: too soon to show anything");
        output.WriteLine($"answered {answeredAfter.TotalMilliseconds:F0} ms after the stop");
        await stopping;
        Assert.True(registry.IsGone(accepted.WorkerId));
        await using var nats = Nats.Connect(server.Url);
        Assert.Equal(0UL, await QueuedEverAsync(nats, "blue"));
    }

    [Fact]
    public async Task A_request_its_client_cancelled_while_it_was_queued_is_dropped_unrun()
    {
        await using var server = await NatsServer.StartAsync();
        await using var system = new QwenSystem(server);
        var (ingress, http) = await system.StartIngressAsync();
        // One slot: the worker takes work from the queue only, one request at a time, in order.
        await system.StartWorkerAsync("blue", "v1", slots: 1, extra: new() { ["Faults:Fraction"] = "1", ["Faults:Slowdown"] = "20" });
        await QwenSystem.WaitForWorkersAsync(http, "blue", 1);
        using var cts = new CancellationTokenSource(Patience);
        var client = ingress.Services.GetRequiredService<IInferenceClient>();
        // Whatever a worker sends for the cancelled request, seen from outside the ingress.
        await using var nats = Nats.Connect(server.Url);
        await using var watch = await nats.SubscribeCoreAsync<byte[]>(Subjects.Reply(client.InstanceId, "cancelled-while-queued"), cancellationToken: cts.Token);
        await nats.PingAsync(cts.Token);

        await using var busy = (await client.TryStartAsync(InferenceQueue.Live, "blue", LongChat("busy"), Patience, cts.Token)).Call!;
        await FirstAcceptAsync(busy, cts.Token);
        var cancelled = (await client.TryStartAsync(InferenceQueue.Live, "blue", Sentiment("cancelled-while-queued"), Patience, cts.Token)).Call!;
        await cancelled.DisposeAsync(); // the client goes away before any answer: a cancel goes out
        await using var after = (await client.TryStartAsync(InferenceQueue.Live, "blue", Sentiment("queued-after-it"), Patience, cts.Token)).Call!;

        Assert.NotNull((await ReadAllAsync(busy, cts.Token)).Final.Result);
        Assert.NotNull((await ReadAllAsync(after, cts.Token)).Final.Result);
        // The queue is served in order: by now the worker has taken the cancelled request, and sent nothing for it.
        Assert.Equal(3UL, await QueuedEverAsync(nats, "blue"));
        await nats.PingAsync(cts.Token);
        Assert.False(watch.Msgs.TryRead(out _), "the worker ran the cancelled request");
    }

    private static async Task<InferAccepted> FirstAcceptAsync(InferenceCall call, CancellationToken ct)
    {
        await foreach (var reply in call.ReadAsync(ct))
            if (reply.Accepted is { } a)
                return a;
        throw new InvalidOperationException("no acceptance");
    }

    /// <summary>
    /// A nats-server and an ingress that believes a blue worker (<paramref name="workerId"/>) listens for offers (one
    /// heartbeat says so, and no more follow); the test plays that worker, and the worker of the queue, itself.
    /// </summary>
    private sealed class PlayedPool : IAsyncDisposable
    {
        private NatsServer _server = null!;
        private QwenSystem _system = null!;
        public IInferenceClient Client { get; private set; } = null!;
        public WorkerRegistry Registry { get; private set; } = null!;
        public NatsConnection Nats { get; private set; } = null!;
        public INatsJSConsumer Queue { get; private set; } = null!;

        public static async Task<PlayedPool> StartAsync(Dictionary<string, string?> settings, string workerId)
        {
            var pool = new PlayedPool { _server = await NatsServer.StartAsync() };
            pool._system = new QwenSystem(pool._server);
            var (ingress, _) = await pool._system.StartIngressAsync(settings);
            pool.Registry = ingress.Services.GetRequiredService<WorkerRegistry>();
            pool.Client = ingress.Services.GetRequiredService<IInferenceClient>();
            await pool.Client.Ready;
            pool.Nats = QwenNats.Testing.Nats.Connect(pool._server.Url);
            pool.Queue = await QueueConsumerAsync(pool.Nats);
            pool._workerId = workerId;
            pool.Beat();
            return pool;
        }

        private string _workerId = "";

        /// <summary>The played worker's heartbeat, as of now: sent right before a request, so the request finds it fresh
        /// however long the test's setup took.</summary>
        public void Beat() => Registry.Record(new WorkerHeartbeat
        {
            WorkerId = _workerId, Colour = "blue", ModelId = "m", ModelSha256 = "0", ProfileVersion = "v1", Slots = 2, TakesOffers = true,
        }, DateTimeOffset.UtcNow);

        public async ValueTask DisposeAsync()
        {
            await Nats.DisposeAsync();
            await _system.DisposeAsync();
            await _server.DisposeAsync();
        }
    }

    /// <summary>The blue work queue's consumer, as a worker makes it (no real worker runs in these tests).</summary>
    private static async Task<INatsJSConsumer> QueueConsumerAsync(NatsConnection nats) =>
        await new NatsJSContext(nats).CreateOrUpdateConsumerAsync(Subjects.WorkStream("blue"),
            new NATS.Client.JetStream.Models.ConsumerConfig(Subjects.WorkConsumer) { AckPolicy = NATS.Client.JetStream.Models.ConsumerConfigAckPolicy.Explicit });

    /// <summary>Subscribes as a worker listening for blue's offers (the server has the subscription when this returns).</summary>
    private static async Task<INatsSub<InferRequest>> ListenForOffersAsync(NatsConnection nats, CancellationToken ct)
    {
        var offers = await nats.SubscribeCoreAsync<InferRequest>(Subjects.Direct("blue"), Subjects.WorkConsumer, cancellationToken: ct);
        await nats.PingAsync(ct);
        return offers;
    }

    private static async Task<INatsJSMsg<InferRequest>> NextQueuedAsync(INatsJSConsumer consumer, CancellationToken ct)
    {
        var queued = await consumer.NextAsync<InferRequest>(opts: new NatsJSNextOpts { Expires = TimeSpan.FromSeconds(30) }, cancellationToken: ct);
        Assert.NotNull(queued);
        return queued;
    }

    /// <summary>Replies as a worker would, in order.</summary>
    private static async Task SendAsync(NatsConnection nats, string replyTo, CancellationToken ct, params InferReply[] replies)
    {
        foreach (var reply in replies)
            await nats.PublishAsync(replyTo, reply, cancellationToken: ct);
    }

    private static InferAccepted Accept(string id, string workerId, int attempt) => new()
    {
        Id = id, WorkerId = workerId, Colour = "blue", ModelId = "m", ProfileVersion = "v1", Attempt = attempt,
    };

    private static InferResult Result(string id, string workerId, int attempt) => new()
    {
        Id = id, Task = InferTasks.Sentiment, FinishReason = FinishReasons.Stop, Label = "positive", WorkerId = workerId, Colour = "blue", ModelId = "m", ProfileVersion = "v1", Attempt = attempt,
    };

    [Fact]
    public async Task A_request_refused_after_its_offer_timed_out_is_cancelled_on_the_worker_that_may_have_taken_it()
    {
        // A queue of one message, and a worker that takes offers too slowly to be waited for.
        await using var pool = await PlayedPool.StartAsync(new() { ["Ingress:DirectAcceptTimeout"] = "00:00:00.300", ["Topology:MaxMessages"] = "1" }, "slow");
        var (client, nats) = (pool.Client, pool.Nats);
        using var cts = new CancellationTokenSource(Patience);
        await using var offers = await ListenForOffersAsync(nats, cts.Token);
        await using var cancels = await nats.SubscribeCoreAsync<CancelRequest>(Subjects.Cancel, cancellationToken: cts.Token);
        await nats.PingAsync(cts.Token);

        // The first fills the queue (its offer times out, so it is queued as attempt 2).
        pool.Beat();
        await using var first = (await client.TryStartAsync(InferenceQueue.Live, "blue", Sentiment("fills-the-queue"), Patience, cts.Token)).Call!;
        // The second's offer times out too, and the full queue refuses it: the client is told 503, so the worker that was
        // offered it must be told to drop it, were it to take it now.
        pool.Beat();
        var second = await client.TryStartAsync(InferenceQueue.Live, "blue", Sentiment("refused"), Patience, cts.Token);
        Assert.False(second.Started);
        Assert.Equal(ErrorCodes.Overloaded, second.Code);
        Assert.Equal("fills-the-queue", (await offers.Msgs.ReadAsync(cts.Token)).Data!.Id);
        Assert.Equal("refused", (await offers.Msgs.ReadAsync(cts.Token)).Data!.Id);
        // The first one's offer timed out: only that direct attempt is cancelled (its queued copy, attempt 2, is wanted).
        var late = await cancels.Msgs.ReadAsync(cts.Token);
        Assert.Equal(("fills-the-queue", 2), (late.Data!.Id, late.Data.BeforeAttempt));
        // The second's offer timed out too (a cancel of attempt 1), then the queue refused it: every attempt is cancelled.
        var cancel = await cancels.Msgs.ReadAsync(cts.Token);
        while (cancel.Data is { BeforeAttempt: > 0 })
            cancel = await cancels.Msgs.ReadAsync(cts.Token);
        Assert.Equal("refused", cancel.Data!.Id);
        Assert.True(cancel.Data.Covers(2));
        Assert.True(cancel.Data.DeadlineUnixMs > 0);
    }

    [Fact]
    public async Task An_offer_no_worker_listens_for_is_queued_at_once()
    {
        await using var pool = await PlayedPool.StartAsync(new() { ["Ingress:DirectAcceptTimeout"] = "00:10:00" }, "phantom");
        var (client, nats, consumer) = (pool.Client, pool.Nats, pool.Queue);
        using var cts = new CancellationTokenSource(Patience);

        // Nobody subscribes to qwen.blue.direct: the server answers the offer with its no-responders status and the
        // request is queued without waiting for the (ten-minute) acceptance timeout.
        var starting = client.TryStartAsync(InferenceQueue.Live, "blue", Sentiment("unheard"), Patience, cts.Token);
        var queued = await NextQueuedAsync(consumer, cts.Token);
        Assert.Equal("unheard", queued.Data!.Id);
        Assert.Equal(0, queued.Data.AttemptsBefore);
        await using var call = (await starting).Call!;
        await SendAsync(nats, queued.Data.ReplyTo, cts.Token, InferReply.Of(Accept("unheard", "queue-worker", 1)), InferReply.Of(Result("unheard", "queue-worker", 1)));
        await queued.AckAsync(cancellationToken: cts.Token);
        var (_, final) = await ReadAllAsync(call, cts.Token);
        Assert.Equal("queue-worker", final.Result?.WorkerId);
    }

    [Fact]
    public async Task A_request_whose_direct_worker_goes_away_before_answering_is_queued_again_and_answered_once()
    {
        await using var pool = await PlayedPool.StartAsync(new() { ["Ingress:WorkerStaleAfter"] = "00:00:03", ["Ingress:DirectAcceptTimeout"] = "00:10:00" }, "doomed");
        var (client, nats, consumer) = (pool.Client, pool.Nats, pool.Queue);
        using var cts = new CancellationTokenSource(Patience);

        // The doomed worker takes the offer, accepts, and stops: no answer, no more heartbeats.
        await using var offers = await ListenForOffersAsync(nats, cts.Token);
        pool.Beat();
        var starting = client.TryStartAsync(InferenceQueue.Live, "blue", Sentiment("orphan"), Patience, cts.Token);
        var offer = await offers.Msgs.ReadAsync(cts.Token);
        Assert.Equal("orphan", offer.Data!.Id);
        await nats.PublishAsync(offer.Data.ReplyTo, InferReply.Of(Accept("orphan", "doomed", 1)), cancellationToken: cts.Token);
        await using var call = (await starting).Call!;
        Assert.Equal(0UL, await QueuedEverAsync(nats, "blue"));
        var reading = ReadAllAsync(call, cts.Token); // as the ingress does while it waits for the answer

        // Once its heartbeats are stale the ingress queues the request again, as attempt 2.
        var requeued = await NextQueuedAsync(consumer, cts.Token);
        Assert.Equal("orphan", requeued.Data!.Id);
        Assert.Equal(1, requeued.Data.AttemptsBefore);
        Assert.True(pool.Registry.IsGone("doomed"));
        // Under the same trace as the offer, so both attempts are found by one trace id.
        Assert.Equal(offer.Headers![Headers.TraceParent].ToString(), requeued.Headers![Headers.TraceParent].ToString());
        // A late word from the gone attempt is ignored; the heir's answer is the one.
        await SendAsync(nats, offer.Data.ReplyTo, cts.Token,
            InferReply.Of(Result("orphan", "doomed", 1)), InferReply.Of(Accept("orphan", "heir", 2)), InferReply.Of(Result("orphan", "heir", 2)));
        await requeued.AckAsync(cancellationToken: cts.Token);
        var (accepts, final) = await reading;
        Assert.Equal("heir", final.Result?.WorkerId);
        Assert.Equal(2, final.Result?.Attempt);
        Assert.Equal([1, 2], accepts.Select(a => a.Attempt));
        Assert.Equal("heir", call.Accepted?.WorkerId);
    }

    [Fact]
    public async Task An_offer_not_accepted_in_time_is_queued_and_the_late_attempt_is_ignored()
    {
        await using var pool = await PlayedPool.StartAsync(new() { ["Ingress:DirectAcceptTimeout"] = "00:00:00.300" }, "slow");
        var (client, nats, consumer) = (pool.Client, pool.Nats, pool.Queue);
        using var cts = new CancellationTokenSource(Patience);

        await using var offers = await ListenForOffersAsync(nats, cts.Token);
        pool.Beat();
        var starting = client.TryStartAsync(InferenceQueue.Live, "blue", Sentiment("stalled"), Patience, cts.Token);
        var offer = await offers.Msgs.ReadAsync(cts.Token);
        // The slow worker says nothing until the request is in the queue.
        var queued = await NextQueuedAsync(consumer, cts.Token);
        Assert.Equal(1, queued.Data!.AttemptsBefore);
        await using var call = (await starting).Call!;
        await SendAsync(nats, offer.Data!.ReplyTo, cts.Token,
            InferReply.Of(Accept("stalled", "slow", 1)), InferReply.Of(Result("stalled", "slow", 1)),
            InferReply.Of(Accept("stalled", "queue-worker", 2)), InferReply.Of(Result("stalled", "queue-worker", 2)));
        await queued.AckAsync(cancellationToken: cts.Token);
        var (accepts, final) = await ReadAllAsync(call, cts.Token);
        Assert.Equal("queue-worker", final.Result?.WorkerId);
        Assert.Equal([2], accepts.Select(a => a.Attempt));
    }

    [Fact]
    public async Task A_result_of_an_attempt_a_later_one_took_over_from_is_ignored()
    {
        await using var pool = await PlayedPool.StartAsync(new() { ["Ingress:DirectAcceptTimeout"] = "00:10:00" }, "stalled");
        var (client, nats, consumer) = (pool.Client, pool.Nats, pool.Queue);
        using var cts = new CancellationTokenSource(Patience);

        // No worker listens for offers: the request is queued. Attempt 1's worker stalls past the ack wait, JetStream
        // hands the work to another worker (attempt 2), which streams; then the stalled one comes back with its result.
        var starting = client.TryStartAsync(InferenceQueue.Live, "blue", LongChat("taken-over"), Patience, cts.Token);
        var queued = await NextQueuedAsync(consumer, cts.Token);
        await using var call = (await starting).Call!;
        var chunk = new InferChunk { Id = "taken-over", Index = 0, Text = "Once", Attempt = 2 };
        var heirs = Result("taken-over", "heir", 2) with { Task = InferTasks.Chat, Text = "Once", Label = null };
        await SendAsync(nats, queued.Data!.ReplyTo, cts.Token,
            InferReply.Of(Accept("taken-over", "stalled", 1)), InferReply.Of(Accept("taken-over", "heir", 2)), InferReply.Of(chunk),
            InferReply.Of(Result("taken-over", "stalled", 1)), InferReply.Of(Accept("taken-over", "stalled", 1)),
            InferReply.Of(new InferError { Id = "taken-over", Code = ErrorCodes.InternalError, Message = "late", Attempt = 1 }),
            InferReply.Of(heirs));
        await queued.AckAsync(cancellationToken: cts.Token);
        var (accepts, final) = await ReadAllAsync(call, cts.Token);
        Assert.Equal("heir", final.Result?.WorkerId);
        Assert.Equal(2, final.Result?.Attempt);
        Assert.Equal([1, 2], accepts.Select(a => a.Attempt));
        Assert.Equal("heir", call.Accepted?.WorkerId);
    }

    [Fact]
    public async Task An_answer_missing_a_chunk_lost_on_the_bus_ends_with_an_error_instead_of_a_gap_in_its_text()
    {
        await using var pool = await PlayedPool.StartAsync(new() { ["Ingress:DirectAcceptTimeout"] = "00:10:00" }, "lossy");
        var (client, nats, consumer) = (pool.Client, pool.Nats, pool.Queue);
        using var cts = new CancellationTokenSource(Patience);

        var starting = client.TryStartAsync(InferenceQueue.Live, "blue", LongChat("gappy"), Patience, cts.Token);
        var queued = await NextQueuedAsync(consumer, cts.Token);
        await using var call = (await starting).Call!;
        InferReply Chunk(int index) => InferReply.Of(new InferChunk { Id = "gappy", Index = index, Text = $"<{index}>", Attempt = 1 });
        // Chunk 1 never arrives (sent while the ingress's connection was down and back within the grace).
        await SendAsync(nats, queued.Data!.ReplyTo, cts.Token, InferReply.Of(Accept("gappy", "lossy", 1)), Chunk(0), Chunk(2),
            InferReply.Of(Result("gappy", "lossy", 1) with { Task = InferTasks.Chat, Label = null, Text = "<0><1><2>" }));
        await queued.AckAsync(cancellationToken: cts.Token);

        var texts = new List<string>();
        InferReply? final = null;
        await foreach (var reply in call.ReadAsync(cts.Token))
        {
            if (reply.Chunk is { } c) texts.Add(c.Text);
            if (reply.IsFinal) final = reply;
        }
        Assert.Equal(["<0>"], texts);
        Assert.Equal(ErrorCodes.BusUnavailable, final?.Error?.Code);
        Assert.Contains("lost", final!.Error!.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_offer_accepted_too_late_is_stopped_on_its_worker_while_the_queued_copy_answers()
    {
        await using var server = await NatsServer.StartAsync();
        await using var system = new QwenSystem(server);
        // Every acceptance comes later than a microsecond: each offer times out and its request is queued as attempt 2,
        // while the worker has taken the offer too (a loaded machine, where acceptances come late).
        var (ingress, _) = await system.StartIngressAsync(new() { ["Ingress:DirectAcceptTimeout"] = "00:00:00.000001" });
        await system.StartWorkerAsync("blue", "v1", slots: 2, extra: new() { ["Worker:WorkerId"] = "late" });
        using var cts = new CancellationTokenSource(Patience);
        await WaitForOffersAsync(ingress.Services.GetRequiredService<WorkerRegistry>(), "blue", cts.Token);
        var client = ingress.Services.GetRequiredService<IInferenceClient>();
        await using var nats = Nats.Connect(server.Url);
        await using var watch = await nats.SubscribeCoreAsync<InferReply>(Subjects.Reply(client.InstanceId, "late-offer"), cancellationToken: cts.Token);
        await nats.PingAsync(cts.Token);

        await using var call = (await client.TryStartAsync(InferenceQueue.Live, "blue", LongChat("late-offer"), Patience, cts.Token)).Call!;
        Assert.Equal(InferenceDelivery.Requeued, call.Delivery);
        var (_, final) = await ReadAllAsync(call, cts.Token);
        Assert.Equal(2, final.Result?.Attempt);

        // What the worker sent for the offer (attempt 1): at most an acceptance, a few chunks and its 'cancelled' end;
        // never the whole answer a second time.
        InferReply? firstEnd = null;
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(cts.Token);
        wait.CancelAfter(TimeSpan.FromSeconds(5));
        try
        {
            await foreach (var msg in watch.Msgs.ReadAllAsync(wait.Token))
                if (msg.Data is { IsFinal: true } end && (end.Result?.Attempt ?? end.Error?.Attempt) == 1)
                {
                    firstEnd = end;
                    break;
                }
        }
        catch (OperationCanceledException) when (!cts.IsCancellationRequested)
        {
            // Nothing for attempt 1: the cancel reached the worker before the offer, which it then dropped unrun.
        }
        Assert.Null(firstEnd?.Result);
        if (firstEnd is not null)
            Assert.Equal(ErrorCodes.Cancelled, firstEnd.Error?.Code);
    }
}
