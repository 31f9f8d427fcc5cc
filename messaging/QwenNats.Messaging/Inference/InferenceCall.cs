using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;

namespace QwenNats.Messaging;

/// <summary>
/// One request in flight. <see cref="ReadAsync"/> yields the worker's replies and always ends with exactly
/// one final reply: the worker's result or error, or a deadline / worker-lost / bus-lost error made here.
/// Disposing a call that has not finished cancels it on the workers.
/// </summary>
public sealed class InferenceCall : IAsyncDisposable
{
    private readonly InferenceClient _client;
    private readonly ChannelReader<InferenceClient.ArrivedReply> _replies;
    private readonly CancellationTokenSource _deadline;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private bool _finished;

    // The first reply, already read by the client (a direct offer's acceptance).
    private InferenceClient.ArrivedReply? _first;

    // Replies of attempts below this are ignored: a direct attempt the client gave up on and queued again.
    private int _minAttempt;

    // The attempt a worker took directly (0: none): nothing redelivers it, so if that worker goes away before any
    // output the call queues the request in JetStream again.
    private int _directAttempt;

    internal InferenceCall(InferenceClient client, InferRequest request, string colour, InferenceQueue queue, ChannelReader<InferenceClient.ArrivedReply> replies, TimeSpan timeout,
        InferenceClient.ArrivedReply? first = null, int directAttempt = 0, int minAttempt = 1)
    {
        _client = client;
        Request = request;
        Colour = colour;
        Queue = queue;
        _replies = replies;
        _deadline = new CancellationTokenSource(timeout);
        _first = first;
        _directAttempt = directAttempt;
        _minAttempt = minAttempt;
    }

    /// <summary>A reply to skip: a direct offer's refusal, or a reply of an attempt given up on.</summary>
    private bool Skipped(InferReply? reply) =>
        reply is null || (reply.Accepted?.Attempt ?? reply.Chunk?.Attempt ?? reply.Result?.Attempt ?? (reply.Error is { Attempt: > 0 } e ? e.Attempt : int.MaxValue)) < _minAttempt;

    public InferRequest Request { get; }
    public string Id => Request.Id;
    public string Colour { get; }
    public InferenceQueue Queue { get; }
    public InferAccepted? Accepted { get; private set; }

    /// <summary>How the request reached its worker (it changes to <see cref="InferenceDelivery.Requeued"/> when a direct
    /// attempt is given up).</summary>
    public InferenceDelivery Delivery { get; internal set; }

    /// <summary>The NATS headers the request went out with (request id, trace context), for queueing it again.</summary>
    internal NATS.Client.Core.NatsHeaders Headers { get; init; } = [];

    /// <summary>When the request was handed to JetStream, and when JetStream acknowledged it (Unix microseconds).</summary>
    public long PublishedUs { get; internal set; }
    public long AckedUs { get; internal set; }

    /// <summary>When this client's socket reader took the final reply off the wire (Unix microseconds; 0 until then, and
    /// for a final reply made here).</summary>
    public long FinalArrivedUs { get; private set; }

    /// <summary>When the final reply reached this call (Unix microseconds; 0 until then).</summary>
    public long FinalUs { get; private set; }

    /// <summary>
    /// From the start of this call to the first output of the attempt that answers: its first streamed token (chat),
    /// or its result when nothing was streamed before it (sentiment). Null until then, and for a call that ended
    /// with an error before any output.
    /// </summary>
    public TimeSpan? FirstOutputAfter { get; private set; }

    /// <summary>Raised once with the final reply, before it is yielded.</summary>
    public event Action<InferenceCall, InferReply>? Finished;

    /// <summary>Raised when the call is disposed (finished or not).</summary>
    public event Action<InferenceCall>? Disposing;

    private void Finish(InferReply final)
    {
        FinalUs = UnixMicros.Now();
        _finished = true;
        Finished?.Invoke(this, final);
        _client.Finished(this, final, _clock.Elapsed);
    }

    /// <summary>Ends the call here with an error of our own: cancels it on the workers and reports it.</summary>
    private async ValueTask<InferReply> EndWithAsync(string code, string message, string? workerId = null)
    {
        _finished = true;
        await _client.EndAsync(this, finished: false);
        var error = InferReply.Of(new InferError { Id = Id, Code = code, Message = message, Colour = Colour, WorkerId = workerId });
        Finish(error);
        return error;
    }

    private const string WorkerLostMessage = "The worker serving this request stopped mid-answer; retry the request.";

    public async IAsyncEnumerable<InferReply> ReadAsync([EnumeratorCancellation] CancellationToken ct = default)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, _deadline.Token);
        var chunksSent = 0;
        DateTimeOffset? busDownSince = null;
        while (!_finished)
        {
            InferReply? reply = null;
            long arrivedUs = 0;
            var workerGone = false;
            var busGone = false;
            var requeue = false;
            try
            {
                while (reply is null)
                {
                    // A reply already waiting is taken without any timer (the common case while streaming).
                    if (_first is { } first)
                    {
                        _first = null;
                        (reply, arrivedUs) = first;
                    }
                    else if (_replies.TryRead(out var waiting))
                    {
                        (reply, arrivedUs) = waiting;
                    }
                    if (reply is not null && !Skipped(reply))
                        break;
                    reply = null;
                    if (_replies.TryPeek(out _))
                        continue;
                    // Otherwise wake up every second to check that the worker streaming this answer is still
                    // alive: its heartbeats stop when it dies, long before JetStream would redeliver the work.
                    using var tick = CancellationTokenSource.CreateLinkedTokenSource(linked.Token);
                    tick.CancelAfter(TimeSpan.FromSeconds(1));
                    try
                    {
                        (reply, arrivedUs) = await _replies.ReadAsync(tick.Token);
                        if (Skipped(reply))
                            reply = null;
                    }
                    catch (OperationCanceledException) when (!linked.IsCancellationRequested)
                    {
                        if (Accepted is { } serving && _client.IsGone(serving.WorkerId))
                        {
                            if (chunksSent > 0)
                            {
                                workerGone = true;
                                break;
                            }
                            if (serving.Attempt == _directAttempt)
                            {
                                requeue = true;
                                break;
                            }
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
            if (requeue)
            {
                // Nothing was sent yet: the request goes on the JetStream work queue, as a worker's death would leave it
                // there, and what the gone worker's attempt might still send is ignored.
                var gone = Accepted!;
                _minAttempt = gone.Attempt + 1;
                _directAttempt = 0;
                Accepted = null;
                Delivery = InferenceDelivery.Requeued;
                if (await _client.RequeueAsync(this, gone) is { } refused)
                {
                    yield return await EndWithAsync(ErrorCodes.WorkerLost, $"{WorkerLostMessage} {refused.Message}");
                    yield break;
                }
                continue;
            }
            if (workerGone)
            {
                yield return await EndWithAsync(ErrorCodes.WorkerLost, WorkerLostMessage, Accepted?.WorkerId);
                yield break;
            }
            if (busGone)
            {
                yield return await EndWithAsync(ErrorCodes.BusUnavailable, "The ingress lost its connection to the message bus while this request was in flight; retry the request.");
                yield break;
            }
            if (reply is null)
            {
                yield return await EndWithAsync(ErrorCodes.DeadlineExceeded, "The request did not complete before its deadline.");
                yield break;
            }

            if (reply.Accepted is { } accepted)
            {
                if (Accepted is not null && accepted.Attempt > Accepted.Attempt && chunksSent > 0)
                {
                    // The first worker died after part of the answer was streamed: the client cannot be
                    // given a second, different beginning, so end clearly instead.
                    yield return await EndWithAsync(ErrorCodes.WorkerLost, WorkerLostMessage);
                    yield break;
                }
                // A later attempt took over (a redelivery, or the queued copy of a direct attempt): whatever an earlier one
                // still sends (its worker may come back from a stall with a result or an error buffered) is ignored.
                _minAttempt = Math.Max(_minAttempt, accepted.Attempt);
                Accepted = accepted;
                if (Request.AnswerBudgetMs > 0 && !_deadline.IsCancellationRequested)
                    _deadline.CancelAfter(TimeSpan.FromMilliseconds(Request.AnswerBudgetMs)); // as the worker does: its time starts now
            }
            else if (reply.Chunk is { } chunk && Accepted is { } current && chunk.Attempt != current.Attempt)
            {
                continue;
            }
            else if (reply.Chunk is { } next && next.Index != chunksSent)
            {
                // Chunks are numbered from 0 in each attempt and come in order on one connection: a gap means some were
                // lost on the bus (core NATS delivers at most once, and this client's connection broke and came back
                // within the grace). The text would silently miss a piece, so end clearly instead.
                yield return await EndWithAsync(ErrorCodes.BusUnavailable,
                    $"Part of the answer was lost on the message bus (chunk {next.Index} came after {chunksSent}: the connection broke and came back mid-answer); retry the request.",
                    Accepted?.WorkerId);
                yield break;
            }
            else if (reply.Chunk is not null)
            {
                chunksSent++;
                FirstOutputAfter ??= _clock.Elapsed;
            }
            else if (reply.Result is not null)
            {
                FirstOutputAfter ??= _clock.Elapsed;
            }
            if (reply.IsFinal)
            {
                FinalArrivedUs = arrivedUs;
                Finish(reply);
            }
            yield return reply;
        }
    }

    public async ValueTask DisposeAsync()
    {
        Disposing?.Invoke(this);
        await _client.EndAsync(this, _finished);
        _deadline.Dispose();
    }
}
