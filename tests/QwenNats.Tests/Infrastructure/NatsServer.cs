using System.Diagnostics;
using System.Net.Sockets;

namespace QwenNats.Tests.Infrastructure;

/// <summary>
/// A real <c>nats-server</c> with JetStream on a random port and a temporary store, killed and
/// deleted on dispose.
/// </summary>
public sealed class NatsServer : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _dir;

    private NatsServer(Process process, string dir, int port)
    {
        _process = process;
        _dir = dir;
        Port = port;
    }

    public int Port { get; }
    public string Url => $"nats://127.0.0.1:{Port}";

    public static async Task<NatsServer> StartAsync()
    {
        var dir = Path.Combine(Path.GetTempPath(), "qwen-nats-test-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        var exe = Environment.GetEnvironmentVariable("NATS_SERVER") ?? "nats-server";
        var psi = new ProcessStartInfo(exe)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", Path.Combine(dir, "js"), "--ports_file_dir", dir })
            psi.ArgumentList.Add(a);
        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new InvalidOperationException("nats-server did not start");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException("nats-server is not installed (apt-get install -y nats-server) or NATS_SERVER does not point at it.", e);
        }
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
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
                    var port = int.Parse(hostPort[(hostPort.LastIndexOf(':') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
                    if (await AnswersAsync(port))
                        return new NatsServer(process, dir, port);
                }
            }
            if (process.HasExited)
                throw new InvalidOperationException($"nats-server exited with code {process.ExitCode}");
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
