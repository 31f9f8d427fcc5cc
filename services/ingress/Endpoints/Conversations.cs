using NATS.Client.KeyValueStore;
using QwenNats.Messaging;
using QwenNats.Messaging.Topology;
using QwenNats.Ingress.OpenAi;

namespace QwenNats.Ingress.Endpoints;

/// <summary>
/// A WebSocket conversation as kept in NATS: its history, how many turns it has had, and the last turn's id
/// and answer (a client that resends a turn it got no answer to, after a reconnect, gets that answer again
/// instead of a second one).
/// </summary>
public sealed record Conversation
{
    public List<ChatMessage> Messages { get; init; } = [];
    public int Turns { get; init; }
    public string? LastTurnId { get; init; }
    public WsFrame? LastDone { get; init; }
}

/// <summary>
/// WebSocket conversations in KV <see cref="Rollouts.ConversationsBucket"/> (TTL = the session idle timeout), so
/// a conversation outlives the ingress that held it: a client that reconnects with its session, to this or
/// another ingress, continues where it was.
/// </summary>
public sealed partial class ConversationStore(TopologyClient topology, ILogger<ConversationStore> logger)
{
    private INatsKVStore? _bucket;

    private async Task<INatsKVStore> BucketAsync(CancellationToken ct) => _bucket ??= await topology.BucketAsync(Rollouts.ConversationsBucket, ct);

    /// <summary>Session ids become keys: anything a KV key cannot hold is hex-encoded.</summary>
    public static string Key(string session) =>
        session.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_') && session.Length <= 200
            ? session
            : "x" + Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(session))).ToLowerInvariant();

    /// <summary>The session's conversation, or null (none, expired, or NATS unavailable: the conversation starts afresh, logged).</summary>
    public async Task<Conversation?> LoadAsync(string session, CancellationToken ct)
    {
        try
        {
            var entry = await (await BucketAsync(ct)).TryGetEntryAsync(Key(session), serializer: IngressJson.Conversation, cancellationToken: ct);
            return entry.Success ? entry.Value.Value : null;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogLoadFailed(logger, session, e);
            return null;
        }
    }

    /// <summary>Saves the conversation; false (logged) when NATS did not take it — the connection goes on with its own copy.</summary>
    public async Task<bool> SaveAsync(string session, Conversation conversation, CancellationToken ct)
    {
        try
        {
            await (await BucketAsync(ct)).PutAsync(Key(session), conversation, serializer: IngressJson.Conversation, cancellationToken: ct);
            return true;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogSaveFailed(logger, session, e);
            return false;
        }
    }

    public async Task DeleteAsync(string session, CancellationToken ct)
    {
        try
        {
            await (await BucketAsync(ct)).DeleteAsync(Key(session), cancellationToken: ct);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogSaveFailed(logger, session, e);
        }
    }

    [LoggerMessage(EventId = 2310, Level = LogLevel.Warning, Message = "Loading the conversation of session {Session} failed; it starts afresh")]
    private static partial void LogLoadFailed(ILogger logger, string session, Exception exception);

    [LoggerMessage(EventId = 2311, Level = LogLevel.Warning, Message = "Saving the conversation of session {Session} failed; this connection keeps it, a reconnect would not")]
    private static partial void LogSaveFailed(ILogger logger, string session, Exception exception);
}
