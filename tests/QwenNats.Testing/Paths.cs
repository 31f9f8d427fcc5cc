namespace QwenNats.Testing;

/// <summary>Where the repository, its profiles and the shared test model are.</summary>
public static class Paths
{
    public static string RepoRoot { get; } = FindRoot();

    public static string Profile(string version) => Path.Combine(RepoRoot, "deploy", "profiles", $"{version}.json");

    /// <summary>The tiny real GGUF: <c>QWEN_TEST_MODEL</c>, else <c>../shared/models/stories260K.gguf</c> next to the repository.</summary>
    public static string Model
    {
        get
        {
            var path = Environment.GetEnvironmentVariable("QWEN_TEST_MODEL");
            if (string.IsNullOrEmpty(path))
                path = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "models", "stories260K.gguf"));
            if (!File.Exists(path))
                throw new FileNotFoundException($"The test model is missing at {path}; set QWEN_TEST_MODEL to a GGUF file (stories260K.gguf).", path);
            return path;
        }
    }

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "QwenNats.sln")))
            dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("QwenNats.sln not found above the test directory.");
    }
}
