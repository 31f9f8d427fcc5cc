using System.Text;
using LLama;
using QwenNats.Testing;
using QwenNats.Worker;

namespace QwenNats.Tests.Integration;

/// <summary>
/// The worker's one-call tokenizer (<see cref="NativeTokenizer"/>) against LLamaSharp's two-call one on the tiny real
/// model: it binds to the libllama LLamaSharp loaded, and gives the same tokens for every text. (The Qwen-shaped model's
/// test checks it against Qwen's reference tokenizer too.)
/// </summary>
public sealed class NativeTokenizerTests
{
    private static LLamaWeights Load()
    {
        LLama.Native.NativeApi.llama_empty_call();
        return LLamaWeights.LoadFromFile(new LLama.Common.ModelParams(Paths.Model) { ContextSize = 256 });
    }

    /// <summary>Texts of every kind: ASCII, accents, CJK, emoji, control characters, ChatML markers, and long runs.</summary>
    private static IEnumerable<string> Texts()
    {
        yield return "";
        yield return "Hi";
        yield return "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
        yield return "Text: 这部电影太精彩了！\nSentiment:";
        yield return new string('z', 2000);
        var random = new Random(1527);
        string[] pieces = ["the ", "cat", " ", "\n", "\t", "é", "ß", "中", "文", "🙂", "🚀", "<|im_end|>", "<s>", "</s>", "\u0000", "\u200b", "  ", "!?", "123", "Ω"];
        for (var i = 0; i < 200; i++)
        {
            var sb = new StringBuilder();
            for (var k = random.Next(0, 60); k > 0; k--)
                sb.Append(pieces[random.Next(pieces.Length)]);
            yield return sb.ToString();
        }
    }

    [Fact]
    public void One_call_tokenizes_every_text_exactly_as_LLamaSharps_two_calls()
    {
        using var weights = Load();
        var tokenizer = NativeTokenizer.TryBind(weights);
        Assert.NotNull(tokenizer);
        var texts = Texts().ToList();
        foreach (var text in texts)
            foreach (var (bos, special) in new[] { (true, true), (false, true), (true, false), (false, false) })
                Assert.True(NativeTokenizer.Reference(weights, text, bos, special).SequenceEqual(tokenizer.Tokenize(text, bos, special)),
                    $"\"{text}\" (bos {bos}, special {special})");
        Assert.Contains(texts, t => tokenizer.Tokenize(t, addBos: false).Length > 100);
    }

    [Fact]
    public void A_first_buffer_too_small_is_retried_with_the_size_llama_cpp_asks_for()
    {
        using var weights = Load();
        var tokenizer = NativeTokenizer.TryBind(weights)!;
        foreach (var text in Texts().Where(t => t.Length > 0).Take(50))
        {
            var expected = NativeTokenizer.Reference(weights, text, true, true);
            Assert.True(expected.Length > 1, text);
            Assert.Equal(expected, tokenizer.Tokenize(text, addBos: true, special: true, firstGuess: 1));
        }
    }
}
