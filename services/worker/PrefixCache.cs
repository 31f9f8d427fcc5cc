using LLama.Batched;
using LLama.Native;

namespace QwenNats.Worker;

/// <summary>
/// The fixed start of every prompt of a task (system prompt and the user turn's header), evaluated once
/// per context and shared: a request whose tokens begin with it forks the evaluated sequence (its KV cells
/// are shared, not copied) and only its own tokens are decoded. A prompt that does not begin with it (the
/// client sent its own system prompt) is decoded in full.
/// </summary>
public sealed class PrefixCache
{
    private readonly IReadOnlyDictionary<string, int[]> _tokens;
    private readonly Dictionary<string, Conversation> _evaluated = new(StringComparer.Ordinal);

    public PrefixCache(IReadOnlyDictionary<string, int[]> tokens, bool enabled)
    {
        _tokens = tokens;
        Enabled = enabled;
    }

    public bool Enabled { get; }

    /// <summary>Prefix tokens per task (empty when a task has none worth sharing).</summary>
    public IReadOnlyDictionary<string, int[]> Tokens => _tokens;

    public int TotalTokens => _tokens.Values.Sum(t => t.Length);

    /// <summary>Tokens two renderings of a task share from the start: what every prompt of it begins with.</summary>
    public static int[] CommonPrefix(IReadOnlyList<int> a, IReadOnlyList<int> b)
    {
        var n = 0;
        while (n < a.Count && n < b.Count && a[n] == b[n]) n++;
        return a.Take(n).ToArray();
    }

    public static bool StartsWith(IReadOnlyList<int> prompt, int[] prefix)
    {
        if (prefix.Length == 0 || prompt.Count <= prefix.Length) return false;
        for (var i = 0; i < prefix.Length; i++)
            if (prompt[i] != prefix[i]) return false;
        return true;
    }

    /// <summary>Evaluates every prefix in a (new) context; called at start and after the context is reset.</summary>
    public void Warm(BatchedExecutor executor, Func<BatchedExecutor, DecodeResult> decode)
    {
        _evaluated.Clear();
        if (!Enabled) return;
        foreach (var (task, tokens) in _tokens)
        {
            if (tokens.Length == 0) continue;
            var conversation = executor.Create();
            conversation.Prompt(tokens.Select(t => (LLamaToken)t).ToArray());
            _evaluated[task] = conversation;
        }
        if (_evaluated.Count > 0)
        {
            var result = decode(executor);
            if (result != DecodeResult.Ok)
            {
                foreach (var c in _evaluated.Values) c.Dispose();
                _evaluated.Clear();
                throw new InvalidOperationException($"Evaluating the prompt prefixes failed ({result}).");
            }
        }
    }

    /// <summary>A sequence for a prompt: a fork of the evaluated prefix when the prompt begins with it, else a
    /// new one; and how many of the prompt's tokens are already in it.</summary>
    public (Conversation Conversation, int Reused) Begin(BatchedExecutor executor, string task, IReadOnlyList<int> prompt)
    {
        if (_evaluated.TryGetValue(task, out var prefix) && StartsWith(prompt, _tokens[task]))
            return (prefix.Fork(), _tokens[task].Length);
        return (executor.Create(), 0);
    }
}
