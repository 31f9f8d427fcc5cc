using System.Diagnostics;
using System.Globalization;

namespace QwenNats.Bench;

/// <summary>A process the benchmark starts (nats-server or a QwenNats service) and stops.</summary>
internal sealed class Proc : IAsyncDisposable
{
    private readonly Process _p;
    private readonly List<string> _tail = [];

    private Proc(string name, Process p)
    {
        Name = name;
        _p = p;
        p.OutputDataReceived += (_, e) => Keep(e.Data);
        p.ErrorDataReceived += (_, e) => Keep(e.Data);
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
    }

    public string Name { get; }
    public int Pid => _p.Id;
    public bool Exited => _p.HasExited;
    public string Tail { get { lock (_tail) return string.Join('\n', _tail.TakeLast(15)); } }

    private void Keep(string? line)
    {
        if (line is null) return;
        lock (_tail) { _tail.Add(line); if (_tail.Count > 200) _tail.RemoveRange(0, 100); }
    }

    public static string Root => Paths.RepoRoot;

    public static Proc Nats(int port, string dir)
    {
        var psi = new ProcessStartInfo("nats-server") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-a", "127.0.0.1", "-p", port.ToString(CultureInfo.InvariantCulture), "-js", "-sd", dir }) psi.ArgumentList.Add(a);
        return new Proc("nats-server", Process.Start(psi)!);
    }

    /// <summary>A setting whose key starts with this is an environment variable of the process (e.g. <c>env:DOTNET_TieredPGO</c>).</summary>
    public const string EnvPrefix = "env:";

    /// <summary>A setting naming another checkout whose Release build of the service runs instead of this one's.</summary>
    public const string RootSetting = "bench:root";

    public static Proc Service(string name, string folder, string assembly, IReadOnlyDictionary<string, string> settings)
    {
        var root = settings.TryGetValue(RootSetting, out var other) ? other : Root;
        var dll = Path.Combine(root, "services", folder, "bin", "Release", "net10.0", assembly + ".dll");
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(dll);
        psi.Environment["DOTNET_gcServer"] = "0";
        foreach (var (k, v) in settings)
            if (k == RootSetting)
                continue;
            else if (k.StartsWith(EnvPrefix, StringComparison.Ordinal))
                psi.Environment[k[EnvPrefix.Length..]] = v;
            else
                psi.ArgumentList.Add($"--{k}={v}");
        return new Proc(name, Process.Start(psi)!);
    }

    public long Resident() => ProcessMemory.Resident(_p.Id);

    public static int FreePort() => Ports.Free();

    public async ValueTask DisposeAsync()
    {
        if (!_p.HasExited)
        {
            _p.Kill(entireProcessTree: true);
            await _p.WaitForExitAsync();
        }
        _p.Dispose();
    }
}
