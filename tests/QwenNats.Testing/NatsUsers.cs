namespace QwenNats.Testing;

/// <summary>
/// The users of <c>deploy/nats/auth.conf</c> with fresh random passwords: the environment a server running that
/// file needs, and the settings a service logs in with.
/// </summary>
public sealed class NatsUsers
{
    public static readonly IReadOnlyList<string> Names = ["ingress", "worker_blue", "worker_green", "judge", "promoter", "operator", "viewer"];

    public static string AuthConf => Path.Combine(Paths.RepoRoot, "deploy", "nats", "auth.conf");

    // A password from the environment is parsed as a configuration value: it must start with a letter.
    public IReadOnlyDictionary<string, string> Passwords { get; } =
        Names.ToDictionary(n => n, n => $"pw-{n.Replace('_', '-')}-{Guid.NewGuid().ToString("N")[..8]}");

    /// <summary>QWEN_NATS_&lt;USER&gt;_PASSWORD for every user, as the server's configuration reads them.</summary>
    public Dictionary<string, string> ServerEnvironment() =>
        Passwords.ToDictionary(p => $"QWEN_NATS_{p.Key.ToUpperInvariant()}_PASSWORD", p => p.Value);

    /// <summary>The settings a service logs in with as <paramref name="user"/>.</summary>
    public Dictionary<string, string?> Settings(string user) => new() { ["Nats:User"] = user, ["Nats:Password"] = Passwords[user] };
}
