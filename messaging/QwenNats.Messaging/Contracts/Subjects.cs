namespace QwenNats.Messaging;

/// <summary>Every NATS subject, stream and bucket name the services share.</summary>
public static class Subjects
{
    public const string Root = "qwen";

    /// <summary>Live inference work for one colour's pool: <c>qwen.&lt;colour&gt;.infer</c>.</summary>
    public static string Infer(string colour) => $"{Root}.{colour}.infer";

    /// <summary>
    /// Live work offered straight to a worker of one colour with a free slot, as a core NATS message to the
    /// <see cref="WorkConsumer"/> queue group: <c>qwen.&lt;colour&gt;.direct</c>. A worker that takes it answers with its
    /// acceptance; one without a free slot answers with an empty message, and then (as when no worker listens) the
    /// client puts the request on <see cref="Infer"/>'s JetStream work queue.
    /// </summary>
    public static string Direct(string colour) => $"{Root}.{colour}.direct";

    /// <summary>Mirrored (shadow) work for a candidate colour: <c>qwen.&lt;colour&gt;.shadow</c>.</summary>
    public static string Shadow(string colour) => $"{Root}.{colour}.shadow";

    /// <summary>The JetStream work-queue stream holding one colour's pending work.</summary>
    public static string WorkStream(string colour) => $"QWEN_WORK_{colour.ToUpperInvariant()}";

    /// <summary>The durable pull consumer every worker of a colour shares, and the queue group of <see cref="Direct"/>.</summary>
    public const string WorkConsumer = "workers";

    /// <summary>Where an ingress receives the replies for its own requests: <c>qwen.reply.&lt;ingress&gt;.&lt;request&gt;</c>.</summary>
    public static string Reply(string ingressId, string requestId) => $"{Root}.reply.{ingressId}.{requestId}";

    public static string ReplyWildcard(string ingressId) => $"{Root}.reply.{ingressId}.>";

    /// <summary>Ask every worker to stop a request whose client went away.</summary>
    public const string Cancel = "qwen.cancel";

    /// <summary>Workers announce themselves (and their free slots) here.</summary>
    public const string WorkerHeartbeat = "qwen.workers.heartbeat";

    /// <summary>
    /// Live load of the workers on one machine (<see cref="HostLiveLoad"/>), for candidates there that yield to it:
    /// <c>qwen.host.&lt;host&gt;.live</c>, the host name reduced to one subject token.
    /// </summary>
    public static string HostLive(string host) => $"{Root}.host.{Token(host)}.live";

    /// <summary>Text as one subject token: characters other than letters, digits, '-' and '_' become '_'.</summary>
    public static string Token(string text)
    {
        var chars = text.Trim().ToCharArray();
        for (var i = 0; i < chars.Length; i++)
            if (!(char.IsAsciiLetterOrDigit(chars[i]) || chars[i] is '-' or '_'))
                chars[i] = '_';
        return chars.Length == 0 ? "_" : new string(chars);
    }

    /// <summary>A process's own status endpoint in the services framework.</summary>
    public static string ServiceStatus(string instanceId) => $"{Root}.svc.{instanceId}.status";

    /// <summary>Services framework names (<c>nats micro ls</c>).</summary>
    public const string WorkerService = "qwen-worker";
    public const string JudgeService = "qwen-judge";
    public const string PromoterService = "qwen-promoter";
}

public static class Colours
{
    public const string Blue = "blue";
    public const string Green = "green";

    /// <summary>The colours of a deployment unless <c>Topology:Colours</c> says otherwise.</summary>
    public static readonly IReadOnlyList<string> Default = [Blue, Green];

    /// <summary>A colour is a lowercase token usable inside a subject.</summary>
    public static bool IsWellFormed(string? colour) =>
        !string.IsNullOrEmpty(colour) && colour.Length <= 32 && colour.All(c => c is >= 'a' and <= 'z' or >= '0' and <= '9' or '-');

    /// <summary>The log tag of a colour: <c>[BLUE]</c>.</summary>
    public static string Tag(string colour) => $"[{colour.ToUpperInvariant()}]";
}

public static class InferTasks
{
    public const string Chat = "chat";
    public const string Sentiment = "sentiment";
    /// <summary>
    /// A legacy (OpenAI <c>/v1/completions</c>) text completion: the worker continues <see cref="InferRequest.Input"/>,
    /// the raw prompt, with no chat template and no system prompt; <see cref="InferRequest.Messages"/> must be empty.
    /// Sampling, streaming and the reply messages are those of <see cref="Chat"/>.
    /// </summary>
    public const string Completion = "completion";
    /// <summary>
    /// Teacher-forced scoring: the worker reads <see cref="InferRequest.Input"/> as an assistant answer to
    /// <see cref="InferRequest.Messages"/> and returns its mean log-probability per token under this
    /// worker's model and profile (<see cref="InferResult.MeanLogProb"/>). The judge's model-based chat signal.
    /// </summary>
    public const string Score = "score";
}

public static class ChatRoles
{
    public const string System = "system";
    public const string User = "user";
    public const string Assistant = "assistant";

    public static bool IsKnown(string? role) => role is System or User or Assistant;
}

/// <summary>Machine-readable error codes carried by <see cref="InferError"/> and the HTTP error body.</summary>
public static class ErrorCodes
{
    public const string InvalidRequest = "invalid_request";
    public const string UnknownTask = "unknown_task";
    public const string EmptyConversation = "empty_conversation";
    public const string ContextLengthExceeded = "context_length_exceeded";
    public const string DeadlineExceeded = "deadline_exceeded";
    public const string NoWorkers = "no_workers";
    public const string Overloaded = "overloaded";
    public const string WorkerLost = "worker_lost";
    /// <summary>A mirrored copy the candidate held back for live work on its machine until its deadline passed
    /// (<c>Worker:ShadowYield</c>): a capacity miss, not an answer of the candidate's.</summary>
    public const string ShadowYielded = "shadow_yielded";
    /// <summary>The ingress lost its connection to NATS: new requests are refused and requests in flight end.</summary>
    public const string BusUnavailable = "bus_unavailable";
    public const string Cancelled = "cancelled";
    public const string InternalError = "internal_error";
    /// <summary>The request is larger than one message on the bus may be (the NATS server's <c>max_payload</c>).</summary>
    public const string RequestTooLarge = "request_too_large";
    /// <summary>The answer (text with its log-probabilities) came out larger than one message on the bus may be.</summary>
    public const string AnswerTooLarge = "answer_too_large";
}

public static class FinishReasons
{
    public const string Stop = "stop";
    public const string Length = "length";
    public const string Error = "error";
}
