using System.Text.Json;

namespace QwenNats.Messaging;

/// <summary>A golden or comparison inputs file that cannot be used, with the file and line it is about.</summary>
public sealed class GoldenInputsException(string message) : Exception(message);

/// <summary>
/// Reads golden and comparison inputs: JSON Lines, one object per line with <c>text</c> (required), <c>task</c>
/// (<c>sentiment</c> or <c>chat</c>; default <c>sentiment</c> when a <c>label</c> is given, else the file's default),
/// <c>id</c> (default the line number), <c>label</c>, <c>lang</c>, <c>kind</c> and <c>max_tokens</c>. Blank lines are skipped.
/// </summary>
public static class GoldenInputs
{
    public static readonly IReadOnlyList<string> Labels = ["positive", "negative", "neutral"];

    /// <summary>Reads a file; <paramref name="defaultTask"/> applies to lines that name no task and no label.</summary>
    public static IReadOnlyList<GoldenInput> Load(string path, string defaultTask)
    {
        if (!File.Exists(path))
            throw new GoldenInputsException($"Inputs file '{path}' does not exist.");
        return Parse(File.ReadLines(path), path, defaultTask);
    }

    public static IReadOnlyList<GoldenInput> Parse(IEnumerable<string> lines, string source, string defaultTask)
    {
        var inputs = new List<GoldenInput>();
        var ids = new HashSet<string>(StringComparer.Ordinal);
        var n = 0;
        foreach (var line in lines)
        {
            n++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonElement r;
            try
            {
                using var doc = JsonDocument.Parse(line);
                r = doc.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw new GoldenInputsException($"{source}:{n}: not a JSON object: {e.Message.Split(". ")[0]}.");
            }
            if (r.ValueKind != JsonValueKind.Object)
                throw new GoldenInputsException($"{source}:{n}: each line must be a JSON object like {{\"task\":\"chat\",\"text\":\"...\"}}.");
            string? Get(string name)
            {
                if (!r.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
                if (v.ValueKind != JsonValueKind.String)
                    throw new GoldenInputsException($"{source}:{n}: '{name}' must be a string.");
                return v.GetString();
            }
            int? maxTokens = null;
            if (r.TryGetProperty("max_tokens", out var mt) && mt.ValueKind != JsonValueKind.Null)
            {
                if (!mt.TryGetInt32(out var m) || m is < 1 or > 4096)
                    throw new GoldenInputsException($"{source}:{n}: 'max_tokens' must be a whole number from 1 to 4096.");
                maxTokens = m;
            }
            var text = Get("text");
            if (string.IsNullOrWhiteSpace(text))
                throw new GoldenInputsException($"{source}:{n}: 'text' is required.");
            var label = Get("label");
            var task = Get("task") ?? (label is not null ? InferTasks.Sentiment : defaultTask);
            if (task is not (InferTasks.Sentiment or InferTasks.Chat))
                throw new GoldenInputsException($"{source}:{n}: 'task' must be sentiment or chat, not '{Short(task)}'.");
            if (label is not null && (task != InferTasks.Sentiment || !Labels.Contains(label)))
                throw new GoldenInputsException($"{source}:{n}: 'label' is for sentiment inputs and must be one of {string.Join(", ", Labels)}.");
            var id = Get("id") ?? $"line{n}";
            if (!ids.Add(id))
                throw new GoldenInputsException($"{source}:{n}: id '{Short(id)}' is used twice.");
            inputs.Add(new GoldenInput { Id = id, Task = task, Text = text, Label = label, Lang = Get("lang"), Kind = Get("kind"), MaxTokens = maxTokens });
        }
        return inputs;
    }

    /// <summary>Problems of inputs sent in a request (the same rules as a file); null when they are usable.</summary>
    public static string? Problem(IReadOnlyList<GoldenInput> inputs, int maxInputs, int maxTextChars)
    {
        if (inputs.Count == 0) return "'inputs' is empty.";
        if (inputs.Count > maxInputs) return $"'inputs' has {inputs.Count} entries; at most {maxInputs} per comparison.";
        var ids = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (i, n) in inputs.Select((i, n) => (i, n + 1)))
        {
            if (i is null) return $"inputs[{n}] is null; each input is an object with 'id', 'task' and 'text'.";
            if (i.Task is not (InferTasks.Sentiment or InferTasks.Chat)) return $"inputs[{n}]: 'task' must be sentiment or chat.";
            if (string.IsNullOrWhiteSpace(i.Text)) return $"inputs[{n}]: 'text' is required.";
            if (i.Text.Length > maxTextChars) return $"inputs[{n}]: 'text' is longer than {maxTextChars} characters.";
            if (i.Label is not null && (i.Task != InferTasks.Sentiment || !Labels.Contains(i.Label)))
                return $"inputs[{n}]: 'label' is for sentiment inputs and must be one of {string.Join(", ", Labels)}.";
            if (i.MaxTokens is < 1 or > 4096) return $"inputs[{n}]: 'max_tokens' must be from 1 to 4096.";
            if (string.IsNullOrWhiteSpace(i.Id) || i.Id.Length > 64 || i.Id.Any(char.IsControl)) return $"inputs[{n}]: 'id' must be 1 to 64 printable characters.";
            if (!ids.Add(i.Id)) return $"inputs[{n}]: id '{i.Id}' is used twice.";
        }
        return null;
    }

    private static string Short(string s) => s.Length > 32 ? s[..32] + "…" : s;
}
