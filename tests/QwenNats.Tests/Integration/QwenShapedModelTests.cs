using System.Net;
using LLama;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>
/// The Qwen-shaped model writer makes GGUFs that llama.cpp loads as architecture qwen2 with a ChatML
/// template, that LLamaSharp's quantizer quantizes, and that the unchanged worker serves. Here at miniature
/// size; bench/run.sh writes the full Qwen1.5-0.5B shape.
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

    [Fact]
    public async Task A_written_and_quantized_model_loads_as_qwen2_and_answers_through_the_unchanged_worker()
    {
        var dir = Path.Combine(Path.GetTempPath(), "qwen-shaped-test-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        try
        {
            var f16 = Path.Combine(dir, "mini-f16.gguf");
            QwenShapedModel.Write(f16, QwenShape.Miniature);
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
