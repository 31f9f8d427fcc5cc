using System.Diagnostics;

namespace QwenNats.Tests.Infrastructure;

/// <summary>Runs the built <c>qwenctl</c> as a process, as an operator or a CI/CD job would.</summary>
public static class Qwenctl
{
    public static async Task<(int Exit, string Stdout, string Stderr)> RunAsync(string natsUrl, IEnumerable<string> args, TimeSpan? timeout = null)
    {
        var config = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";
        var dll = Path.Combine(Paths.RepoRoot, "tools", "qwenctl", "bin", config, "net10.0", "qwenctl.dll");
        Assert.True(File.Exists(dll), $"{dll} is not built");
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["NATS_URL"] = natsUrl;
        psi.Environment["QWEN_CTL_TIMEOUT"] = "60";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(90));
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"qwenctl {string.Join(' ', args)} did not finish; output so far:\n{await stdout}");
        }
        return (p.ExitCode, await stdout, await stderr);
    }
}
