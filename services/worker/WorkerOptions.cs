namespace QwenNats.Worker;

/// <summary>The <c>Worker</c> section (appsettings, <c>Worker__Colour</c> environment variables or <c>--Worker:Colour</c>).</summary>
public sealed record WorkerOptions
{
    public const string Section = "Worker";

    public string Colour { get; init; } = Messaging.Colours.Blue;

    /// <summary>Path to a GGUF file to serve at start, before (or without) any release assigned to the colour.
    /// Empty: the worker starts with no model and waits for its colour's release (<c>qwen.ctl.deploy</c>).</summary>
    public string ModelPath { get; init; } = "";

    /// <summary>The prompt profile JSON (deploy/profiles/*.json) that goes with <see cref="ModelPath"/>.</summary>
    public string ProfilePath { get; init; } = "";

    /// <summary>Follow the colour's assigned release (<c>assign.&lt;colour&gt;</c> in the releases bucket): fetch,
    /// load, warm up and switch to it without a restart. Off: serve only <see cref="ModelPath"/>.</summary>
    public bool FollowReleases { get; init; } = true;

    /// <summary>Where fetched model files are kept, one per digest (default: $XDG_CACHE_HOME or ~/.cache, qwen-nats/models).</summary>
    public string ModelCacheDir { get; init; } = "";

    /// <summary>How to switch releases: <c>auto</c> loads the new model beside the old one when memory allows
    /// (<see cref="LoadMemoryFactor"/>) and drains first otherwise; <c>beside</c> or <c>drain</c> force one way.</summary>
    public string SwitchMode { get; init; } = "auto";

    /// <summary>auto switching loads beside the old model only if available memory is at least this many times the new model file's size.</summary>
    public double LoadMemoryFactor { get; init; } = 1.5;

    public string ResolvedModelCacheDir => ModelCacheDir is { Length: > 0 } dir ? dir
        : Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "qwen-nats", "models");

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

    /// <summary>With one slot, how long a pull for live work waits before the worker looks at its shadow queue again
    /// (more than 1 s; with more slots, mirrored work takes slots beside the one waiting for live work).</summary>
    public TimeSpan LiveWaitBeforeShadow { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>How many nice levels lower the decode threads run while this colour is only a candidate (the
    /// candidate of a rollout in Shadow: it answers mirrored copies and no live traffic), so the live colour's
    /// decoding on the same box gets the CPU first; back to normal when it serves live traffic. 0 turns it off.
    /// Linux only.</summary>
    public int CandidateNice { get; init; } = 10;

    /// <summary>
    /// Mirrored work uses only the idle time of live work on this machine: the worker reports its own live work on
    /// <c>qwen.host.&lt;host&gt;.live</c>, and while another worker there runs live work (or did in the last
    /// <see cref="ShadowYieldIdleAfter"/>) it takes no mirrored copy and pauses those it runs between two decode steps,
    /// their prompts decoded <see cref="ShadowYieldChunk"/> tokens at a time. Paused time is left out of their
    /// timings; a copy still paused at its deadline ends as <c>shadow_yielded</c>, which the ingress counts as a
    /// capacity miss. For a candidate that shares its machine (and cores) with live workers; off by default, as fewer
    /// mirrors are answered under steady load.
    /// </summary>
    public bool ShadowYield { get; init; }

    /// <summary>With <see cref="ShadowYield"/>: how long live work on the machine must have stopped before mirrored work runs again.</summary>
    public TimeSpan ShadowYieldIdleAfter { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>With <see cref="ShadowYield"/>: prompt tokens of a mirrored request decoded per step (so a pause waits for one short step).</summary>
    public int ShadowYieldChunk { get; init; } = 16;

    /// <summary>This machine's name for <see cref="ShadowYield"/> (workers that share cores must agree on it); empty: the host name.</summary>
    public string Host { get; init; } = "";

    public string ResolvedHost => Host is { Length: > 0 } h ? h : Environment.MachineName;

    /// <summary>On shutdown, and in a drain-first release switch, how long requests in flight may take to finish before
    /// the worker leaves (or frees the old model).</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>A release replaced by one loaded beside it keeps answering the requests it took until they are done (each
    /// ends by its own deadline) and is freed then; at the latest after this long.</summary>
    public TimeSpan RetireTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>With both <see cref="ModelPath"/> and <see cref="FollowReleases"/>: how long the worker looks, at start, for a
    /// release assigned to its colour. One assigned is what the pool serves, so the command-line model is not served
    /// meanwhile (a restarted live worker would answer pinned conversations with another model); with none, or when the
    /// bus cannot say in time, the command-line model is served at once.</summary>
    public TimeSpan AssignmentCheckTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Optional fixed id (defaults to host, pid and a random suffix).</summary>
    public string? WorkerId { get; init; }
}
