using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.Options;
using NATS.Client.Core;
using NATS.Client.JetStream;
using QwenNats.Messaging;
using QwenNats.Messaging.Topology;
using QwenNats.ServiceDefaults;

namespace QwenNats.Ingress;

/// <summary>A request the ingress could not hand to a pool; becomes an HTTP error at once.</summary>
public sealed class DispatchException(int status, string code, string message) : Exception(message)
{
    public int Status { get; } = status;
    public string Code { get; } = code;
}

/// <summary>
/// Publishes inference work on the colour's JetStream work queue and routes the replies (sent by the
/// worker to <c>qwen.reply.&lt;ingress&gt;.&lt;request&gt;</c>) to the call waiting for them, through one
/// wildcard subscription per ingress.
/// </summary>
public sealed class InferClient(
    NatsConnection nats,
    INatsJSContext js,
    WorkerRegistry workers,
    TopologyClient topology,
    ServiceIdentity identity,
    IOptions<IngressOptions> options,
    IngressMetrics metrics,
    ILogger<InferClient> logger) : BackgroundService
{
    private const int MaxMessagesExceeded = 10077;
    private readonly ConcurrentDictionary<string, Channel<InferReply>> _calls = new();
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public string InstanceId { get; } = options.Value.InstanceId ?? identity.InstanceId;

    public Task Ready => _ready.Task;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await nats.ConnectAsync();
                await topology.EnsureOwnedAsync(Owners.Ingress, null, stoppingToken);
                await using var sub = await nats.SubscribeCoreAsync<InferReply>(Subjects.ReplyWildcard(InstanceId), cancellationToken: stoppingToken);
                _ready.TrySetResult();
                logger.LogInformation("Ingress {Instance} receiving replies on {Subject}", InstanceId, Subjects.ReplyWildcard(InstanceId));
                await foreach (var msg in sub.Msgs.ReadAllAsync(stoppingToken))
                {
                    var id = msg.Subject[(msg.Subject.LastIndexOf('.') + 1)..];
                    if (msg.Data is { } reply && _calls.TryGetValue(id, out var channel))
                        channel.Writer.TryWrite(reply);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                logger.LogWarning("Reply subscription not ready ({Reason}); retrying", e.Message);
                await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken);
            }
        }
    }

    /// <summary>Mirrors live requests to the candidate while a rollout runs (set by <see cref="ShadowMirror"/>).</summary>
    public ShadowMirror? Mirror { get; set; }

    /// <summary>Queues the request for the colour's pool; throws <see cref="DispatchException"/> when it cannot.</summary>
    public async Task<InferCall> StartAsync(string colour, InferRequest draft, CancellationToken ct)
    {
        try
        {
            return await StartLiveAsync(colour, draft, ct);
        }
        catch (DispatchException e)
        {
            metrics.Refused(colour, draft.Task, e.Status);
            throw;
        }
    }

    internal IngressMetrics Metrics => metrics;

    /// <summary>One line per request (never the user's text), with the request id for following it across services.</summary>
    internal void LogFinished(InferCall call, InferReply final, TimeSpan elapsed)
    {
        using var scope = logger.BeginScope(new Dictionary<string, object?> { ["request_id"] = call.Id, ["session_id"] = call.Request.SessionId });
        if (final.Result is { } r)
            logger.LogInformation("Served {Task} from {Colour} ({Profile}, {Worker}) in {Ms:F0} ms, {Completion} tokens, {Finish}",
                call.Request.Task, r.Colour, r.ProfileVersion, r.WorkerId, elapsed.TotalMilliseconds, r.CompletionTokens, r.FinishReason);
        else if (final.Error is { } e)
            logger.LogWarning("Failed {Task} on {Colour}: {Code} after {Ms:F0} ms", call.Request.Task, e.Colour ?? call.Colour, e.Code, elapsed.TotalMilliseconds);
    }

    private async Task<InferCall> StartLiveAsync(string colour, InferRequest draft, CancellationToken ct)
    {
        if (!workers.HasWorkers(colour))
            throw new DispatchException(503, ErrorCodes.NoWorkers, $"No worker of the {colour} pool is available.");
        if (!_ready.Task.IsCompleted)
            throw new DispatchException(503, ErrorCodes.NoWorkers, "The ingress is not connected to NATS yet.");
        if (!BusUp)
            throw new DispatchException(503, ErrorCodes.BusUnavailable, "The ingress has lost its connection to the message bus; retry shortly.");
        var pair = Mirror?.Begin(ref draft, colour);
        InferCall call;
        try
        {
            call = await PublishAsync(Subjects.Infer(colour), colour, draft, options.Value.RequestTimeout, ct);
        }
        catch
        {
            pair?.Abandon();
            throw;
        }
        call.Pair = pair;
        call.Measured = true;
        pair?.Launch();
        return call;
    }

    /// <summary>
    /// Queues a judge's scoring request (<see cref="InferTasks.Score"/>) on a colour's live work queue: it is
    /// short (one prompt decode, no generation) and must not starve behind live work the way mirrored work may.
    /// </summary>
    public Task<InferCall> StartScoringAsync(string colour, InferRequest draft, TimeSpan timeout, CancellationToken ct) =>
        PublishAsync(Subjects.Infer(colour), colour, draft, timeout, ct);

    /// <summary>Queues a mirrored copy on the candidate's shadow queue (lower priority than live work there).</summary>
    public Task<InferCall> StartShadowAsync(string colour, InferRequest draft, TimeSpan timeout, CancellationToken ct) =>
        PublishAsync(Subjects.Shadow(colour), colour, draft, timeout, ct);

    private async Task<InferCall> PublishAsync(string subject, string colour, InferRequest draft, TimeSpan timeout, CancellationToken ct)
    {
        var now = DateTimeOffset.UtcNow;
        var request = draft with
        {
            ReplyTo = Subjects.Reply(InstanceId, draft.Id),
            CreatedUnixMs = now.ToUnixTimeMilliseconds(),
            DeadlineUnixMs = (now + timeout).ToUnixTimeMilliseconds(),
        };
        var channel = Channel.CreateUnbounded<InferReply>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        _calls[request.Id] = channel;
        try
        {
            var traceparent = System.Diagnostics.Activity.Current is { IdFormat: System.Diagnostics.ActivityIdFormat.W3C } activity
                ? activity.Id!
                : $"00-{System.Diagnostics.ActivityTraceId.CreateRandom()}-{System.Diagnostics.ActivitySpanId.CreateRandom()}-01";
            var headers = new NatsHeaders { [Headers.RequestId] = request.Id, [Headers.TraceParent] = traceparent };
            var ack = await js.PublishAsync(subject, request, headers: headers, cancellationToken: ct);
            if (ack.Error is { } err)
            {
                throw err.ErrCode == MaxMessagesExceeded
                    ? new DispatchException(503, ErrorCodes.Overloaded, $"The {colour} pool's queue is full; retry shortly.")
                    : new DispatchException(503, ErrorCodes.Overloaded, $"The {colour} work queue refused the request: {err.Description}");
            }
        }
        catch (NatsJSApiException e) when (e.Error.ErrCode == MaxMessagesExceeded)
        {
            _calls.TryRemove(request.Id, out _);
            throw new DispatchException(503, ErrorCodes.Overloaded, $"The {colour} pool's queue is full; retry shortly.");
        }
        catch (DispatchException)
        {
            _calls.TryRemove(request.Id, out _);
            throw;
        }
        catch (Exception e) when (e is NatsException or TimeoutException)
        {
            _calls.TryRemove(request.Id, out _);
            logger.LogWarning("Publishing request {RequestId} failed: {Reason}", request.Id, e.Message);
            throw new DispatchException(503, ErrorCodes.NoWorkers, "The message bus is unavailable; retry shortly.");
        }
        return new InferCall(this, request, colour, channel.Reader, timeout);
    }

    internal bool BusUp => nats.ConnectionState == NatsConnectionState.Open;

    internal TimeSpan BusLostGrace => options.Value.BusLostGrace;

    /// <summary>True when the worker has stopped sending heartbeats (or said it is leaving).</summary>
    internal bool IsGone(string workerId) => !workers.Live().Any(w => w.WorkerId == workerId);

    internal async ValueTask EndAsync(InferCall call, bool finished)
    {
        _calls.TryRemove(call.Id, out _);
        if (finished) return;
        try
        {
            await nats.PublishAsync(Subjects.Cancel, new CancelRequest(call.Id));
        }
        catch (Exception e)
        {
            logger.LogDebug(e, "Cancel for {RequestId} not sent", call.Id);
        }
    }
}

/// <summary>
/// One request in flight. <see cref="ReadAsync"/> yields the worker's replies and always ends with
/// exactly one final reply: the worker's result or error, or a deadline / worker-lost error made here.
/// </summary>
public sealed class InferCall : IAsyncDisposable
{
    private readonly InferClient _client;
    private readonly ChannelReader<InferReply> _replies;
    private readonly CancellationTokenSource _deadline;
    private bool _finished;

    internal InferCall(InferClient client, InferRequest request, string colour, ChannelReader<InferReply> replies, TimeSpan timeout)
    {
        _client = client;
        Request = request;
        Colour = colour;
        _replies = replies;
        _deadline = new CancellationTokenSource(timeout);
    }

    public InferRequest Request { get; }
    public string Id => Request.Id;
    public string Colour { get; }
    public InferAccepted? Accepted { get; private set; }

    /// <summary>The mirrored copy of this request, when the rollout mirrors it.</summary>
    internal ShadowPair? Pair { get; set; }

    /// <summary>Live calls count in the request metrics; mirrored copies do not.</summary>
    internal bool Measured { get; set; }

    private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();

    private void Finish(InferReply final)
    {
        Pair?.SetLive(final);
        if (!Measured) return;
        _client.Metrics.Finished(Colour, Request.Task, final, _clock.Elapsed);
        _client.LogFinished(this, final, _clock.Elapsed);
    }

    public async IAsyncEnumerable<InferReply> ReadAsync([EnumeratorCancellation] CancellationToken ct = default)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, _deadline.Token);
        var chunksSent = 0;
        DateTimeOffset? busDownSince = null;
        while (!_finished)
        {
            InferReply? reply = null;
            var workerGone = false;
            var busGone = false;
            try
            {
                while (reply is null)
                {
                    // A reply already waiting is taken without any timer (the common case while streaming).
                    if (_replies.TryRead(out reply))
                        break;
                    // Otherwise wake up every second to check that the worker streaming this answer is still
                    // alive: its heartbeats stop when it dies, long before JetStream would redeliver the work.
                    using var tick = CancellationTokenSource.CreateLinkedTokenSource(linked.Token);
                    tick.CancelAfter(TimeSpan.FromSeconds(1));
                    try
                    {
                        reply = await _replies.ReadAsync(tick.Token);
                    }
                    catch (OperationCanceledException) when (!linked.IsCancellationRequested)
                    {
                        if (chunksSent > 0 && Accepted is { } serving && _client.IsGone(serving.WorkerId))
                        {
                            workerGone = true;
                            break;
                        }
                        if (_client.BusUp)
                            busDownSince = null;
                        else if ((busDownSince ??= DateTimeOffset.UtcNow) < DateTimeOffset.UtcNow - _client.BusLostGrace)
                        {
                            busGone = true;
                            break;
                        }
                    }
                }
            }
            catch (OperationCanceledException) when (_deadline.IsCancellationRequested && !ct.IsCancellationRequested)
            {
            }
            if (workerGone)
            {
                _finished = true;
                await _client.EndAsync(this, finished: false);
                var lost = InferReply.Of(new InferError { Id = Id, Code = ErrorCodes.WorkerLost, Message = "The worker serving this request stopped mid-answer; retry the request.", Colour = Colour, WorkerId = Accepted?.WorkerId });
                Finish(lost);
                yield return lost;
                yield break;
            }
            if (busGone)
            {
                _finished = true;
                await _client.EndAsync(this, finished: false);
                var unavailable = InferReply.Of(new InferError { Id = Id, Code = ErrorCodes.BusUnavailable, Message = "The ingress lost its connection to the message bus while this request was in flight; retry the request.", Colour = Colour });
                Finish(unavailable);
                yield return unavailable;
                yield break;
            }
            if (reply is null)
            {
                _finished = true;
                await _client.EndAsync(this, finished: false);
                var timedOut = InferReply.Of(new InferError { Id = Id, Code = ErrorCodes.DeadlineExceeded, Message = "The request did not complete before its deadline.", Colour = Colour });
                Finish(timedOut);
                yield return timedOut;
                yield break;
            }

            if (reply.Accepted is { } accepted)
            {
                if (Accepted is not null && accepted.Attempt > Accepted.Attempt && chunksSent > 0)
                {
                    // The first worker died after part of the answer was streamed: the client cannot be
                    // given a second, different beginning, so end clearly instead.
                    _finished = true;
                    await _client.EndAsync(this, finished: false);
                    var lost = InferReply.Of(new InferError { Id = Id, Code = ErrorCodes.WorkerLost, Message = "The worker serving this request stopped mid-answer; retry the request.", Colour = Colour });
                    Finish(lost);
                    yield return lost;
                    yield break;
                }
                Accepted = accepted;
            }
            else if (reply.Chunk is { } chunk && Accepted is { } current && chunk.Attempt != current.Attempt)
            {
                continue;
            }
            else if (reply.Chunk is not null)
            {
                chunksSent++;
            }
            if (reply.IsFinal)
            {
                _finished = true;
                Finish(reply);
            }
            yield return reply;
        }
    }

    public async ValueTask DisposeAsync()
    {
        Pair?.Abandon();
        await _client.EndAsync(this, _finished);
        _deadline.Dispose();
    }
}
