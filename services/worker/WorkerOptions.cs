namespace QwenNats.Worker;

/// <summary>The <c>Worker</c> section (appsettings, <c>Worker__Colour</c> environment variables or <c>--Worker:Colour</c>).</summary>
public sealed record WorkerOptions
{
    public const string Section = "Worker";

    public string Colour { get; init; } = Messaging.Colours.Blue;

    /// <summary>Path to the GGUF file; required.</summary>
    public string ModelPath { get; init; } = "";

    /// <summary>Path to the prompt profile JSON (deploy/profiles/*.json); required.</summary>
    public string ProfilePath { get; init; } = "";

    /// <summary>CPU threads for generation; 0 means all cores.</summary>
    public int Threads { get; init; }

    /// <summary>Context (tokens) available to one request: prompt plus generated tokens.</summary>
    public int ContextSize { get; init; } = 2048;

    /// <summary>Requests decoded together in one batched context.</summary>
    public int Slots { get; init; } = 2;

    /// <summary>Largest number of tokens sent to llama.cpp in one decode call.</summary>
    public int BatchSize { get; init; } = 512;

    /// <summary>Decode the profile's fixed prompt prefix (system prompt) once and share it between requests.</summary>
    public bool PrefixCache { get; init; } = true;

    /// <summary>How long one pull for live work waits at the server before it is renewed (more than 1 s).</summary>
    public TimeSpan FetchExpiry { get; init; } = TimeSpan.FromSeconds(5);

    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How often an idle worker looks at its shadow (mirrored) queue: at first and at most, backing off while it is empty.</summary>
    public TimeSpan ShadowPollMin { get; init; } = TimeSpan.FromMilliseconds(20);
    public TimeSpan ShadowPollMax { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>On shutdown, how long requests in flight may take to finish before the worker leaves.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Optional fixed id (defaults to host, pid and a random suffix).</summary>
    public string? WorkerId { get; init; }
}
