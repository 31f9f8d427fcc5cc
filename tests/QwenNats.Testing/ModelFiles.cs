using System.Text;

namespace QwenNats.Testing;

/// <summary>Model files for release tests, made from the tiny shared GGUF at test time (never committed).</summary>
public static class ModelFiles
{
    /// <summary>
    /// A copy of the tiny model whose <c>general.name</c> metadata value is rewritten to <paramref name="tag"/> (5 ASCII
    /// characters, the length of the original "llama"): the same weights and tokenizer, so it answers the same, but
    /// another file with another SHA-256, as a re-quantized or re-exported build would be.
    /// </summary>
    public static string Variant(string directory, string tag)
    {
        if (tag.Length != 5 || tag.Any(c => c > 127))
            throw new ArgumentException("The tag must be 5 ASCII characters.", nameof(tag));
        var bytes = File.ReadAllBytes(Paths.Model);
        var key = Encoding.ASCII.GetBytes("general.name");
        var at = bytes.AsSpan().IndexOf(key);
        if (at < 0) throw new InvalidOperationException("The test model has no general.name metadata.");
        // key, then the value's type (u32 = 8, a string), its length (u64 = 5) and its bytes.
        var value = at + key.Length + 4 + 8;
        if (BitConverter.ToUInt32(bytes, at + key.Length) != 8 || BitConverter.ToUInt64(bytes, at + key.Length + 4) != 5)
            throw new InvalidOperationException("general.name is not the 5-character string this helper rewrites.");
        Encoding.ASCII.GetBytes(tag).CopyTo(bytes, value);
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, $"stories260K-{tag}.gguf");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    /// <summary>A file that starts like a GGUF and then is garbage: llama.cpp refuses to load it.</summary>
    public static string Corrupt(string directory)
    {
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, "corrupt.gguf");
        var bytes = new byte[64 * 1024];
        new Random(7).NextBytes(bytes);
        "GGUF"u8.CopyTo(bytes);
        BitConverter.GetBytes(3u).CopyTo(bytes, 4);
        File.WriteAllBytes(path, bytes);
        return path;
    }
}
