using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace QwenNats.Testing;

/// <summary>The shape of a Qwen2-architecture model; <see cref="Qwen15_0_5B"/> is Qwen1.5-0.5B's.</summary>
public sealed record QwenShape(int Layers, int Hidden, int Heads, int KvHeads, int FeedForward, int Vocab, int ContextLength, bool TiedOutput, string Name)
{
    /// <summary>Qwen1.5-0.5B: 24 layers, hidden 1024, 16 heads (no GQA), feed-forward 2816, vocabulary 151936,
    /// output tied to the embeddings, 32k context.</summary>
    public static readonly QwenShape Qwen15_0_5B = new(24, 1024, 16, 16, 2816, 151936, 32768, TiedOutput: true, "Qwen1.5-0.5B-shaped");

    /// <summary>The same architecture, small enough for a test to write and load in a second. Its 2048-token
    /// vocabulary is too small for Qwen's tokenizer: write it with <see cref="QwenShapedModel.WriteWithByteVocabulary"/>.</summary>
    public static readonly QwenShape Miniature = new(2, 256, 4, 4, 512, 2048, 4096, TiedOutput: true, "Qwen2-miniature");

    /// <summary>Two tiny layers with Qwen's full vocabulary (151936 rows, 19 MiB of F16 embeddings): a model whose
    /// tokenizer is Qwen's, small enough for a test.</summary>
    public static readonly QwenShape MiniatureQwenVocabulary = new(2, 64, 4, 4, 128, 151936, 4096, TiedOutput: true, "Qwen2-miniature-qwen-vocabulary");

    public long Parameters =>
        (long)Vocab * Hidden * (TiedOutput ? 1 : 2) + Hidden
        + Layers * (2L * Hidden + 4L * Hidden * Hidden + 3L * Hidden + 3L * Hidden * FeedForward);
}

/// <summary>
/// Writes a GGUF (version 3) with the exact tensor shapes and metadata of a Qwen2-architecture model — Qwen's
/// byte-level BPE tokenizer (vocabulary, merges, special tokens, pre-tokenizer <c>qwen2</c>), a ChatML chat
/// template — and random weights (F16 matrices, F32 norms and biases). Its compute per token is the real model's
/// and prompts tokenize to the real model's token counts, so timings on it predict the real model's without
/// downloading it; its answers are noise. Quantize it with LLamaSharp.
/// </summary>
public static class QwenShapedModel
{
    private const uint Alignment = 32;
    private const string ChatTemplate =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    private enum GgufType : uint { UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7, String = 8, Array = 9 }

    private enum GgmlType : uint { F32 = 0, F16 = 1 }

    private sealed record Tensor(string Name, long[] Dims, GgmlType Type, Func<int, float>? Fill = null)
    {
        public long Elements => Dims.Aggregate(1L, (a, b) => a * b);
        public long Bytes => Elements * (Type == GgmlType.F16 ? 2 : 4);
    }

    /// <summary>
    /// Writes the model with Qwen's real tokenizer: the 151,643 regular tokens and merges of <paramref name="tokenizer"/>
    /// (<see cref="QwenTokenizer.FromNpmAsync"/>), <c>&lt;|endoftext|&gt;</c>, <c>&lt;|im_start|&gt;</c> and <c>&lt;|im_end|&gt;</c>
    /// at ids 151643 to 151645, and the rest of the shape's vocabulary as unused <c>[PADn]</c> tokens, as the GGUFs
    /// converted from Qwen1.5 have. The shape's vocabulary must hold them all (Qwen's is 151936).
    /// </summary>
    public static void Write(string path, QwenShape shape, QwenTokenizer tokenizer, int seed = 1)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        WriteFile(path, shape, QwenVocabulary(shape.Vocab, tokenizer), seed);
    }

    /// <summary>
    /// Writes the model with a stand-in vocabulary of the shape's size and no merges, so any text tokenizes to one
    /// token per UTF-8 byte (about four times Qwen's token count for English). For shapes whose vocabulary is too
    /// small for Qwen's tokenizer (<see cref="QwenShape.Miniature"/>) or where token counts do not matter; it needs
    /// no tokenizer data.
    /// </summary>
    public static void WriteWithByteVocabulary(string path, QwenShape shape, int seed = 1) =>
        WriteFile(path, shape, ByteVocabulary(shape.Vocab), seed);

    private static void WriteFile(string path, QwenShape shape, Vocabulary vocabulary, int seed)
    {
        var tensors = Tensors(shape);
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        using var w = new BinaryWriter(file, Encoding.UTF8, leaveOpen: true);
        var kv = Metadata(shape, vocabulary);
        w.Write(0x46554747u);            // "GGUF"
        w.Write(3u);                     // version
        w.Write((ulong)tensors.Count);
        w.Write((ulong)kv.Count);
        foreach (var (key, write) in kv)
        {
            WriteString(w, key);
            write(w);
        }
        ulong offset = 0;
        foreach (var t in tensors)
        {
            WriteString(w, t.Name);
            w.Write((uint)t.Dims.Length);
            foreach (var d in t.Dims) w.Write((ulong)d);
            w.Write((uint)t.Type);
            w.Write(offset);
            offset = Align(offset + (ulong)t.Bytes);
        }
        Pad(w);
        var rng = new XorShift((ulong)seed * 0x9E3779B97F4A7C15UL + 1);
        var table = new Half[4096];
        for (var i = 0; i < table.Length; i++) table[i] = (Half)(Gaussian(rng) * 0.02);
        var buffer = new byte[1 << 20];
        foreach (var t in tensors)
        {
            long written = 0;
            while (written < t.Elements)
            {
                var n = (int)Math.Min(t.Elements - written, buffer.Length / (t.Type == GgmlType.F16 ? 2 : 4));
                for (var i = 0; i < n; i++)
                {
                    if (t.Type == GgmlType.F16)
                        BinaryPrimitives.WriteHalfLittleEndian(buffer.AsSpan(i * 2), table[rng.Next() & 4095]);
                    else
                        BinaryPrimitives.WriteSingleLittleEndian(buffer.AsSpan(i * 4), t.Fill!((int)(written + i)));
                }
                w.Write(buffer, 0, n * (t.Type == GgmlType.F16 ? 2 : 4));
                written += n;
            }
            Pad(w);
        }
    }

    private static List<Tensor> Tensors(QwenShape s)
    {
        float One(int _) => 1f;
        float Zero(int _) => 0f;
        var kvDim = s.Hidden / s.Heads * s.KvHeads;
        var list = new List<Tensor> { new("token_embd.weight", [s.Hidden, s.Vocab], GgmlType.F16) };
        for (var i = 0; i < s.Layers; i++)
        {
            var b = $"blk.{i.ToString(CultureInfo.InvariantCulture)}";
            list.Add(new($"{b}.attn_norm.weight", [s.Hidden], GgmlType.F32, One));
            list.Add(new($"{b}.attn_q.weight", [s.Hidden, s.Hidden], GgmlType.F16));
            list.Add(new($"{b}.attn_q.bias", [s.Hidden], GgmlType.F32, Zero));
            list.Add(new($"{b}.attn_k.weight", [s.Hidden, kvDim], GgmlType.F16));
            list.Add(new($"{b}.attn_k.bias", [kvDim], GgmlType.F32, Zero));
            list.Add(new($"{b}.attn_v.weight", [s.Hidden, kvDim], GgmlType.F16));
            list.Add(new($"{b}.attn_v.bias", [kvDim], GgmlType.F32, Zero));
            list.Add(new($"{b}.attn_output.weight", [s.Hidden, s.Hidden], GgmlType.F16));
            list.Add(new($"{b}.ffn_norm.weight", [s.Hidden], GgmlType.F32, One));
            list.Add(new($"{b}.ffn_gate.weight", [s.Hidden, s.FeedForward], GgmlType.F16));
            list.Add(new($"{b}.ffn_up.weight", [s.Hidden, s.FeedForward], GgmlType.F16));
            list.Add(new($"{b}.ffn_down.weight", [s.FeedForward, s.Hidden], GgmlType.F16));
        }
        list.Add(new("output_norm.weight", [s.Hidden], GgmlType.F32, One));
        if (!s.TiedOutput)
            list.Add(new("output.weight", [s.Hidden, s.Vocab], GgmlType.F16));
        return list;
    }

    private static List<(string Key, Action<BinaryWriter> Write)> Metadata(QwenShape s, Vocabulary v)
    {
        var (tokens, types, merges, bos, eos) = v;
        var a = "qwen2";
        return
        [
            ("general.architecture", w => Str(w, a)),
            ("general.name", w => Str(w, s.Name + " (random weights)")),
            ("general.alignment", w => U32(w, Alignment)),
            ("general.file_type", w => U32(w, 1)),
            ($"{a}.block_count", w => U32(w, (uint)s.Layers)),
            ($"{a}.context_length", w => U32(w, (uint)s.ContextLength)),
            ($"{a}.embedding_length", w => U32(w, (uint)s.Hidden)),
            ($"{a}.feed_forward_length", w => U32(w, (uint)s.FeedForward)),
            ($"{a}.attention.head_count", w => U32(w, (uint)s.Heads)),
            ($"{a}.attention.head_count_kv", w => U32(w, (uint)s.KvHeads)),
            ($"{a}.rope.freq_base", w => F32(w, 1_000_000f)),
            ($"{a}.attention.layer_norm_rms_epsilon", w => F32(w, 1e-6f)),
            ("tokenizer.ggml.model", w => Str(w, "gpt2")),
            ("tokenizer.ggml.pre", w => Str(w, "qwen2")),
            ("tokenizer.ggml.tokens", w =>
            {
                w.Write((uint)GgufType.Array);
                w.Write((uint)GgufType.String);
                w.Write((ulong)tokens.Count);
                foreach (var t in tokens) WriteString(w, t);
            }),
            ("tokenizer.ggml.token_type", w =>
            {
                w.Write((uint)GgufType.Array);
                w.Write((uint)GgufType.Int32);
                w.Write((ulong)types.Count);
                foreach (var t in types) w.Write(t);
            }),
            ("tokenizer.ggml.merges", w =>
            {
                w.Write((uint)GgufType.Array);
                w.Write((uint)GgufType.String);
                w.Write((ulong)merges.Count);
                foreach (var m in merges) WriteString(w, m);
            }),
            ("tokenizer.ggml.bos_token_id", w => U32(w, (uint)bos)),
            ("tokenizer.ggml.eos_token_id", w => U32(w, (uint)eos)),
            ("tokenizer.ggml.padding_token_id", w => U32(w, (uint)bos)),
            ("tokenizer.ggml.add_bos_token", w => { w.Write((uint)GgufType.Bool); w.Write((byte)0); }),
            ("tokenizer.chat_template", w => Str(w, ChatTemplate)),
        ];
    }

    private sealed record Vocabulary(IReadOnlyList<string> Tokens, IReadOnlyList<int> Types, IReadOnlyList<string> Merges, int Bos, int Eos);

    private const int Normal = 1, Control = 3, Unused = 5;

    /// <summary>Qwen's regular tokens and merges, its ChatML special tokens at their ids, then unused padding.</summary>
    private static Vocabulary QwenVocabulary(int size, QwenTokenizer tokenizer)
    {
        var specials = QwenTokenizer.ChatMlSpecialTokens;
        var regular = tokenizer.Tokens.Count;
        if (size < regular + specials.Count)
            throw new ArgumentException(
                $"A vocabulary of {size} tokens cannot hold Qwen's {regular} regular and {specials.Count} special tokens; use a shape with Qwen's 151936 " +
                $"(such as {nameof(QwenShape)}.{nameof(QwenShape.MiniatureQwenVocabulary)}) or {nameof(WriteWithByteVocabulary)}.", nameof(size));
        var tokens = new List<string>(size);
        var types = new List<int>(size);
        tokens.AddRange(tokenizer.Tokens);
        types.AddRange(Enumerable.Repeat(Normal, regular));
        foreach (var s in specials) { tokens.Add(s); types.Add(Control); }
        for (var i = tokens.Count; i < size; i++) { tokens.Add($"[PAD{i.ToString(CultureInfo.InvariantCulture)}]"); types.Add(Unused); }
        return new Vocabulary(tokens, types, tokenizer.Merges, regular, regular + 2);
    }

    /// <summary>
    /// A byte-level vocabulary without merges: the 256 byte symbols of GPT-2's byte-to-unicode map first (so any text
    /// tokenizes, one token per byte), then distinct filler tokens, then Qwen's special tokens
    /// (<c>&lt;|endoftext|&gt;</c>, <c>&lt;|im_start|&gt;</c>, <c>&lt;|im_end|&gt;</c>) at Qwen's ids (or at the end of a smaller vocabulary), then padding.
    /// </summary>
    private static Vocabulary ByteVocabulary(int size)
    {
        var bytes = ByteSymbols();
        var special = Math.Min(QwenTokenizer.RegularTokenCount, size - 3);
        var tokens = new List<string>(size);
        var types = new List<int>(size);
        for (var b = 0; b < 256; b++) { tokens.Add(bytes[b].ToString()); types.Add(Normal); }
        for (var i = 256; i < special; i++)
        {
            var word = Base26(i);
            tokens.Add(i % 2 == 0 ? "\u0120" + word : word);   // U+0120 is the byte symbol of a space
            types.Add(Normal);
        }
        foreach (var s in QwenTokenizer.ChatMlSpecialTokens) { tokens.Add(s); types.Add(Control); }
        for (var i = tokens.Count; i < size; i++) { tokens.Add($"[PAD{i.ToString(CultureInfo.InvariantCulture)}]"); types.Add(Unused); }
        return new Vocabulary(tokens, types, [], special, special + 2);
    }

    private static string Base26(int n)
    {
        var sb = new StringBuilder();
        do { sb.Insert(0, (char)('a' + n % 26)); n /= 26; } while (n > 0);
        return sb.ToString();
    }

    /// <summary>GPT-2's reversible byte-to-unicode map.</summary>
    private static char[] ByteSymbols()
    {
        var map = new char[256];
        var extra = 0;
        for (var b = 0; b < 256; b++)
        {
            var printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)(256 + extra++);
        }
        return map;
    }

    private static void Str(BinaryWriter w, string s) { w.Write((uint)GgufType.String); WriteString(w, s); }
    private static void U32(BinaryWriter w, uint v) { w.Write((uint)GgufType.UInt32); w.Write(v); }
    private static void F32(BinaryWriter w, float v) { w.Write((uint)GgufType.Float32); w.Write(v); }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static ulong Align(ulong n) => (n + Alignment - 1) / Alignment * Alignment;

    private static void Pad(BinaryWriter w)
    {
        w.Flush();
        var pos = (ulong)w.BaseStream.Position;
        var pad = Align(pos) - pos;
        for (ulong i = 0; i < pad; i++) w.Write((byte)0);
    }

    private static double Gaussian(XorShift rng)
    {
        var u1 = (rng.Next() + 1.0) / 4294967297.0;
        var u2 = (rng.Next() + 1.0) / 4294967297.0;
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    private sealed class XorShift(ulong state)
    {
        public uint Next()
        {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            return (uint)(state >> 16);
        }
    }
}
