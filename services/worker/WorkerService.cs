using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using NATS.Client.Core;
using NATS.Client.JetStream;
using QwenNats.Contracts;
using QwenNats.ServiceDefaults;

namespace QwenNats.Worker;

/// <summary>
/// Pulls work from its colour's JetStream work queue — one message per free slot, so a busy worker
/// never holds work another idle worker could do — runs it on the engine, streams the replies to the
/// request's reply subject, and acks only after the final reply (a worker that dies leaves its
/// work unacked, and JetStream redelivers it to another worker).
/// </summary>
public sealed class WorkerService(
    LlamaEngine engine,
    NatsConnection nats,
    WorkQueueTopology topology,
    ServiceIdentity identity,
    IOptions<WorkerOptions> options,
    FaultInjector faults,
    ILogger<WorkerService> logger) : BackgroundService
{
    private readonly WorkerOptions _options = options.Value;
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _running = new();
    private readonly ConcurrentDictionary<Task, byte> _inFlight = new();

    public string WorkerId => _options.WorkerId ?? identity.InstanceId;
    private string Colour => _options.Colour;

    private AnswerStamp Stamp => new(WorkerId, Colour, engine.Model.Id, engine.Profile.Version);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        engine.Start();
        var (consumer, shadow) = await ConnectAsync(stoppingToken);
        using var heartbeat = new PeriodicTimer(_options.HeartbeatInterval);
        var heartbeats = HeartbeatLoopAsync(heartbeat, stoppingToken);
        var cancels = CancelLoopAsync(stoppingToken);
        logger.LogInformation("Worker {WorkerId} serving {Subject} with {Slots} slots", WorkerId, Subjects.Infer(Colour), engine.Slots);

        using var slots = new SemaphoreSlim(engine.Slots, engine.Slots);
        await Task.WhenAll(LiveLoopAsync(consumer, slots, stoppingToken), ShadowLoopAsync(shadow, slots, stoppingToken));

        await DrainAsync();
        await Task.WhenAll(heartbeats, cancels).ContinueWith(_ => { }, TaskScheduler.Default);
        await PublishHeartbeatAsync(leaving: true, CancellationToken.None);
    }

    /// <summary>Live work: one long-poll pull per free slot.</summary>
    private async Task LiveLoopAsync(INatsJSConsumer consumer, SemaphoreSlim slots, CancellationToken ct)
    {
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
            INatsJSMsg<InferRequest>? next;
            try
            {
                next = await consumer.NextAsync<InferRequest>(opts: new NatsJSNextOpts { Expires = _options.FetchExpiry }, cancellationToken: ct);
            }
            catch (Exception e)
            {
                slots.Release();
                if (ct.IsCancellationRequested) return;
                logger.LogWarning(e, "Fetching work failed; retrying");
                await Delay(TimeSpan.FromMilliseconds(500), ct);
                continue;
            }
            Dispatch(next, slots);
        }
    }

    /// <summary>
    /// Mirrored work is lower priority: it only takes a slot that is free while the live loop already holds
    /// one for the next live request (a one-slot worker alternates its slot between the two loops), with a
    /// no-wait pull that backs off while there is no mirrored work.
    /// </summary>
    private async Task ShadowLoopAsync(INatsJSConsumer shadow, SemaphoreSlim slots, CancellationToken ct)
    {
        var idle = ShadowPollMin;
        while (!ct.IsCancellationRequested)
        {
            if (engine.Slots == 1)
            {
                try
                {
                    await slots.WaitAsync(ct);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
            else if (!slots.Wait(0))
            {
                await Delay(ShadowPollMin, ct);
                continue;
            }
            INatsJSMsg<InferRequest>? next = null;
            try
            {
                await foreach (var m in shadow.FetchNoWaitAsync<InferRequest>(new NatsJSFetchOpts { MaxMsgs = 1 }, cancellationToken: ct))
                    next = m;
            }
            catch (Exception e)
            {
                if (ct.IsCancellationRequested) { slots.Release(); return; }
                logger.LogDebug(e, "Fetching shadow work failed");
            }
            Dispatch(next, slots);
            idle = next is null ? TimeSpan.FromTicks(Math.Min(idle.Ticks * 2, ShadowPollMax.Ticks)) : ShadowPollMin;
            if (next is null)
                await Delay(idle, ct);
        }
    }

    private static readonly TimeSpan ShadowPollMin = TimeSpan.FromMilliseconds(20);
    private static readonly TimeSpan ShadowPollMax = TimeSpan.FromMilliseconds(250);

    private void Dispatch(INatsJSMsg<InferRequest>? next, SemaphoreSlim slots)
    {
        if (next is not { } msg)
        {
            slots.Release();
            return;
        }
        var task = HandleAsync(msg, slots);
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

    private async Task<(INatsJSConsumer Live, INatsJSConsumer Shadow)> ConnectAsync(CancellationToken ct)
    {
        while (true)
        {
            try
            {
                await nats.ConnectAsync();
                return await topology.EnsureConsumersAsync(Colour, ct);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.LogWarning("Work queue not ready ({Reason}); retrying", e.Message);
                await Task.Delay(TimeSpan.FromSeconds(1), ct);
            }
        }
    }

    private async Task HandleAsync(INatsJSMsg<InferRequest> msg, SemaphoreSlim slots)
    {
        try
        {
            await ProcessAsync(msg);
        }
        catch (Exception e)
        {
            logger.LogError(e, "Unexpected failure handling a message; leaving it unacked for redelivery");
        }
        finally
        {
            slots.Release();
        }
    }

    private async Task ProcessAsync(INatsJSMsg<InferRequest> msg)
    {
        if (msg.Error is not null || msg.Data is null)
        {
            logger.LogWarning("Dropping an undecodable work message ({Reason})", msg.Error?.Message ?? "empty");
            await msg.AckTerminateAsync();
            return;
        }
        var request = msg.Data;
        var attempt = (int)(msg.Metadata?.NumDelivered ?? 1);
        using var scope = logger.BeginScope(new Dictionary<string, object?> { ["request_id"] = request.Id, ["attempt"] = attempt });
        var queueMs = request.CreatedUnixMs > 0 ? Math.Max(0, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - request.CreatedUnixMs) : 0;

        if (request.DeadlineUnixMs > 0 && DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() > request.DeadlineUnixMs)
        {
            logger.LogInformation("Skipping request whose deadline passed while queued ({QueueMs} ms)", queueMs);
            await ReplyAsync(request, InferReply.Of(new InferError { Id = request.Id, Code = ErrorCodes.DeadlineExceeded, Message = "The deadline passed while the request was queued.", WorkerId = WorkerId, Colour = Colour }));
            await msg.AckAsync();
            return;
        }

        using var cancel = new CancellationTokenSource();
        _running[request.Id] = cancel;
        try
        {
            await ReplyAsync(request, InferReply.Of(new InferAccepted
            {
                Id = request.Id, WorkerId = WorkerId, Colour = Colour, ModelId = engine.Model.Id, ProfileVersion = engine.Profile.Version, Attempt = attempt,
            }));
            var fault = faults.Draw();
            if (fault.Error)
            {
                await ReplyAsync(request, InferReply.Of(new InferError { Id = request.Id, Code = FaultInjector.ErrorCode, Message = "Injected fault (Faults:ErrorRate).", WorkerId = WorkerId, Colour = Colour }));
                await msg.AckAsync();
                return;
            }
            var job = engine.TryCreateJob(request, Stamp, attempt, queueMs, cancel.Token, out var error);
            if (job is null)
            {
                logger.LogInformation("Refused request: {Code}", error!.Code);
                await ReplyAsync(request, InferReply.Of(error with { Id = request.Id, WorkerId = WorkerId, Colour = Colour }));
                await msg.AckAsync();
                return;
            }

            var progress = Stopwatch.StartNew();
            var progressEvery = topology.Options.AckWait / 3;
            engine.Submit(job);
            await foreach (var produced in job.Output.ReadAllAsync())
            {
                var reply = fault.Active && produced.Result is { } done ? InferReply.Of(await faults.ApplyAsync(done, engine.Profile)) : produced;
                await ReplyAsync(request, reply);
                if (progress.Elapsed > progressEvery)
                {
                    await msg.AckProgressAsync();
                    progress.Restart();
                }
                if (reply.Result is { } r)
                    logger.LogInformation("Done: {Task} {Finish} {Prompt}+{Completion} tokens in {TotalMs:F0} ms (ttft {TtftMs:F0} ms)",
                        r.Task, r.FinishReason, r.PromptTokens, r.CompletionTokens, r.TotalMs, r.TimeToFirstTokenMs);
                else if (reply.Error is { } err)
                    logger.LogWarning("Failed: {Code} {Message}", err.Code, err.Message);
            }
            await msg.AckAsync();
        }
        finally
        {
            _running.TryRemove(request.Id, out _);
        }
    }

    private ValueTask ReplyAsync(InferRequest request, InferReply reply) =>
        nats.PublishAsync(request.ReplyTo, reply);

    private async Task HeartbeatLoopAsync(PeriodicTimer timer, CancellationToken ct)
    {
        try
        {
            do
            {
                try
                {
                    await PublishHeartbeatAsync(leaving: false, ct);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    logger.LogDebug(e, "Heartbeat not sent");
                }
            }
            while (await timer.WaitForNextTickAsync(ct));
        }
        catch (OperationCanceledException)
        {
        }
    }

    private ValueTask PublishHeartbeatAsync(bool leaving, CancellationToken ct) =>
        nats.PublishAsync(Subjects.WorkerHeartbeat, new WorkerHeartbeat
        {
            WorkerId = WorkerId,
            Colour = Colour,
            ModelId = engine.Model.Id,
            ModelSha256 = engine.Model.Sha256,
            ProfileVersion = engine.Profile.Version,
            Slots = engine.Slots,
            Busy = engine.Busy,
            ContextSize = engine.ContextSize,
            UnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
            Leaving = leaving,
        }, cancellationToken: ct);

    private async Task CancelLoopAsync(CancellationToken ct)
    {
        try
        {
            await foreach (var msg in nats.SubscribeAsync<CancelRequest>(Subjects.Cancel, cancellationToken: ct))
            {
                if (msg.Data is { } c && _running.TryGetValue(c.Id, out var cts))
                {
                    logger.LogInformation("Cancelling request {RequestId} at the client's request", c.Id);
                    await cts.CancelAsync();
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>On shutdown: stop pulling (done), let requests in flight finish within the drain timeout.</summary>
    private async Task DrainAsync()
    {
        var pending = _inFlight.Keys.ToArray();
        if (pending.Length == 0) return;
        logger.LogInformation("Draining {Count} requests in flight", pending.Length);
        await Task.WhenAny(Task.WhenAll(pending), Task.Delay(_options.DrainTimeout));
    }
}
