namespace QwenNats.Ingress.OperatorConsole;

/// <summary>The <c>Console</c> section: the web console served at <c>/</c>.</summary>
public sealed record ConsoleOptions
{
    public const string Section = "Console";

    /// <summary>Serve the console and its push stream at all.</summary>
    public bool Enabled { get; init; } = true;

    /// <summary>
    /// The token that unlocks operator actions (start, promote, pause, resume, roll back, deploy). Without one the
    /// console is read-only: the action endpoint refuses every call.
    /// </summary>
    public string? OperatorToken { get; init; }

    /// <summary>
    /// NATS credentials of an operator, used only to send the console's actions and ask for its releases list. The ingress's own NATS
    /// user may not publish <c>qwen.ctl.*</c> (deploy/nats/auth.conf); an ingress that should let operators act
    /// gets these. Without them actions go over the ingress's own connection.
    /// </summary>
    public string? NatsUser { get; init; }
    public string? NatsPassword { get; init; }

    /// <summary>The actor written to the audit log for actions taken from the console.</summary>
    public string Actor { get; init; } = "console";

    /// <summary>How many recent audit events a newly opened console receives.</summary>
    public int EventsBacklog { get; init; } = 30;

    /// <summary>The window the latency chart's per-colour percentiles cover.</summary>
    public TimeSpan LatencyWindow { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How often the console receives latency, worker and mirror figures.</summary>
    public TimeSpan PushInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How long an operator action, or the releases list, waits for the promoter's answer.</summary>
    public TimeSpan ActionTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Longest reason accepted for an operator action.</summary>
    public int MaxReasonChars { get; init; } = 500;
}
