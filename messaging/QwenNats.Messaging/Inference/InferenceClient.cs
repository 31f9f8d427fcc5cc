using QwenNats.Messaging.Topology;
using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using NATS.Client.Core;
using NATS.Client.JetStream;
using QwenNats.Messaging.Internal;

namespace QwenNats.Messaging;

/// <summary>Starts inference requests on a colour's work queues.</summary>
public interface IInferenceClient
{
    /// <summary>Unique id of this client (its reply subjects live under it).</summary>
    string InstanceId { get; }

    /// <summary>Completes once the reply subscription is up.</summary>
    Task Ready { get; }

    /// <summary>
    /// Queues a request on <paramref name="colour"/>'s <paramref name="queue"/>. Expected refusals (no
    /// workers, queue full, bus unavailable) come back as a refused <see cref="InferenceStart"/>, never as exceptions.
    /// </summary>
    ValueTask<InferenceStart> TryStartAsync(InferenceQueue queue, string colour, InferRequest draft, TimeSpan timeout, CancellationToken ct);
}

/// <summary>
/// Starts inference work on a colour's workers and routes the replies (sent by the worker to
/// <see cref="Subjects.Reply"/> of this client) to the call waiting for them, through one wildcard subscription per
/// client. A live request is first offered to a worker with a free slot as a core NATS message
/// (<see cref="Subjects.Direct"/>); when no worker takes it (none listens, the one asked has no free slot, or its
/// acceptance does not come in time) it goes on the colour's JetStream work queue, which also holds all other work.
/// </summary>
public sealed class InferenceClient(
    NatsConnection nats,
    INatsJSContext js,
    WorkerRegistry workers,
    IOptions<InferenceOptions> options,
    IEnumerable<IInferenceObserver> observers,
    ILogger<InferenceClient> logger,
    TopologyClient topology) : BackgroundService, IInferenceClient
{
    private const int MaxMessagesExceeded = 10077;
    private readonly ConcurrentDictionary<string, Channel<ArrivedReply>> _calls = new();
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly IInferenceObserver[] _observers = observers.ToArray();

    public string InstanceId { get; } = options.Value.InstanceId;

    public Task Ready => _ready.Task;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var wildcard = Subjects.ReplyWildcard(InstanceId);
        await Retry.KeepRunningAsync(logger, "The reply subscription", async ct =>
        {
            await nats.ConnectAsync();
            if (options.Value.TopologyOwner is { } owner)
            {
                await topology.EnsureOwnedAsync(owner, null, ct);
                topology.MarkBound();
            }
            // Replies are routed to their calls by the connection's socket reader itself (no channel and task of the
            // subscription's own in between); the subscription is re-made by the client after a reconnect.
            await using var sub = new ReplyRouter(nats, wildcard, this);
            await nats.AddSubAsync(sub, ct);
            _ready.TrySetResult();
            Log.ReceivingReplies(logger, InstanceId, wildcard);
            await Task.Delay(Timeout.Infinite, ct);
        }, stoppingToken);
    }

    /// <summary>Hands one reply message to the call it belongs to (on the socket reader: short, and never throws).</summary>
    private void Route(string subject, int prefixLength, ReadOnlySequence<byte> payload)
    {
        if (subject.Length <= prefixLength || !_calls.TryGetValue(subject[prefixLength..], out var channel))
            return;
        var arrivedUs = UnixMicros.Now();
        InferReply? reply;
        try
        {
            reply = ReplySerializer.Deserialize(payload);
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or NatsException)
        {
            Log.ReplyUndecodable(logger, subject, e);
            return;
        }
        if (reply is not null)
            channel.Writer.TryWrite(new ArrivedReply(reply, arrivedUs));
    }

    /// <summary>A direct offer was not taken: the worker asked had no free slot, or (NATS's no-responders status) no worker listens.</summary>
    private void RouteNotTaken(string subject, int prefixLength)
    {
        if (subject.Length > prefixLength && _calls.TryGetValue(subject[prefixLength..], out var channel))
            channel.Writer.TryWrite(new ArrivedReply(null, UnixMicros.Now()));
    }

    private static readonly INatsDeserialize<InferReply> ReplySerializer = QwenSerializerRegistry.Default.GetDeserializer<InferReply>();

    /// <summary>The wildcard subscription on this client's reply subjects, delivering on the socket reader.</summary>
    private sealed class ReplyRouter(NatsConnection nats, string wildcard, InferenceClient client)
        : NatsSubBase(nats, nats.SubscriptionManager, wildcard, queueGroup: null, opts: null)
    {
        private readonly int _prefixLength = wildcard.Length - 1;

        protected override ValueTask ReceiveInternalAsync(string subject, string? replyTo, ReadOnlySequence<byte>? headersBuffer, ReadOnlySequence<byte> payloadBuffer)
        {
            // Every reply is JSON; an empty message is a refused direct offer (a worker's, or the server's 503 status).
            if (payloadBuffer.IsEmpty)
                client.RouteNotTaken(subject, _prefixLength);
            else
                client.Route(subject, _prefixLength, payloadBuffer);
            return ValueTask.CompletedTask;
        }

        protected override void TryComplete()
        {
        }
    }

    public async ValueTask<InferenceStart> TryStartAsync(InferenceQueue queue, string colour, InferRequest draft, TimeSpan timeout, CancellationToken ct)
    {
        var start = await StartAsync(queue, colour, draft, timeout, ct);
        if (!start.Started && queue == InferenceQueue.Live)
            foreach (var observer in _observers)
                observer.Refused(colour, draft, start);
        return start;
    }

    private async ValueTask<InferenceStart> StartAsync(InferenceQueue queue, string colour, InferRequest draft, TimeSpan timeout, CancellationToken ct)
    {
        var offer = false;
        if (queue == InferenceQueue.Live)
        {
            (var serving, offer) = workers.Pool(colour);
            if (!serving)
                return InferenceStart.NoWorkers($"No worker of the {colour} pool is available.");
            if (!_ready.Task.IsCompleted)
                return InferenceStart.NoWorkers("The ingress is not connected to NATS yet.");
            if (!BusUp)
                return InferenceStart.BusUnavailable("The ingress has lost its connection to the message bus; retry shortly.");
        }
        var subject = queue == InferenceQueue.Shadow ? Subjects.Shadow(colour) : Subjects.Infer(colour);
        var now = DateTimeOffset.UtcNow;
        var request = draft with
        {
            ReplyTo = Subjects.Reply(InstanceId, draft.Id),
            CreatedUnixMs = now.ToUnixTimeMilliseconds(),
            DeadlineUnixMs = (now + timeout).ToUnixTimeMilliseconds(),
        };
        var channel = Channel.CreateUnbounded<ArrivedReply>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        _calls[request.Id] = channel;
        try
        {
            var headers = RequestHeaders(request.Id);
            var publishedUs = UnixMicros.Now();
            var minAttempt = 1;
            if (offer && options.Value.DirectDelivery)
            {
                var (outcome, first, sentUs) = await OfferAsync(colour, request, headers, channel, ct);
                if (outcome == Offer.Taken)
                    return InferenceStart.Of(new InferenceCall(this, request, colour, queue, channel.Reader, timeout, first, directAttempt: 1) { PublishedUs = publishedUs, AckedUs = sentUs, Delivery = InferenceDelivery.Direct, Headers = headers });
                if (outcome == Offer.TimedOut)
                {
                    // The offer may have been lost, or its worker is only slow: the queued copy is attempt 2, whatever the
                    // direct attempt still sends is ignored, and a worker that took it late stops it (or drops it unrun),
                    // so a loaded machine, where acceptances come late, does not run the request twice.
                    request = request with { AttemptsBefore = 1 };
                    minAttempt = 2;
                    _ = CancelAsync(request.Id, request.DeadlineUnixMs, beforeAttempt: 2);
                }
                publishedUs = UnixMicros.Now();
            }
            var refused = await PublishAsync(subject, colour, request, headers, ct);
            if (refused is not null)
            {
                _calls.TryRemove(request.Id, out _);
                // The caller is told no, so nothing may run for it: an offer that timed out may have been taken after all,
                // and a publish whose acknowledgement was lost may have been stored. (A plain refusal of the queue needs no
                // cancel: nothing of the request is anywhere.)
                if (minAttempt > 1 || refused.Code == ErrorCodes.BusUnavailable)
                    _ = CancelAsync(request.Id, request.DeadlineUnixMs);
                return refused;
            }
            return InferenceStart.Of(new InferenceCall(this, request, colour, queue, channel.Reader, timeout, minAttempt: minAttempt)
            {
                PublishedUs = publishedUs, AckedUs = UnixMicros.Now(), Delivery = minAttempt > 1 ? InferenceDelivery.Requeued : InferenceDelivery.Queued, Headers = headers,
            });
        }
        catch
        {
            // The caller went away (or the publish failed) before the call existed: nothing else would forget the request
            // or cancel it on a worker that may have it already.
            if (_calls.TryRemove(request.Id, out _))
                _ = CancelAsync(request.Id, request.DeadlineUnixMs);
            throw;
        }
    }

    private static NatsHeaders RequestHeaders(string requestId)
    {
        var traceparent = Activity.Current is { IdFormat: ActivityIdFormat.W3C } activity
            ? activity.Id!
            : $"00-{ActivityTraceId.CreateRandom()}-{ActivitySpanId.CreateRandom()}-01";
        return new NatsHeaders { [Headers.RequestId] = requestId, [Headers.TraceParent] = traceparent };
    }

    private enum Offer { Taken, NotTaken, TimedOut }

    /// <summary>
    /// Offers a live request to one worker of <paramref name="colour"/> (core NATS, the workers' queue group) and waits
    /// for its first reply: its acceptance (or an error of its own) means taken; an empty reply (no free slot, or no
    /// worker listening) means not taken; nothing within <see cref="InferenceOptions.DirectAcceptTimeout"/>, timed out.
    /// </summary>
    private async ValueTask<(Offer, ArrivedReply, long SentUs)> OfferAsync(string colour, InferRequest request, NatsHeaders headers, Channel<ArrivedReply> channel, CancellationToken ct)
    {
        try
        {
            await nats.PublishAsync(Subjects.Direct(colour), request, headers: headers, replyTo: request.ReplyTo, cancellationToken: ct);
        }
        catch (Exception e) when (e is NatsException or TimeoutException)
        {
            return (Offer.NotTaken, default, 0); // JetStream's publish next says what is wrong with the bus
        }
        var sentUs = UnixMicros.Now();
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
        wait.CancelAfter(options.Value.DirectAcceptTimeout);
        try
        {
            var first = await channel.Reader.ReadAsync(wait.Token);
            return (first.Reply is null ? Offer.NotTaken : Offer.Taken, first, sentUs);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            Log.DirectTimedOut(logger, request.Id);
            return (Offer.TimedOut, default, sentUs);
        }
        catch (OperationCanceledException)
        {
            // The caller went away while a worker may already be on it.
            _calls.TryRemove(request.Id, out _);
            _ = CancelAsync(request.Id, request.DeadlineUnixMs);
            throw;
        }
    }

    /// <summary>
    /// Queues again in JetStream a request whose direct attempt (<paramref name="gone"/>) lost its worker before any
    /// answer, as the next attempt and under the same trace; null when queued, otherwise why not.
    /// </summary>
    internal ValueTask<InferenceStart?> RequeueAsync(InferenceCall call, InferAccepted gone)
    {
        Log.DirectRequeued(logger, gone.WorkerId, call.Id);
        return PublishAsync(Subjects.Infer(call.Colour), call.Colour, call.Request with { AttemptsBefore = gone.Attempt }, call.Headers, CancellationToken.None);
    }

    /// <summary>Publishes the request; null when JetStream took it, otherwise why not.</summary>
    private async ValueTask<InferenceStart?> PublishAsync(string subject, string colour, InferRequest request, NatsHeaders headers, CancellationToken ct)
    {
        try
        {
            var ack = await js.PublishAsync(subject, request, headers: headers, cancellationToken: ct);
            if (ack.Error is { } err)
                return err.ErrCode == MaxMessagesExceeded
                    ? QueueFull(colour)
                    : InferenceStart.QueueFull($"The {colour} work queue refused the request: {err.Description}");
            return null;
        }
        catch (NatsJSApiException e) when (e.Error.ErrCode == MaxMessagesExceeded)
        {
            return QueueFull(colour);
        }
        catch (NatsPayloadTooLargeException)
        {
            // Refused by the client before anything was sent (a direct offer of it was refused the same way): the same
            // request would be refused again, so this is no bus outage to retry.
            return InferenceStart.TooLarge($"The request is larger than one message on the bus may be ({nats.ServerInfo?.MaxPayload ?? 0} bytes, the NATS server's max_payload); send a shorter conversation.");
        }
        catch (Exception e) when (e is NatsException or TimeoutException)
        {
            Log.PublishFailed(logger, request.Id, e);
            return InferenceStart.BusUnavailable("The message bus is unavailable; retry shortly.");
        }
    }

    /// <summary>A reply and when this client's socket reader took it off the wire (Unix microseconds); no reply: a
    /// direct offer was not taken.</summary>
    internal readonly record struct ArrivedReply(InferReply? Reply, long ArrivedUs);

    private static InferenceStart QueueFull(string colour) => InferenceStart.QueueFull($"The {colour} pool's queue is full; retry shortly.");

    internal bool BusUp => nats.ConnectionState == NatsConnectionState.Open;

    internal TimeSpan BusLostGrace => options.Value.BusLostGrace;

    internal bool IsGone(string workerId) => workers.IsGone(workerId);

    internal void Finished(InferenceCall call, InferReply final, TimeSpan elapsed)
    {
        if (call.Queue != InferenceQueue.Live) return;
        foreach (var observer in _observers)
            observer.Finished(call, final, elapsed);
    }

    internal async ValueTask EndAsync(InferenceCall call, bool finished)
    {
        _calls.TryRemove(call.Id, out _);
        if (!finished)
            await CancelAsync(call.Id, call.Request.DeadlineUnixMs);
    }

    private async Task CancelAsync(string requestId, long deadlineUnixMs, int beforeAttempt = 0)
    {
        try
        {
            await nats.PublishAsync(Subjects.Cancel, new CancelRequest(requestId, deadlineUnixMs, beforeAttempt));
        }
        catch (Exception e)
        {
            Log.CancelNotSent(logger, requestId, e);
        }
    }
}
