using System.Diagnostics;
using System.Text.Json;
using QwenNats.Messaging;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>
/// One message on the bus has a size limit (the NATS server's <c>max_payload</c>, 1 MB by default). A request or an
/// answer over it is refused with a clear error at once: not taken for a bus outage (503, retry), and not left
/// unanswered until the client's deadline.
/// </summary>
public sealed class BusLimitTests
{
    [Fact]
    public async Task A_request_or_an_answer_larger_than_the_bus_carries_gets_a_clear_error_at_once()
    {
        var conf = Path.Combine(Path.GetTempPath(), $"small-payload-{Guid.NewGuid():N}.conf");
        await File.WriteAllTextAsync(conf, "max_payload: 32768\n");
        try
        {
            await using var server = await NatsServer.StartAsync(conf);
            await using var system = new QwenSystem(server);
            await system.StartWorkerAsync("blue", "v1", slots: 2);
            var (_, http) = await system.StartIngressAsync();
            await QwenSystem.WaitForWorkersAsync(http, "blue", 1);

            // A conversation of 40 KB: under the ingress's body limit, over one bus message.
            var big = Api.ChatBody(new string('a', 40_000), maxTokens: 4);
            using (var res = await http.SendAsync(Api.Post("/v1/chat/completions", big)))
            {
                var body = JsonDocument.Parse(await res.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
                Assert.Equal(413, (int)res.StatusCode);
                Assert.Equal(ErrorCodes.RequestTooLarge, body.GetProperty("code").GetString());
                Assert.Contains("max_payload", body.GetProperty("message").GetString(), StringComparison.Ordinal);
                Assert.False(res.Headers.Contains("Retry-After"));
            }

            // Every token's 20 alternatives with their log-probabilities: about 1 KB a token, so 120 tokens outgrow the
            // final result's message (the streamed chunks, a few tokens each, still fit).
            var asksMuch = """{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":120,"temperature":0,"logprobs":true,"top_logprobs":20}""";
            var clock = Stopwatch.StartNew();
            using (var res = await http.SendAsync(Api.Post("/v1/chat/completions", asksMuch)))
            {
                var text = await res.Content.ReadAsStringAsync();
                Assert.True((int)res.StatusCode == 400, text);
                var body = JsonDocument.Parse(text).RootElement.GetProperty("error");
                Assert.Equal(ErrorCodes.AnswerTooLarge, body.GetProperty("code").GetString());
                Assert.Contains("top_logprobs", body.GetProperty("message").GetString(), StringComparison.Ordinal);
            }
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"the error took {clock.Elapsed}, as long as a deadline");

            // The worker goes on serving: the slot was given back and nothing is redelivered.
            using (var res = await http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("Once upon a time", maxTokens: 4))))
                Assert.Equal(200, (int)res.StatusCode);
        }
        finally
        {
            File.Delete(conf);
        }
    }
}
