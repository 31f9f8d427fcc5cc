using System.Diagnostics;
using System.Net.Sockets;

namespace QwenNats.Testing;

/// <summary>
/// A real <c>nats-server</c> with JetStream on a random port and a temporary store, killed and
/// deleted on dispose. It can be killed (SIGKILL) and started again on the same port and store, and can
/// run with a configuration file (users and permissions) and environment.
/// </summary>
public sealed class NatsServer : IAsyncDisposable
{
    private readonly string _dir;
    private readonly string? _config;
    private readonly IReadOnlyDictionary<string, string> _env;
    private readonly IReadOnlyList<string> _args;
    private Process _process;

    private NatsServer(Process process, string dir, int port, string? config, IReadOnlyDictionary<string, string> env, IReadOnlyList<string> args)
    {
        _process = process;
        _dir = dir;
        Port = port;
        _config = config;
        _env = env;
        _args = args;
    }

    public int Port { get; }
    public string Url => $"nats://127.0.0.1:{Port}";
    public string StoreDir => Path.Combine(_dir, "js");
    public int Pid => _process.Id;

    /// <summary>The server's log (with a configuration file: every permission violation it reports).</summary>
    public IReadOnlyList<string> Log
    {
        get { lock (_log) return _log.ToList(); }
    }

    private readonly List<string> _log = [];

    public static Task<NatsServer> StartAsync(string? config = null, IReadOnlyDictionary<string, string>? env = null) =>
        StartAsync(config, env, -1, [], null);

    /// <summary>An argument for <see cref="StartAsync(string?, IReadOnlyDictionary{string, string}?, int, IReadOnlyList{string}, string?)"/>:
    /// the configuration enables JetStream and names the store (<c>dir/js</c>), so no -js/-sd flags are added.</summary>
    public const string StoreFromConfig = "(store from the configuration)";

    /// <summary>
    /// A server on a given client port (-1: a random one) with extra command-line arguments (cluster and monitoring
    /// ports), in <paramref name="dir"/> (its store is <c>dir/js</c>; by default a new temporary directory).
    /// </summary>
    public static async Task<NatsServer> StartAsync(string? config, IReadOnlyDictionary<string, string>? env, int port, IReadOnlyList<string> args, string? dir)
    {
        dir ??= Path.Combine(Path.GetTempPath(), "qwen-nats-test-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        env ??= new Dictionary<string, string>();
        var log = new List<string>();
        (var process, port) = await LaunchAsync(dir, port, config, env, args, log);
        var server = new NatsServer(process, dir, port, config, env, args);
        lock (server._log) server._log.AddRange(log);
        process.OutputDataReceived += (_, e) => server.Append(e.Data);
        process.ErrorDataReceived += (_, e) => server.Append(e.Data);
        return server;
    }

    /// <summary>Kills the server with SIGKILL (no clean shutdown), keeping its store.</summary>
    public async Task KillAsync()
    {
        if (_process.HasExited) return;
        _process.Kill(true);
        await _process.WaitForExitAsync();
    }

    /// <summary>Starts the server again on the same port with the same store.</summary>
    public async Task RestartAsync()
    {
        await KillAsync();
        _process.Dispose();
        foreach (var f in Directory.GetFiles(_dir, "*.ports")) File.Delete(f);
        var log = new List<string>();
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (true)
        {
            try
            {
                (_process, _) = await LaunchAsync(_dir, Port, _config, _env, _args, log);
                break;
            }
            catch (InvalidOperationException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(200); // the port may still be in TIME_WAIT for a moment
            }
        }
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_log)
        {
            _log.Add(line);
            if (_log.Count > 20_000) _log.RemoveRange(0, 10_000);
        }
    }

    private static async Task<(Process, int)> LaunchAsync(string dir, int port, string? config, IReadOnlyDictionary<string, string> env, IReadOnlyList<string> extra, List<string> log)
    {
        var exe = Environment.GetEnvironmentVariable("NATS_SERVER") ?? "nats-server";
        var psi = new ProcessStartInfo(exe)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        var args = new List<string>();
        if (config is not null) args.AddRange(["-c", config]);
        args.AddRange(["-a", "127.0.0.1", "-p", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--ports_file_dir", dir]);
        // JetStream with the store in dir/js, unless the configuration sets both (a cluster node's does).
        if (!extra.Contains(StoreFromConfig)) args.AddRange(["-js", "-sd", Path.Combine(dir, "js")]);
        args.AddRange(extra.Where(a => a != StoreFromConfig));
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env) psi.Environment[k] = v;
        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new InvalidOperationException("nats-server did not start");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException("nats-server is not installed (apt-get install -y nats-server) or NATS_SERVER does not point at it.", e);
        }
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.Add(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.Add(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (DateTime.UtcNow < deadline)
        {
            var ports = Directory.GetFiles(dir, "*.ports").FirstOrDefault();
            if (ports is not null)
            {
                var text = await File.ReadAllTextAsync(ports);
                var at = text.IndexOf("nats://", StringComparison.Ordinal);
                if (at >= 0)
                {
                    var hostPort = text[(at + 7)..].Split('"', ',', ']')[0];
                    var found = int.Parse(hostPort[(hostPort.LastIndexOf(':') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
                    if (await AnswersAsync(found))
                        return (process, found);
                }
            }
            if (process.HasExited)
            {
                string tail;
                lock (log) tail = string.Join('\n', log.TakeLast(10));
                throw new InvalidOperationException($"nats-server exited with code {process.ExitCode}: {tail}");
            }
            await Task.Delay(25);
        }
        process.Kill(true);
        throw new TimeoutException("nats-server did not become ready in 15 s");
    }

    private static async Task<bool> AnswersAsync(int port)
    {
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync("127.0.0.1", port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(true);
                await _process.WaitForExitAsync();
            }
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }
}
