using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using NATS.Client.Services;

namespace QwenNats.Messaging.Control;

/// <summary>What serves the operator API: the leading promoter.</summary>
public interface IControlHandler
{
    /// <summary>True while this process leads (holds the lease) and so may act on commands.</summary>
    bool IsLeader { get; }

    /// <summary>Handles one command's body (JSON, possibly empty); refusals are replies, not exceptions.</summary>
    Task<ControlReply> HandleAsync(string verb, byte[]? body, CancellationToken ct);

    /// <summary>How long a forwarded command may take (a golden run takes longer than a phase change).</summary>
    TimeSpan ForwardTimeout(string verb);
}

/// <summary>
/// The operator API as NATS services-framework endpoints, one per verb on <c>qwen.ctl.&lt;verb&gt;</c>, so
/// <c>nats micro info qwen-promoter</c> (<c>$SRV.INFO</c>) lists every verb. Every promoter serves them; the
/// leader answers itself, a standby forwards the request to <c>qwen.promoter.leader.&lt;verb&gt;</c>, where only the
/// leader listens, and answers <c>no_leader</c> while an election is under way.
/// </summary>
public sealed partial class ControlEndpoints(NatsConnection nats, IControlHandler handler, ILogger<ControlEndpoints> logger) : IServiceEndpoints, IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private Task _unknown = Task.CompletedTask;

    public async ValueTask AddToAsync(INatsSvcServer server, CancellationToken ct)
    {
        foreach (var verb in Rollouts.Verbs.All)
        {
            await server.AddEndpointAsync<byte[]>(msg => AnswerAsync(verb, msg), name: verb, subject: Rollouts.Control(verb),
                metadata: new Dictionary<string, string> { ["verb"] = verb }, cancellationToken: ct);
        }
        if (_unknown.IsCompleted)
        {
            // A verb that is not one of the endpoints still gets an answer (unknown_verb, with the list), not silence:
            // a plain subscription on every promoter that ignores the verbs the endpoints serve.
            var sub = await nats.SubscribeCoreAsync<byte[]>(Rollouts.ControlWildcard, cancellationToken: _stop.Token);
            _unknown = AnswerUnknownAsync(sub, _stop.Token);
        }
    }

    private async Task AnswerUnknownAsync(INatsSub<byte[]> sub, CancellationToken ct)
    {
        await using (sub)
        {
            try
            {
                await foreach (var msg in sub.Msgs.ReadAllAsync(ct))
                {
                    var verb = msg.Subject[(Rollouts.ControlWildcard.Length - 1)..];
                    if (msg.ReplyTo is null || Rollouts.Verbs.All.Contains(verb))
                        continue;
                    await nats.PublishAsync(msg.ReplyTo, await handler.HandleAsync(verb, msg.Data, ct), cancellationToken: ct);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _unknown;
        _stop.Dispose();
    }

    private async ValueTask AnswerAsync(string verb, NatsSvcMsg<byte[]> msg)
    {
        ControlReply reply;
        try
        {
            reply = handler.IsLeader ? await handler.HandleAsync(verb, msg.Data, CancellationToken.None) : await ForwardAsync(verb, msg.Data);
        }
        catch (Exception e)
        {
            LogFailed(logger, verb, e);
            reply = ControlReply.Refused("internal_error", "The promoter failed to handle the command; check `status` and `history` for what was applied.");
        }
        await msg.ReplyAsync(reply);
    }

    private async Task<ControlReply> ForwardAsync(string verb, byte[]? body)
    {
        try
        {
            var answer = await nats.RequestAsync<byte[], byte[]>(Rollouts.LeaderControl(verb), body ?? [],
                replyOpts: new NatsSubOpts { Timeout = handler.ForwardTimeout(verb) });
            return ControlClient.Parse(answer.Data);
        }
        catch (Exception e) when (e is NatsNoRespondersException or NatsNoReplyException)
        {
            return ControlReply.Refused("no_leader", "No promoter leads right now (an election takes about one lease lifetime); retry shortly.");
        }
    }

    [LoggerMessage(EventId = 1300, Level = LogLevel.Error, Message = "Control command {Verb} failed")]
    private static partial void LogFailed(ILogger logger, string verb, Exception exception);
}
