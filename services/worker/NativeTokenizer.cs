using System.Buffers;
using System.Runtime.InteropServices;
using System.Text;
using LLama;

namespace QwenNats.Worker;

/// <summary>
/// Tokenizes a prompt with one call into llama.cpp's <c>llama_tokenize</c>. LLamaSharp's <c>Tokenize</c> runs the whole
/// tokenizer twice, once only to count the tokens and again to write them, so every prompt paid twice for what is most
/// of a request's time in the worker before decoding (traced on the tiny model's chat prompt: 0.13 of the 0.18 ms
/// between taking a request and handing it to the decode loop), and a long prompt pays in proportion to its length.
/// Here the tokens go into a buffer sized from the text's UTF-8 length, which
/// is enough for every llama.cpp tokenizer but a pathological one; when it is not, llama.cpp says how many are needed
/// and the call is made again with that. The functions are taken from the libllama LLamaSharp already loaded in this
/// process (found in <c>/proc/self/maps</c>, opened with <c>RTLD_NOLOAD</c>, so a second copy is never loaded), and
/// <see cref="TryBind"/> checks its tokens against LLamaSharp's on sample texts before it is used; anywhere that fails
/// (not Linux, another library name, a mismatch), <see cref="LlamaEngine"/> keeps LLamaSharp's.
/// </summary>
internal sealed unsafe partial class NativeTokenizer
{
    private const int RtldLazy = 0x1;
    private const int RtldNoLoad = 0x4;

    [LibraryImport("libc", EntryPoint = "dlopen", StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr DlOpen(string path, int flags);

    [LibraryImport("libc", EntryPoint = "dlsym", StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr DlSym(IntPtr handle, string symbol);

    private static readonly Lazy<(IntPtr GetVocab, IntPtr Tokenize)?> Exports = new(FindExports);

    private readonly LLamaWeights _weights;
    private readonly IntPtr _vocab;
    private readonly delegate* unmanaged[Cdecl]<IntPtr, byte*, int, int*, int, byte, byte, int> _tokenize;

    private NativeTokenizer(LLamaWeights weights, IntPtr vocab, IntPtr tokenize)
    {
        _weights = weights;
        _vocab = vocab;
        _tokenize = (delegate* unmanaged[Cdecl]<IntPtr, byte*, int, int*, int, byte, byte, int>)tokenize;
    }

    /// <summary>Texts whose tokens must match LLamaSharp's before this tokenizer is used: scripts, special tokens, edge cases.</summary>
    private static readonly string[] Samples =
    [
        "", " ", "Hello, world!", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "今天天气很好，我们去公园散步吧。",
        "naïve café 🚀 — \t tabs\r\n", new string('a', 300),
    ];

    /// <summary>A tokenizer for <paramref name="weights"/> that makes one native call per text; null when it cannot be set up safely here.</summary>
    public static NativeTokenizer? TryBind(LLamaWeights weights)
    {
        try
        {
            if (Exports.Value is not var (getVocab, tokenize))
                return null;
            var vocab = ((delegate* unmanaged[Cdecl]<IntPtr, IntPtr>)getVocab)(weights.NativeHandle.DangerousGetHandle());
            if (vocab == IntPtr.Zero)
                return null;
            var tokenizer = new NativeTokenizer(weights, vocab, tokenize);
            foreach (var text in Samples)
                foreach (var (bos, special) in new[] { (true, true), (false, true), (false, false) })
                    if (!tokenizer.Tokenize(text, bos, special).AsSpan().SequenceEqual(Reference(weights, text, bos, special)))
                        return null;
            return tokenizer;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>LLamaSharp's tokens for <paramref name="text"/>, as ints.</summary>
    public static int[] Reference(LLamaWeights weights, string text, bool addBos, bool special) =>
        weights.Tokenize(text, addBos, special, Encoding.UTF8).Select(t => (int)t).ToArray();

    public int[] Tokenize(string text, bool addBos, bool special = true) => Tokenize(text, addBos, special, firstGuess: null);

    /// <param name="firstGuess">Room for tokens in the first call (tests; default: from the text's length).</param>
    internal int[] Tokenize(string text, bool addBos, bool special, int? firstGuess)
    {
        var byteCount = Encoding.UTF8.GetByteCount(text);
        var bytes = ArrayPool<byte>.Shared.Rent(byteCount + 1);
        // One token per byte at most, plus the ones the tokenizer adds (BOS, EOS, a leading space): a guess that
        // is right for every llama.cpp tokenizer; if not, the first call says how many are needed.
        var capacity = firstGuess ?? byteCount + 8;
        var tokens = ArrayPool<int>.Shared.Rent(capacity);
        var added = false;
        try
        {
            _weights.NativeHandle.DangerousAddRef(ref added);
            var length = Encoding.UTF8.GetBytes(text, bytes);
            bytes[length] = 0;
            var n = Call(bytes, length, tokens, capacity, addBos, special);
            if (n < 0)
            {
                ArrayPool<int>.Shared.Return(tokens);
                tokens = ArrayPool<int>.Shared.Rent(capacity = -n);
                n = Call(bytes, length, tokens, capacity, addBos, special);
                if (n < 0)
                    throw new InvalidOperationException($"llama_tokenize asked for {-n} tokens after saying it needed them.");
            }
            return tokens.AsSpan(0, n).ToArray();
        }
        finally
        {
            if (added)
                _weights.NativeHandle.DangerousRelease();
            ArrayPool<byte>.Shared.Return(bytes);
            ArrayPool<int>.Shared.Return(tokens);
        }
    }

    private int Call(byte[] bytes, int length, int[] tokens, int capacity, bool addBos, bool special)
    {
        fixed (byte* text = bytes)
        fixed (int* output = tokens)
            return _tokenize(_vocab, text, length, output, capacity, addBos ? (byte)1 : (byte)0, special ? (byte)1 : (byte)0);
    }

    /// <summary><c>llama_model_get_vocab</c> and <c>llama_tokenize</c> of the libllama already mapped into this process.</summary>
    private static (IntPtr GetVocab, IntPtr Tokenize)? FindExports()
    {
        if (!OperatingSystem.IsLinux())
            return null;
        var path = File.ReadLines("/proc/self/maps")
            .Select(line => line.IndexOf('/') is var at and >= 0 ? line[at..] : null)
            .FirstOrDefault(p => p is not null && Path.GetFileName(p) == "libllama.so");
        if (path is null)
            return null;
        var handle = DlOpen(path, RtldLazy | RtldNoLoad);
        if (handle == IntPtr.Zero)
            return null;
        var getVocab = DlSym(handle, "llama_model_get_vocab");
        var tokenize = DlSym(handle, "llama_tokenize");
        return getVocab == IntPtr.Zero || tokenize == IntPtr.Zero ? null : (getVocab, tokenize);
    }
}
