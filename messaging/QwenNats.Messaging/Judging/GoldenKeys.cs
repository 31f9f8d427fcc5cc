using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace QwenNats.Messaging;

/// <summary>
/// What a golden result is keyed by. A colour's answers to the golden inputs are determined by what its workers
/// serve — the model file, the whole prompt profile (prompts and sampling defaults) and any injected faults —
/// and by the inputs themselves (each chat prompt runs with a fixed seed; sentiment labels are greedy). Workers
/// report the <see cref="Fingerprint"/> of what they serve; a stored result is found under <see cref="Key"/> of
/// that fingerprint and the golden inputs' digest, so a different model, profile, faults or golden set never
/// reuses it.
/// </summary>
public static class GoldenKeys
{
    /// <summary>Keys of stored golden results in <see cref="Releases.Bucket"/>: <c>golden.&lt;hex&gt;</c>.</summary>
    public const string Prefix = "golden.";

    /// <summary>Changes whenever what a golden run sends or stores changes meaning (request shape, seeds, checks),
    /// so results stored by an older promoter are not reused.</summary>
    public const int Format = 1;

    /// <summary>
    /// What a worker serves, as one digest: SHA-256 over the model digest, the prompt profile as JSON and the
    /// effective faults (none when no fault is enabled). Lowercase hex.
    /// </summary>
    public static string Fingerprint(string modelSha256, PromptProfile profile, FaultOptions? faults)
    {
        var text = new StringBuilder()
            .Append("model=").Append(modelSha256.ToLowerInvariant()).Append('\n')
            .Append("profile=").Append(JsonSerializer.Serialize(profile, ProfileJsonContext.Default.PromptProfile)).Append('\n')
            .Append("faults=").Append(faults is { Enabled: true } f ? JsonSerializer.Serialize(f, QwenJsonContext.Default.FaultOptions) : "none");
        return Hex(text.ToString());
    }

    /// <summary>The digest of a golden set: its inputs in order (task, id, text, expected label).</summary>
    public static string InputsDigest(IEnumerable<GoldenInput> inputs)
    {
        var text = new StringBuilder();
        foreach (var i in inputs)
            text.Append(i.Task).Append('\u0001').Append(i.Id).Append('\u0001').Append(i.Text).Append('\u0001').Append(i.Label).Append('\u0001')
                .Append(i.MaxTokens).Append('\n');
        return Hex(text.ToString());
    }

    /// <summary>The KV key of a colour's result: its fingerprint, the inputs' digest and <see cref="Format"/>.</summary>
    public static string Key(string fingerprint, string inputsDigest) =>
        Prefix + Hex($"format={Format}\nfingerprint={fingerprint}\ninputs={inputsDigest}")[..40];

    private static string Hex(string s) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(s)));
}
