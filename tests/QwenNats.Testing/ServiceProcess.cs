using System.Diagnostics;
using System.Globalization;

namespace QwenNats.Testing;

/// <summary>
/// A QwenNats service run as its own process (<c>dotnet services/&lt;name&gt;/bin/.../QwenNats.&lt;Name&gt;.dll
/// --Key=Value ...</c>), for drills that kill processes with SIGKILL and measure their memory.
/// </summary>
public sealed class ServiceProcess : IAsyncDisposable
{
    private readonly string _dll;
    private readonly IReadOnlyDictionary<string, string?> _settings;
    private readonly IReadOnlyDictionary<string, string> _env;
    private readonly List<string> _output = [];
    private Process _process;

    private ServiceProcess(string name, string dll, IReadOnlyDictionary<string, string?> settings, IReadOnlyDictionary<string, string> env)
    {
        Name = name;
        _dll = dll;
        _settings = settings;
        _env = env;
        _process = Launch();
    }

    public string Name { get; }
    public int Pid => _process.Id;
    public bool HasExited => _process.HasExited;

    /// <summary>Everything the process wrote to stdout and stderr (the last 20,000 lines).</summary>
    public IReadOnlyList<string> Output
    {
        get { lock (_output) return _output.ToList(); }
    }

    /// <summary>Starts <c>services/&lt;folder&gt;</c>'s build, e.g. <c>Start("worker", "QwenNats.Worker", ...)</c>.</summary>
    public static ServiceProcess Start(string folder, string assembly, IReadOnlyDictionary<string, string?> settings, IReadOnlyDictionary<string, string>? env = null)
    {
        var config = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";
        var dll = Path.Combine(Paths.RepoRoot, "services", folder, "bin", config, "net10.0", assembly + ".dll");
        if (!File.Exists(dll))
            throw new FileNotFoundException($"{dll} is not built (dotnet build -c {config})", dll);
        return new ServiceProcess(folder, dll, settings, env ?? new Dictionary<string, string>());
    }

    private Process Launch()
    {
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(_dll);
        foreach (var (k, v) in _settings)
            psi.ArgumentList.Add($"--{k}={v}");
        foreach (var (k, v) in _env)
            psi.Environment[k] = v;
        psi.Environment["DOTNET_gcServer"] = "0";
        var p = Process.Start(psi) ?? throw new InvalidOperationException($"{Name} did not start");
        p.OutputDataReceived += (_, e) => Append(e.Data);
        p.ErrorDataReceived += (_, e) => Append(e.Data);
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_output)
        {
            _output.Add(line);
            if (_output.Count > 20_000) _output.RemoveRange(0, 10_000);
        }
    }

    /// <summary>The exit code, once <see cref="HasExited"/>.</summary>
    public int ExitCode => _process.ExitCode;

    /// <summary>Waits for the process to end by itself; false when it still runs after <paramref name="timeout"/>.</summary>
    public async Task<bool> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>SIGKILL: no shutdown hooks, no goodbye heartbeat, unacked work stays with the server.</summary>
    public async Task KillAsync()
    {
        if (_process.HasExited) return;
        _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
    }

    /// <summary>Starts the same service with the same settings again (after <see cref="KillAsync"/>).</summary>
    public async Task RestartAsync()
    {
        await KillAsync();
        _process.Dispose();
        _process = Launch();
    }

    /// <summary>Resident set size from <c>/proc/&lt;pid&gt;/status</c>.</summary>
    public long ResidentBytes() => Resident(_process.Id);

    public static long Resident(int pid) => ProcessMemory.Resident(pid);

    /// <summary>A free loopback TCP port (bound and released).</summary>
    public static int FreePort() => Ports.Free();

    public async ValueTask DisposeAsync()
    {
        try
        {
            await KillAsync();
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
    }
}
