using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using NATS.Client.Core;
using QwenNats.Judge;
using QwenNats.Promoter;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

[Collection(SystemCollection.Name)]
public sealed class DiscoveryTests(SystemFixture fx)
{
    [Fact]
    public async Task Workers_judge_and_promoter_answer_the_services_framework_with_their_metadata()
    {
        var settings = new Dictionary<string, string?> { ["Nats:Url"] = fx.Nats.Url, ["Logging:LogLevel:Default"] = "Warning" };
        using var judge = JudgeHost.Build([], c => c.AddInMemoryCollection(settings));
        using var promoter = PromoterHost.Build([], c => c.AddInMemoryCollection(settings));
        await judge.StartAsync();
        await promoter.StartAsync();
        try
        {
            await using var nats = Nats.Connect(fx.Nats.Url);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            List<JsonElement> infos;
            do
            {
                infos = [];
                await foreach (var msg in nats.RequestManyAsync<byte[], byte[]>("$SRV.INFO", [], replyOpts: new NatsSubOpts { Timeout = TimeSpan.FromMilliseconds(500) }, cancellationToken: cts.Token))
                    infos.Add(JsonDocument.Parse(msg.Data!).RootElement.Clone());
                if (infos.Count < 5) await Task.Delay(100, cts.Token);
            }
            while (infos.Count < 5);

            var byName = infos.GroupBy(i => i.GetProperty("name").GetString()!).ToDictionary(g => g.Key, g => g.ToList());
            Assert.Equal(3, byName["qwen-worker"].Count);
            Assert.Single(byName["qwen-judge"]);
            Assert.Single(byName["qwen-promoter"]);

            var modelSha = Convert.ToHexStringLower(SHA256.HashData(await File.ReadAllBytesAsync(Paths.Model, cts.Token)));
            var workers = byName["qwen-worker"].Select(w => w.GetProperty("metadata")).ToList();
            Assert.Equal(new[] { "blue", "blue", "green" }, workers.Select(m => m.GetProperty("colour").GetString()).OrderBy(c => c));
            Assert.All(workers, m => Assert.Equal(modelSha, m.GetProperty("model_sha256").GetString()));
            Assert.All(workers, m => Assert.Equal("stories260K", m.GetProperty("model").GetString()));
            Assert.Equal(new[] { "v1", "v1", "v2" }, workers.Select(m => m.GetProperty("profile").GetString()).OrderBy(p => p));

            // What `nats micro ls` and `nats micro stats` send.
            // Every responder is known to be up (INFO above): wait for all of their answers, however slow a loaded
            // machine makes them, and fail on a missing one only after a long wait.
            var pings = new List<string>();
            await foreach (var msg in nats.RequestManyAsync<byte[], byte[]>("$SRV.PING", [], replyOpts: new NatsSubOpts { MaxMsgs = 5, Timeout = TimeSpan.FromSeconds(15) }, cancellationToken: cts.Token))
                pings.Add(JsonDocument.Parse(msg.Data!).RootElement.GetProperty("name").GetString()!);
            Assert.Equal(5, pings.Count);
            var stats = new List<JsonElement>();
            await foreach (var msg in nats.RequestManyAsync<byte[], byte[]>("$SRV.STATS.qwen-worker", [], replyOpts: new NatsSubOpts { MaxMsgs = 3, Timeout = TimeSpan.FromSeconds(15) }, cancellationToken: cts.Token))
                stats.Add(JsonDocument.Parse(msg.Data!).RootElement.Clone());
            Assert.Equal(3, stats.Count);
            Assert.All(stats, s => Assert.Equal("qwen-worker", s.GetProperty("name").GetString()));
        }
        finally
        {
            await judge.StopAsync();
            await promoter.StopAsync();
        }
    }
}
