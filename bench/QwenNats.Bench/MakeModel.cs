using System.Diagnostics;
using LLama;

namespace QwenNats.Bench;

/// <summary><c>model --out dir</c>: writes the Qwen-shaped GGUF (F16) and quantizes it with LLamaSharp's quantizer.</summary>
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
        var f16 = Path.Combine(dir, $"{stem}-f16.gguf");
        var clock = Stopwatch.StartNew();
        if (!File.Exists(f16))
        {
            QwenShapedModel.Write(f16 + ".tmp", shape);
            File.Move(f16 + ".tmp", f16, overwrite: true);
            Console.WriteLine($"wrote {f16} ({new FileInfo(f16).Length / 1048576.0:F0} MiB, {shape.Parameters / 1e6:F0} M parameters) in {clock.Elapsed.TotalSeconds:F1} s");
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
