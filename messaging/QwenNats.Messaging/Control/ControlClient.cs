using System.Text;
using System.Text.Json;
using NATS.Client.Core;

namespace QwenNats.Messaging.Control;

/// <summary>
/// The typed client of the operator API (<c>qwen.ctl.&lt;verb&gt;</c>, served by the promoters): what the console,
/// the tests, the benchmarks and <c>qwenctl</c> use. A refusal is a <see cref="ControlReply"/> with
/// <c>ok: false</c> and a code; no promoter answering is a <see cref="NatsNoRespondersException"/> or
/// <see cref="NatsNoReplyException"/> (the NATS client's own).
/// </summary>
public sealed class ControlClient(INatsConnection nats, TimeSpan? timeout = null)
{
    /// <summary>How long a command may take unless the caller says otherwise (a golden run says more).</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(5);

    private readonly TimeSpan _timeout = timeout ?? DefaultTimeout;

    /// <summary>Sends a JSON body as it is (as <c>nats req qwen.ctl.&lt;verb&gt; '&lt;json&gt;'</c> does); an empty body is <c>{}</c>.</summary>
    public async Task<ControlReply> SendAsync(string verb, string json, TimeSpan? timeout = null, CancellationToken ct = default)
    {
        var reply = await nats.RequestAsync<byte[], byte[]>(Rollouts.Control(verb), Encoding.UTF8.GetBytes(json),
            replyOpts: new NatsSubOpts { Timeout = timeout ?? _timeout }, cancellationToken: ct);
        return Parse(reply.Data);
    }

    /// <summary>Sends a typed request.</summary>
    public Task<ControlReply> SendAsync(string verb, ControlRequest request, TimeSpan? timeout = null, CancellationToken ct = default) =>
        SendAsync(verb, JsonSerializer.Serialize(request, QwenJsonContext.Default.ControlRequest), timeout, ct);

    public Task<ControlReply> StatusAsync(CancellationToken ct = default) => SendAsync(Rollouts.Verbs.Status, "", ct: ct);

    public Task<ControlReply> StartAsync(string candidate, string? reason = null, CancellationToken ct = default) =>
        SendAsync(Rollouts.Verbs.Start, new ControlRequest { Candidate = candidate, Reason = reason }, ct: ct);

    public Task<ControlReply> PromoteAsync(bool full = false, string? reason = null, CancellationToken ct = default) =>
        SendAsync(Rollouts.Verbs.Promote, new ControlRequest { Full = full ? true : null, Reason = reason }, ct: ct);

    public Task<ControlReply> RollbackAsync(string? reason = null, CancellationToken ct = default) =>
        SendAsync(Rollouts.Verbs.Rollback, new ControlRequest { Reason = reason }, ct: ct);

    public Task<ControlReply> AbortAsync(string? reason = null, CancellationToken ct = default) =>
        SendAsync(Rollouts.Verbs.Abort, new ControlRequest { Reason = reason }, ct: ct);

    public Task<ControlReply> HistoryAsync(int? limit = null, CancellationToken ct = default) =>
        SendAsync(Rollouts.Verbs.History, new ControlRequest { Limit = limit }, ct: ct);

    /// <summary>Waits until some promoter leads and answers; returns its id.</summary>
    public async Task<string> WaitForLeaderAsync(TimeSpan timeout, CancellationToken ct = default)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        while (true)
        {
            try
            {
                var r = await SendAsync(Rollouts.Verbs.Status, "", ct: cts.Token);
                if (r.Ok) return r.Leader!;
            }
            catch (Exception e) when (e is NatsNoRespondersException or NatsNoReplyException && !cts.IsCancellationRequested)
            {
            }
            await Task.Delay(100, cts.Token);
        }
    }

    /// <summary>A reply's JSON; an empty or unreadable one becomes a refusal saying so.</summary>
    public static ControlReply Parse(byte[]? body)
    {
        if (body is not { Length: > 0 })
            return ControlReply.Refused("empty_reply", "The promoter sent an empty answer.");
        try
        {
            return JsonSerializer.Deserialize(body, QwenJsonContext.Default.ControlReply)
                   ?? ControlReply.Refused("empty_reply", "The promoter sent an empty answer.");
        }
        catch (JsonException e)
        {
            return ControlReply.Refused("bad_reply", $"The promoter's answer is not a control reply: {e.Message}");
        }
    }
}
