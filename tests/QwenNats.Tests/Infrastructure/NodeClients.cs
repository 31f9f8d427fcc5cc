using System.Diagnostics;

namespace QwenNats.Tests.Infrastructure;

/// <summary>
/// Node.js programs under <c>tests/clients/&lt;name&gt;</c>: clients the project did not write (their packages
/// pinned by the folder's package-lock.json, installed with <c>npm ci</c> once per test run).
/// </summary>
public static class NodeClients
{
    private static readonly SemaphoreSlim Install = new(1, 1);
    private static readonly HashSet<string> Installed = [];

    public static string Folder(string name) => Path.Combine(Paths.RepoRoot, "tests", "clients", name);

    /// <summary>Runs <c>node &lt;script&gt;</c> in the client's folder; returns its exit code, standard output and error.</summary>
    public static async Task<(int Code, string Out, string Err)> RunAsync(string name, string script, IReadOnlyDictionary<string, string> env, TimeSpan timeout)
    {
        var dir = Folder(name);
        await Install.WaitAsync();
        try
        {
            if (!Installed.Contains(dir))
            {
                var (code, stdout, stderr) = await ExecAsync("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"], dir, new Dictionary<string, string>(), TimeSpan.FromMinutes(5));
                if (code != 0)
                    throw new InvalidOperationException($"npm ci in {dir} failed ({code}): {stdout}\n{stderr}");
                Installed.Add(dir);
            }
        }
        finally
        {
            Install.Release();
        }
        return await ExecAsync("node", [script], dir, env, timeout);
    }

    private static async Task<(int, string, string)> ExecAsync(string file, string[] args, string dir, IReadOnlyDictionary<string, string> env, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(file) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env) psi.Environment[k] = v;
        using var process = Process.Start(psi) ?? throw new InvalidOperationException($"{file} did not start");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in {timeout}: {await stdout}\n{await stderr}");
        }
        return (process.ExitCode, await stdout, await stderr);
    }
}
