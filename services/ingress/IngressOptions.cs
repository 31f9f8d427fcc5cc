namespace QwenNats.Ingress;

/// <summary>The <c>Ingress</c> section.</summary>
public sealed record IngressOptions
{
    public const string Section = "Ingress";

    /// <summary>The colour that serves traffic until the rollout control plane decides otherwise.</summary>
    public string LiveColour { get; init; } = Messaging.Colours.Blue;

    /// <summary>Colours a request may name explicitly (header <c>X-Qwen-Colour</c>, WebSocket query <c>colour</c>):
    /// those of the topology (<c>Topology:Colours</c>), set when the options are built.</summary>
    public IReadOnlyList<string> Colours { get; internal set; } = Messaging.Colours.Default;

    /// <summary>How long a request may take end to end before the client gets a 504.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Largest accepted HTTP request body (413 beyond it).</summary>
    public long MaxBodyBytes { get; init; } = 1_048_576;

    /// <summary>Largest WebSocket message (a close with status 1009 beyond it).</summary>
    public int MaxWebSocketMessageBytes { get; init; } = 262_144;

    /// <summary>Longest conversation (characters over all messages) a chat request may carry; 400 <c>prompt_too_long</c> beyond it.</summary>
    public int MaxPromptChars { get; init; } = 65_536;

    /// <summary>Longest sentiment input in characters.</summary>
    public int MaxInputChars { get; init; } = 16_384;

    /// <summary>Upper bound of <c>max_tokens</c> a client may ask for.</summary>
    public int MaxTokensLimit { get; init; } = 4096;

    /// <summary>A worker that has not sent a heartbeat for this long is considered gone.</summary>
    public TimeSpan WorkerStaleAfter { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>A request in flight ends with 503 <c>bus_unavailable</c> once the ingress has been
    /// disconnected from NATS this long (its reply could not arrive anyway); new requests are refused at once.</summary>
    public TimeSpan BusLostGrace { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Offer each live request to a worker with a free slot as a core NATS message first, and queue it in
    /// JetStream only when none takes it (see <see cref="Messaging.InferenceOptions.DirectDelivery"/>); false: always JetStream.</summary>
    public bool DirectDelivery { get; init; } = true;

    /// <summary>How long a request offered directly waits for a worker's acceptance before it is queued in JetStream.</summary>
    public TimeSpan DirectAcceptTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Seconds suggested in <c>Retry-After</c> on a 503.</summary>
    public int RetryAfterSeconds { get; init; } = 1;

    /// <summary>A session pin still in use is rewritten after this long, which keeps it alive in the
    /// TTL-bounded pins bucket (the TTL is the session idle timeout, set by the promoter).</summary>
    public TimeSpan PinRefreshAfter { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// A session id the ingress makes up (the request named none) carries the rollout state version and time it was made
    /// (<c>q1-&lt;version&gt;-&lt;unix seconds&gt;-&lt;random&gt;</c>), and with them an implicit pin to the colour that was
    /// live then: its first request writes no pin to <c>qwen_sessions</c> unless the canary sends it to the candidate,
    /// and the pin is written when it comes back. False pins every new session in KV at once. Sessions made up without a
    /// KV pin (by any ingress while this was on) keep following their implicit pin either way.
    /// </summary>
    public bool ImplicitPins { get; init; } = true;

    /// <summary>How far ahead of this ingress's clock a made-up session id's time may be (another ingress's clock may run
    /// ahead) for it to carry an implicit pin; an id from further in the future carries none.</summary>
    public TimeSpan ImplicitPinClockSkew { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>Longest a <c>GET /api/rollout/applied?version=N</c> waits for this ingress to apply state version N
    /// (its <c>wait_ms</c> is capped at this) before it answers with the state it applies and <c>reached: false</c>.</summary>
    public TimeSpan RolloutWaitMax { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Unique id of this ingress instance (its reply subjects live under it).</summary>
    public string? InstanceId { get; init; }

    /// <summary>
    /// Session pins this ingress keeps in its watched copy of KV <c>qwen_sessions</c> (each a few hundred bytes); pins
    /// beyond it are read from KV on every request. 0 reads every pin from KV.
    /// </summary>
    public int PinCacheSize { get; init; } = 100_000;

    /// <summary>Send a <c>Server-Timing</c> header on answers that are not streamed: where the request's time went, stage by stage.</summary>
    public bool ServerTiming { get; init; } = true;
}
