using QwenNats.Messaging.Topology;
using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using NATS.Client.JetStream;
using QwenNats.Messaging.Internal;

namespace QwenNats.Messaging;

/// <summary>Settings of one worker's <see cref="InferenceServer"/>.</summary>
public sealed record InferenceServerOptions
{
    public required string WorkerId { get; init; }
    public required string Colour { get; init; }

    /// <summary>Requests handled at once: one pull per free slot.</summary>
    public required int Slots { get; init; }

    /// <summary>How long one pull waits for live work.</summary>
    public TimeSpan FetchExpiry { get; init; } = TimeSpan.FromSeconds(5);

    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>On stop, how long requests in flight may take to finish.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How often an idle worker looks at its shadow queue: at first, and at most (it backs off between them while the queue is empty).</summary>
    public TimeSpan ShadowPollMin { get; init; } = TimeSpan.FromMilliseconds(20);
    public TimeSpan ShadowPollMax { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>With one slot, how long a pull for live work waits before the worker looks at its shadow queue again
    /// (more than 1 s).</summary>
    public TimeSpan LiveWaitBeforeShadow { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Where to report this worker's live work (<see cref="Subjects.HostLive"/> of its machine), for
    /// candidates there that yield to it; null: not reported.</summary>
    public string? HostLiveSubject { get; init; }

    /// <summary>Whether mirrored work may be taken now (a candidate yielding to live work on its machine:
    /// <see cref="HostYield.MayRunMirrors"/>); null: always.</summary>
    public Func<bool>? MirrorsMayRun { get; init; }
}

/// <summary>One request taken from a work queue, handed to the <see cref="IInferenceHandler"/>.</summary>
public sealed class InferenceWork(NatsConnection nats, InferRequest request, int attempt, double queueMs, string? traceId, long receivedUs = 0, bool mirrored = false)
{
    // Run once when the final reply has been handed to NATS (the server frees the slot then).
    private Action? _finalSent;

    // A reply was too large for the bus and the client was sent an error instead: nothing more goes out.
    private bool _tooLarge;

    internal InferenceWork WhenFinalSent(Action? action)
    {
        _finalSent = action;
        return this;
    }

    /// <summary>Taken from the shadow queue: a mirrored copy (or golden/comparison work), not live traffic.</summary>
    public bool Mirrored { get; } = mirrored;

    public InferRequest Request { get; } = request;

    /// <summary>1 on first delivery; higher when another worker took it and did not finish.</summary>
    public int Attempt { get; } = attempt;

    /// <summary>Time the request spent queued, in milliseconds.</summary>
    public double QueueMs { get; } = queueMs;

    public string? TraceId { get; } = traceId;

    /// <summary>When the worker's NATS client delivered the message (Unix microseconds, <see cref="UnixMicros"/>).</summary>
    public long ReceivedUs { get; } = receivedUs;

    /// <summary>
    /// The acceptance sent for this attempt (what it named as serving it). A handler that ends up serving the request
    /// with something else (a release switch between the acceptance and the start) sends a corrected one before any
    /// output; the client keeps the latest acceptance of an attempt.
    /// </summary>
    public InferAccepted? Accepted { get; set; }

    /// <summary>Sends one reply (chunk, result or error) to the client waiting for this request.</summary>
    public async ValueTask ReplyAsync(InferReply reply)
    {
        // An error names the attempt it ends, as a result does, so a client that gave this attempt up ignores it.
        if (reply.Error is { Attempt: 0 } error)
            reply = InferReply.Of(error with { Attempt = Attempt });
        if (_tooLarge)
            return; // the client was told already
        try
        {
            await nats.PublishAsync(Request.ReplyTo, reply);
        }
        catch (NatsPayloadTooLargeException)
        {
            // A final result with every token's log-probabilities can outgrow one message: the client is told at once
            // (and the work is done: a redelivery would make the same answer), instead of waiting for its deadline.
            _tooLarge = true;
            reply = InferReply.Of(new InferError
            {
                Id = Request.Id, Code = ErrorCodes.AnswerTooLarge, Attempt = Attempt, WorkerId = Accepted?.WorkerId, Colour = Accepted?.Colour,
                Message = $"The answer is larger than one message on the bus may be ({nats.ServerInfo?.MaxPayload ?? 0} bytes, the NATS server's max_payload); ask for fewer tokens (max_tokens) or fewer top_logprobs.",
            });
            await nats.PublishAsync(Request.ReplyTo, reply);
        }
        if (reply.IsFinal)
            Interlocked.Exchange(ref _finalSent, null)?.Invoke();
        // A publish only fills the connection's write buffer: the socket write runs as a thread-pool item queued behind
        // it. After the final reply this thread would go on to the ack, the slot and the next pull first (or wake another
        // thread, on another core, to write), so it steps aside once and the write goes out before that work.
        if (reply.IsFinal)
            await Task.Yield();
    }
}

/// <summary>What a worker does with the work its <see cref="InferenceServer"/> takes.</summary>
public interface IInferenceHandler
{
    /// <summary>
    /// The worker's heartbeat now (identity, model, profile, slots, busy). Its identity fields also stamp
    /// the <see cref="InferAccepted"/> reply sent before each request is handled.
    /// </summary>
    WorkerHeartbeat Heartbeat(bool leaving);

    /// <summary>Completes when the worker can take work (it has a model loaded); heartbeats flow meanwhile.</summary>
    Task WaitUntilServingAsync(CancellationToken ct);

    /// <summary>False while the worker should take no new work (it drains to switch releases).</summary>
    bool Taking { get; }

    /// <summary>
    /// Runs one request, replying through <see cref="InferenceWork.ReplyAsync"/> and ending with exactly one
    /// final reply. Returning acks the message; throwing leaves it unacked, so JetStream redelivers it.
    /// </summary>
    Task HandleAsync(InferenceWork work, CancellationToken cancelled);
}

/// <summary>
/// The worker side of the inference protocol: takes live requests offered directly (<see cref="Subjects.Direct"/>,
/// core NATS) while it has a free slot and refuses them at once otherwise, pulls from its colour's JetStream work queue
/// one message per free slot (so a busy worker never holds work an idle one could do), takes mirrored work from the shadow
/// queue only while no live work is waiting (live work is always admitted first; with one slot, a mirror runs
/// only when the live queue was just found empty), keeps each message with progress acks while it runs, acks only after
/// the final reply (a worker that dies leaves its work unacked for redelivery), sends heartbeats with its
/// free slots, stops requests on <see cref="Subjects.Cancel"/>, and drains requests in flight on stop.
/// </summary>
public sealed class InferenceServer(NatsConnection nats, TopologyClient topology, ILogger<InferenceServer> logger)
{
    // Requests running here, by id and attempt (a worker can hold two attempts of one request: a late direct offer and
    // its queued copy).
    private readonly ConcurrentDictionary<(string Id, int Attempt), CancellationTokenSource> _running = new();
    private readonly ConcurrentDictionary<Task, byte> _inFlight = new();

    // 1 while the live loop waits at the server for live work, holding a slot: then no live work is waiting,
    // and other free slots may take mirrored work.
    private int _liveWaiting;

    // Whether the direct offer subscription is up (announced in heartbeats).
    private bool _takingOffers;
    // Requests their clients cancelled while they were not running here, until their deadlines.
    private readonly ConcurrentDictionary<string, CancelRequest> _cancelled = new();
    // Set once the loops have stopped on shutdown, while the requests in flight finish.
    private bool _draining;

    // Live requests running now, and the count of live-load reports sent (HostLiveSubject).
    private readonly Lock _liveGate = new();
    private int _liveRunning;
    private long _liveSequence;
    // This process's reports (HostLiveLoad.Epoch): their sequence starts at 1 in every process.
    private readonly string _liveEpoch = Guid.NewGuid().ToString("N")[..12];

    private InferenceServerOptions? _options;

    /// <summary>
    /// Counts live requests running (<paramref name="change"/> +1 or -1; 0 only re-reports) and reports a start or an
    /// end of live work, or a renewal, on <see cref="InferenceServerOptions.HostLiveSubject"/>. The count and sequence
    /// are taken together, so a report sent late is recognised as older by its sequence.
    /// </summary>
    private void ReportLive(int change)
    {
        if (_options is not { HostLiveSubject: { } subject } o)
            return;
        HostLiveLoad load;
        lock (_liveGate)
        {
            var before = _liveRunning;
            _liveRunning += change;
            if (change != 0 && (before > 0) == (_liveRunning > 0))
                return;
            load = new HostLiveLoad { WorkerId = o.WorkerId, Colour = o.Colour, Live = _liveRunning, Sequence = ++_liveSequence, Epoch = _liveEpoch, UnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() };
        }
        try
        {
            var sent = nats.PublishAsync(subject, load);
            if (!sent.IsCompletedSuccessfully)
                _ = sent.AsTask().ContinueWith(t => Log.HostLoadNotSent(logger, t.Exception!), CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        }
        catch (Exception e)
        {
            Log.HostLoadNotSent(logger, e);
        }
    }

    /// <summary>Serves until <paramref name="stoppingToken"/> is cancelled, then drains and says it is leaving.</summary>
    public async Task RunAsync(IInferenceHandler handler, InferenceServerOptions options, CancellationToken stoppingToken)
    {
        var (consumer, shadow) = await ConnectAsync(options.Colour, stoppingToken);
        using var heartbeat = new PeriodicTimer(options.HeartbeatInterval);
        _options = options;
        // Heartbeats and cancels go on until the drain is over, not only until the stop: the clients of the requests
        // still running take a worker whose heartbeats stop for dead (and end or queue again what it is finishing).
        using var drained = new CancellationTokenSource();
        var heartbeats = HeartbeatLoopAsync(handler, heartbeat, drained.Token);
        var cancels = CancelLoopAsync(drained.Token);
        try
        {
            try
            {
                await handler.WaitUntilServingAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
            }
            Log.Serving(logger, options.WorkerId, Subjects.Infer(options.Colour), options.Slots);

            using var slots = new SemaphoreSlim(options.Slots, options.Slots);
            // One slot: the live loop itself takes mirrored work when its live pull comes back empty. More: the shadow
            // loop fills slots beside the one the live loop holds, and only while that one is waiting for live work.
            await Task.WhenAll(
                LiveLoopAsync(handler, options, consumer, options.Slots == 1 ? shadow : null, slots, stoppingToken),
                options.Slots == 1 ? Task.CompletedTask : ShadowLoopAsync(handler, options, consumer, shadow, slots, stoppingToken),
                options.Slots == 1 ? Task.CompletedTask : DirectLoopAsync(handler, options, slots, stoppingToken));

            // Clients stop counting this worker for new work at once; the calls it is finishing still see it alive.
            Volatile.Write(ref _draining, true);
            await PublishHeartbeatAsync(handler, CancellationToken.None);
            await DrainAsync(options.DrainTimeout);
        }
        finally
        {
            await drained.CancelAsync();
            await Task.WhenAll(heartbeats, cancels).ContinueWith(_ => { }, TaskScheduler.Default);
        }
        await nats.PublishAsync(Subjects.WorkerHeartbeat, handler.Heartbeat(leaving: true), cancellationToken: CancellationToken.None);
        // A publish only reaches the client's write buffer; a round trip makes sure the server has the goodbye before
        // the host disposes the connection, so registries drop this worker now instead of when its heartbeats go stale.
        try
        {
            using var flush = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await nats.PingAsync(flush.Token);
        }
        catch (Exception e) when (e is OperationCanceledException or NatsException)
        {
            Log.HeartbeatNotSent(logger, e);
        }
    }

    private async Task<(INatsJSConsumer Live, INatsJSConsumer Shadow)> ConnectAsync(string colour, CancellationToken ct)
    {
        return await Retry.UntilDoneAsync(logger, "Binding the work queue consumers", async token =>
        {
            await nats.ConnectAsync();
            await topology.EnsureOwnedAsync(Owners.Worker, colour, token);
            var bound = (await topology.ConsumerAsync(Subjects.WorkStream(colour), Subjects.WorkConsumer, token),
                         await topology.ConsumerAsync(Judging.ShadowStream(colour), Subjects.WorkConsumer, token));
            topology.MarkBound();
            return bound;
        }, ct);
    }

    /// <summary>
    /// Live work: one long-poll pull per free slot. With one slot (<paramref name="shadow"/> given) the same loop
    /// serves mirrored work, and only after live: when a live pull comes back empty it takes one mirror with a
    /// no-wait fetch; after a mirror it looks at the live queue first (no-wait) and takes the next mirror only if
    /// that is empty; with no mirror either, it waits for live work for <see cref="InferenceServerOptions.LiveWaitBeforeShadow"/>.
    /// </summary>
    private async Task LiveLoopAsync(IInferenceHandler handler, InferenceServerOptions options, INatsJSConsumer consumer, INatsJSConsumer? shadow,
        SemaphoreSlim slots, CancellationToken ct)
    {
        var mirrorsWaiting = false;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await slots.WaitAsync(ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            if (!handler.Taking)
            {
                slots.Release();
                await Delay(options.ShadowPollMin, ct);
                continue;
            }
            INatsJSMsg<InferRequest>? next;
            try
            {
                if (shadow is not null && mirrorsWaiting)
                {
                    next = await FetchNoWaitAsync(consumer, ct);
                }
                else
                {
                    Volatile.Write(ref _liveWaiting, 1);
                    try
                    {
                        var expires = shadow is null ? options.FetchExpiry : options.LiveWaitBeforeShadow;
                        next = await consumer.NextAsync<InferRequest>(opts: new NatsJSNextOpts { Expires = expires }, cancellationToken: ct);
                    }
                    finally
                    {
                        Volatile.Write(ref _liveWaiting, 0);
                    }
                }
            }
            catch (Exception e)
            {
                slots.Release();
                if (ct.IsCancellationRequested) return;
                Log.FetchFailed(logger, e);
                await Delay(TimeSpan.FromMilliseconds(500), ct);
                continue;
            }
            var mirrored = false;
            if (next is null && shadow is not null)
            {
                if (options.MirrorsMayRun?.Invoke() ?? true)
                {
                    // The live queue is empty: the slot may run one mirror.
                    next = await TakeMirrorAsync(shadow, ct);
                    mirrorsWaiting = mirrored = next is not null;
                }
                else
                {
                    // Mirrors must wait (live work elsewhere on this machine): wait at the server for live work, rather
                    // than asking again at once, over and over, for as long as that live work runs.
                    mirrorsWaiting = false;
                }
            }
            Dispatch(handler, options, next, slots, mirrored);
        }
    }

    /// <summary>
    /// Mirrored work with more than one slot: it takes a free slot only while the live loop holds another one
    /// waiting at the server for live work (so a live request that arrives gets that slot at once), mirrored work is
    /// pending and the live queue has nothing pending (consumer info of both, read before a slot is taken, so a live
    /// request offered directly meanwhile finds the slot free), with a no-wait pull; it backs off while there is no
    /// mirrored work.
    /// </summary>
    private async Task ShadowLoopAsync(IInferenceHandler handler, InferenceServerOptions options, INatsJSConsumer live, INatsJSConsumer shadow,
        SemaphoreSlim slots, CancellationToken ct)
    {
        var idle = options.ShadowPollMin;
        while (!ct.IsCancellationRequested)
        {
            if (Volatile.Read(ref _liveWaiting) == 0 || !(options.MirrorsMayRun?.Invoke() ?? true) || slots.CurrentCount == 0)
            {
                await Delay(options.ShadowPollMin, ct);
                continue;
            }
            if (!handler.Taking || !await PendingAsync(shadow, whenUnknown: false, ct))
            {
                // Nothing mirrored to do: look again later, less often the longer there is none.
                idle = TimeSpan.FromTicks(Math.Min(idle.Ticks * 2, options.ShadowPollMax.Ticks));
                await Delay(handler.Taking ? idle : options.ShadowPollMax, ct);
                continue;
            }
            idle = options.ShadowPollMin;
            if (await PendingAsync(live, whenUnknown: true, ct) || !slots.Wait(0))
            {
                await Delay(options.ShadowPollMin, ct);
                continue;
            }
            if (Volatile.Read(ref _liveWaiting) == 0)
            {
                slots.Release();
                continue;
            }
            var next = await TakeMirrorAsync(shadow, ct);
            if (ct.IsCancellationRequested && next is null) { slots.Release(); return; }
            Dispatch(handler, options, next, slots, mirrored: true);
            if (next is null)
                await Delay(options.ShadowPollMin, ct);
        }
    }

    /// <summary>Whether the consumer has messages not yet taken (<paramref name="whenUnknown"/> when that cannot be read now).</summary>
    private async Task<bool> PendingAsync(INatsJSConsumer consumer, bool whenUnknown, CancellationToken ct)
    {
        try
        {
            await consumer.RefreshAsync(ct);
            return consumer.Info.NumPending > 0;
        }
        catch (Exception e)
        {
            if (!ct.IsCancellationRequested)
                Log.ShadowFetchFailed(logger, e);
            return whenUnknown;
        }
    }

    /// <summary>One mirrored request if there is one now (a no-wait fetch), else null.</summary>
    private async Task<INatsJSMsg<InferRequest>?> TakeMirrorAsync(INatsJSConsumer shadow, CancellationToken ct)
    {
        try
        {
            return await FetchNoWaitAsync(shadow, ct);
        }
        catch (Exception e)
        {
            if (!ct.IsCancellationRequested)
                Log.ShadowFetchFailed(logger, e);
            return null;
        }
    }

    private static async Task<INatsJSMsg<InferRequest>?> FetchNoWaitAsync(INatsJSConsumer consumer, CancellationToken ct)
    {
        INatsJSMsg<InferRequest>? next = null;
        await foreach (var m in consumer.FetchNoWaitAsync<InferRequest>(new NatsJSFetchOpts { MaxMsgs = 1 }, cancellationToken: ct))
            next = m;
        return next;
    }

    private void Dispatch(IInferenceHandler handler, InferenceServerOptions options, INatsJSMsg<InferRequest>? next, SemaphoreSlim slots, bool mirrored)
    {
        if (next is not { } msg)
        {
            slots.Release();
            return;
        }
        if (!handler.Taking)
        {
            // The pull was open when the worker stopped taking work (it drains to switch releases): the request goes back
            // to the queue at once for another worker, instead of waiting here through the drain and the load.
            slots.Release();
            Track(GiveBackAsync(msg));
            return;
        }
        Track(HandleAsync(handler, options, msg, slots, mirrored));
    }

    private async Task GiveBackAsync(INatsJSMsg<InferRequest> msg)
    {
        try
        {
            await msg.NakAsync();
            Log.GaveBack(logger, msg.Data?.Id ?? "");
        }
        catch (Exception e)
        {
            Log.ProgressAckFailed(logger, e); // not given back: redelivered after the ack wait
        }
    }

    private void Track(Task task)
    {
        _inFlight.TryAdd(task, 0);
        _ = task.ContinueWith(t => _inFlight.TryRemove(t, out _), TaskScheduler.Default);
    }

    private static async Task Delay(TimeSpan delay, CancellationToken ct)
    {
        try
        {
            await Task.Delay(delay, ct);
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>
    /// A taken slot, freed once: as soon as the request's final reply is handed to NATS (before the JetStream ack and
    /// the rest of the bookkeeping, so a client that sends its next request the moment it has the answer finds the slot
    /// free), or when the handling ends without one.
    /// </summary>
    private sealed class Slot(SemaphoreSlim slots)
    {
        private int _freed;

        public void Free()
        {
            if (Interlocked.Exchange(ref _freed, 1) == 0)
                slots.Release();
        }
    }

    private async Task HandleAsync(IInferenceHandler handler, InferenceServerOptions options, INatsJSMsg<InferRequest> msg, SemaphoreSlim slots, bool mirrored)
    {
        if (!mirrored)
            ReportLive(+1);
        var slot = new Slot(slots);
        try
        {
            await ProcessAsync(handler, options, msg, mirrored, slot);
        }
        catch (Exception e)
        {
            Log.HandlerFailed(logger, e);
        }
        finally
        {
            if (!mirrored)
                ReportLive(-1);
            slot.Free();
        }
    }

    private Task ProcessAsync(IInferenceHandler handler, InferenceServerOptions options, INatsJSMsg<InferRequest> msg, bool mirrored, Slot slot)
    {
        if (msg.Error is not null || msg.Data is null)
        {
            Log.Undecodable(logger, msg.Error);
            return msg.AckTerminateAsync().AsTask();
        }
        var attempt = msg.Data.AttemptsBefore + (int)(msg.Metadata?.NumDelivered ?? 1);
        return ProcessAsync(handler, options, msg.Data, msg.Headers, attempt, msg, mirrored, slot);
    }

    /// <summary>Runs one request taken from JetStream (<paramref name="msg"/>, acked after the final reply) or offered
    /// directly (<paramref name="msg"/> null: nothing to ack; the client queues it again if this worker goes away).</summary>
    private async Task ProcessAsync(IInferenceHandler handler, InferenceServerOptions options, InferRequest request, NatsHeaders? headers, int attempt,
        INatsJSMsg<InferRequest>? msg, bool mirrored, Slot slot)
    {
        var receivedUs = UnixMicros.Now();
        var traceId = headers is { } h && h.TryGetValue(Headers.TraceParent, out var tp) ? Headers.TraceIdOf(tp.ToString()) : null;
        using var scope = logger.BeginScope(new Dictionary<string, object?> { ["request_id"] = request.Id, ["trace_id"] = traceId, ["attempt"] = attempt });
        var queueMs = request.CreatedUnixMs > 0 ? Math.Max(0, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - request.CreatedUnixMs) : 0;
        var work = new InferenceWork(nats, request, attempt, queueMs, traceId, receivedUs, mirrored).WhenFinalSent(slot.Free);

        if (request.DeadlineUnixMs > 0 && DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() > request.DeadlineUnixMs)
        {
            Log.SkippingExpired(logger, queueMs);
            await work.ReplyAsync(InferReply.Of(new InferError { Id = request.Id, Code = ErrorCodes.DeadlineExceeded, Message = "The deadline passed while the request was queued.", WorkerId = options.WorkerId, Colour = options.Colour }));
            if (msg is not null)
                await msg.AckAsync();
            return;
        }

        if (request.AnswerBudgetMs > 0)
            // Taken in time: from now the worker has its whole budget (the caller's deadline moves the same way on "accepted").
            work = new InferenceWork(nats, request = request with { DeadlineUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + request.AnswerBudgetMs }, attempt, queueMs, traceId, receivedUs, mirrored).WhenFinalSent(slot.Free);
        if (attempt > 1)
            Log.TakingOver(logger, attempt);
        using var cancel = new CancellationTokenSource();
        _running[(request.Id, attempt)] = cancel;
        try
        {
            // Cancelled by its client while it was queued (or just before it was registered here): dropped unrun.
            if (_cancelled.TryGetValue(request.Id, out var dropped) && dropped.Covers(attempt) && _cancelled.TryRemove(KeyValuePair.Create(request.Id, dropped)))
            {
                Log.SkippingCancelled(logger, request.Id);
                if (msg is not null)
                    await msg.AckAsync();
                return;
            }
            var me = handler.Heartbeat(leaving: false);
            work.Accepted = new InferAccepted
            {
                Id = request.Id, WorkerId = options.WorkerId, Colour = options.Colour, ModelId = me.ModelId, ProfileVersion = me.ProfileVersion, Attempt = attempt,
                Release = me.Release,
                TraceId = traceId,
            };
            await work.ReplyAsync(InferReply.Of(work.Accepted));
            // The message stays ours while the job runs, however long the prompt takes to evaluate: progress
            // acks on a timer, so a short AckWait redelivers the work of a dead worker quickly.
            using var keepAlive = new CancellationTokenSource();
            var keepingAlive = msg is null ? Task.CompletedTask : KeepAliveAsync(msg, topology.Table.Options.AckWait / 3, keepAlive.Token);
            try
            {
                await handler.HandleAsync(work, cancel.Token);
            }
            finally
            {
                await keepAlive.CancelAsync();
                await keepingAlive;
            }
            if (msg is not null)
                await msg.AckAsync();
        }
        finally
        {
            // Only this attempt's entry: another attempt of the same request on this worker (a redelivery, or a queued copy
            // of an offer whose acceptance came late) keeps its own, so a cancel still reaches it.
            _running.TryRemove(KeyValuePair.Create((request.Id, attempt), cancel));
        }
    }

    /// <summary>
    /// Live requests offered directly (<see cref="Subjects.Direct"/>, in the <see cref="Subjects.WorkConsumer"/> queue
    /// group, while the worker serves with more than one slot): one is taken when a slot is free beside the one the live
    /// loop's pull holds; otherwise (or while the worker takes no work) it is refused at once with an empty reply, and
    /// the client queues it in JetStream, where that pull takes it. (The pull's slot is never lent to an offer: its
    /// pull would stay open at the server and could take queued work while the worker is busy and another is idle.)
    /// With one slot the worker does not listen for offers (its heartbeat says so, and clients do not make them). On
    /// stop the subscription goes first, so offers find no responder and go to JetStream.
    /// </summary>
    private async Task DirectLoopAsync(IInferenceHandler handler, InferenceServerOptions options, SemaphoreSlim slots, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            INatsSub<InferRequest>? sub = null;
            try
            {
                sub = await nats.SubscribeCoreAsync<InferRequest>(Subjects.Direct(options.Colour), Subjects.WorkConsumer, cancellationToken: ct);
                Volatile.Write(ref _takingOffers, true);
                await foreach (var offer in sub.Msgs.ReadAllAsync(ct))
                    await OfferedAsync(handler, options, offer, slots, ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
            }
            catch (Exception e)
            {
                Log.DirectFailed(logger, e);
                await Delay(TimeSpan.FromMilliseconds(500), ct);
            }
            finally
            {
                if (sub is not null)
                {
                    Volatile.Write(ref _takingOffers, false);
                    await sub.DisposeAsync();
                    // Offers that arrived before the unsubscribe are refused, so their clients queue them at once.
                    while (sub.Msgs.TryRead(out var late))
                        await RefuseAsync(late.ReplyTo);
                }
            }
        }
    }

    private async ValueTask OfferedAsync(IInferenceHandler handler, InferenceServerOptions options, NatsMsg<InferRequest> offer, SemaphoreSlim slots, CancellationToken ct)
    {
        if (offer.ReplyTo is not { } replyTo)
            return;
        if (offer.Error is not null || offer.Data is null)
        {
            Log.Undecodable(logger, offer.Error);
            var id = offer.Headers is { } h && h.TryGetValue(Headers.RequestId, out var rid) ? rid.ToString() : "";
            await AnswerAsync(replyTo, InferReply.Of(new InferError { Id = id, Code = ErrorCodes.InvalidRequest, Message = "The worker could not decode the request.", WorkerId = options.WorkerId, Colour = options.Colour }));
            return;
        }
        if (!ct.IsCancellationRequested && handler.Taking && slots.Wait(0))
            Track(HandleDirectAsync(handler, options, offer, slots));
        else
            await RefuseAsync(replyTo);
    }

    private async Task HandleDirectAsync(IInferenceHandler handler, InferenceServerOptions options, NatsMsg<InferRequest> offer, SemaphoreSlim slots)
    {
        ReportLive(+1);
        var slot = new Slot(slots);
        try
        {
            await ProcessAsync(handler, options, offer.Data!, offer.Headers, offer.Data!.AttemptsBefore + 1, msg: null, mirrored: false, slot);
        }
        catch (Exception e)
        {
            Log.HandlerFailed(logger, e);
        }
        finally
        {
            ReportLive(-1);
            slot.Free();
        }
    }

    /// <summary>An empty reply: not taken here (no free slot, or not taking work); the client queues the request in JetStream.</summary>
    private async ValueTask RefuseAsync(string? replyTo)
    {
        if (replyTo is null) return;
        try
        {
            await nats.PublishAsync(replyTo, Array.Empty<byte>());
        }
        catch (Exception e)
        {
            Log.DirectAnswerFailed(logger, e);
        }
    }

    private async ValueTask AnswerAsync(string replyTo, InferReply reply)
    {
        try
        {
            await nats.PublishAsync(replyTo, reply);
        }
        catch (Exception e)
        {
            Log.DirectAnswerFailed(logger, e);
        }
    }

    private async Task KeepAliveAsync(INatsJSMsg<InferRequest> msg, TimeSpan every, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(every > TimeSpan.FromMilliseconds(100) ? every : TimeSpan.FromMilliseconds(100));
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                try
                {
                    await msg.AckProgressAsync(cancellationToken: ct);
                }
                catch (ObjectDisposedException)
                {
                    return; // the connection was disposed (the worker is shutting down): no ack can go out any more
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // One failed progress ack (the connection broke for a moment) must not end them all: the work would be
                    // redelivered mid-answer to another worker. The next tick tries again.
                    Log.ProgressAckFailed(logger, e);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>One heartbeat: whether this worker takes offers, and whether it drains (takes no new work, finishes what it has).</summary>
    private async Task PublishHeartbeatAsync(IInferenceHandler handler, CancellationToken ct)
    {
        try
        {
            var draining = Volatile.Read(ref _draining);
            var beat = handler.Heartbeat(leaving: false) with { TakesOffers = !draining && Volatile.Read(ref _takingOffers), Draining = draining };
            await nats.PublishAsync(Subjects.WorkerHeartbeat, beat, cancellationToken: ct);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Log.HeartbeatNotSent(logger, e);
        }
    }

    private async Task HeartbeatLoopAsync(IInferenceHandler handler, PeriodicTimer timer, CancellationToken ct)
    {
        try
        {
            do
            {
                await PublishHeartbeatAsync(handler, ct);
                if (Volatile.Read(ref _liveRunning) > 0)
                    ReportLive(0);
            }
            while (await timer.WaitForNextTickAsync(ct));
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task CancelLoopAsync(CancellationToken ct)
    {
        try
        {
            await foreach (var msg in nats.SubscribeAsync<CancelRequest>(Subjects.Cancel, cancellationToken: ct))
            {
                if (msg.Data is not { } c)
                    continue;
                var found = false;
                foreach (var ((id, attempt), cts) in _running)
                {
                    if (id != c.Id || !c.Covers(attempt))
                        continue;
                    found = true;
                    Log.Cancelling(logger, c.Id);
                    try
                    {
                        await cts.CancelAsync();
                    }
                    catch (ObjectDisposedException)
                    {
                        // The request finished between the lookup and the cancel: nothing left to cancel.
                    }
                }
                // Not running here: it may still wait in the queue (or an offer of it be on its way); whoever takes it
                // before its deadline drops it.
                if (!found)
                    RememberCancelled(c);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>On shutdown: stop pulling (done), let requests in flight finish within the drain timeout.</summary>
    private void RememberCancelled(CancelRequest c)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        if (c.DeadlineUnixMs <= now)
            return;
        // A cancel of the whole request is not narrowed by a later one of only its early attempts.
        _cancelled.AddOrUpdate(c.Id, c, (_, old) => old.BeforeAttempt <= 0 ? old with { DeadlineUnixMs = Math.Max(old.DeadlineUnixMs, c.DeadlineUnixMs) } : c);
        if (_cancelled.Count > 256)
            foreach (var (id, old) in _cancelled)
                if (old.DeadlineUnixMs <= now)
                    _cancelled.TryRemove(id, out _);
    }

    private async Task DrainAsync(TimeSpan timeout)
    {
        var pending = _inFlight.Keys.ToArray();
        if (pending.Length == 0) return;
        Log.Draining(logger, pending.Length);
        await Task.WhenAny(Task.WhenAll(pending), Task.Delay(timeout));
    }
}
