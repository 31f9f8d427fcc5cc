using System.Net;
using Microsoft.Extensions.DependencyInjection;
using NATS.Client.Core;
using NATS.Client.JetStream;
using QwenNats.Messaging;
using QwenNats.Ingress;
using QwenNats.ServiceDefaults;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>Work-queue behaviour, each test on its own nats-server: redelivery, bounded queues, deadlines.</summary>
public sealed class DispatchTests
{
    [Fact]
    public async Task Work_taken_by_a_worker_that_dies_is_redelivered_to_another_worker()
    {
        await using var server = await NatsServer.StartAsync();
        await using var system = new QwenSystem(server);
        var queue = new Dictionary<string, string?> { ["Topology:AckWait"] = "00:00:01.500" };
        var (ingress, http) = await system.StartIngressAsync(queue);
        await system.StartWorkerAsync("blue", "v1", extra: new(queue) { ["Worker:WorkerId"] = "survivor" });
        await QwenSystem.WaitForWorkersAsync(http, "blue", 1);

        // A worker process that takes the next request and dies before answering: it pulls from the same
        // durable consumer and never acks. Stop the real worker first so the doomed one gets the request.
        await using var nats = Nats.Connect(server.Url);
        var js = new NatsJSContext(nats);
        var consumer = await js.GetConsumerAsync(Subjects.WorkStream("blue"), Subjects.WorkConsumer);
        var registry = ingress.Services.GetRequiredService<WorkerRegistry>();
        Assert.Single(registry.Live("blue"));

        var client = ingress.Services.GetRequiredService<IInferenceClient>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));

        // Pause the survivor's pulling by filling its only slot with a long generation, so the doomed consumer wins the next request.
        var busy = client.TryStartAsync(InferenceQueue.Live, "blue", new InferRequest
        {
            Id = "busy", Task = InferTasks.Chat, Messages = [new ChatMessage(ChatRoles.User, "Once upon a time")],
            Sampling = new SamplingParams { Temperature = 0, MaxTokens = 400 }, ReplyTo = "",
        }, TimeSpan.FromSeconds(60), cts.Token);
        await using var busyCall = (await busy).Call!;
        await foreach (var r in busyCall.ReadAsync(cts.Token))
            if (r.Accepted is not null) break;

        var doomedFetch = consumer.NextAsync<InferRequest>(opts: new NatsJSNextOpts { Expires = TimeSpan.FromSeconds(10) }, cancellationToken: cts.Token);
        await using var call = (await client.TryStartAsync(InferenceQueue.Live, "blue", new InferRequest
        {
            Id = "orphan", Task = InferTasks.Sentiment, Input = "What a great day", ReplyTo = "",
        }, TimeSpan.FromSeconds(60), cts.Token)).Call!;
        var taken = await doomedFetch;
        Assert.NotNull(taken);
        Assert.Equal("orphan", taken.Data!.Id);
        // The doomed worker now "dies": it never acks, never answers.

        InferResult? result = null;
        var accepts = new List<InferAccepted>();
        await foreach (var reply in call.ReadAsync(cts.Token))
        {
            if (reply.Accepted is { } a) accepts.Add(a);
            if (reply.Error is { } e) Assert.Fail($"request failed: {e.Code} {e.Message}");
            result = reply.Result ?? result;
        }
        Assert.NotNull(result);
        Assert.Equal("survivor", result.WorkerId);
        Assert.Equal(2, result.Attempt);
        Assert.Contains(result.Label, new[] { "positive", "negative", "neutral" });
        Assert.Equal([2], accepts.Select(a => a.Attempt));
    }

    [Fact]
    public async Task A_full_queue_answers_503_with_retry_after_at_once()
    {
        await using var server = await NatsServer.StartAsync();
        await using var system = new QwenSystem(server);
        var queue = new Dictionary<string, string?> { ["Topology:MaxMessages"] = "1" };
        var (_, http) = await system.StartIngressAsync(queue);
        await system.StartWorkerAsync("blue", "v1", extra: queue);
        await QwenSystem.WaitForWorkersAsync(http, "blue", 1);

        var responses = await Task.WhenAll(Enumerable.Range(0, 8).Select(i =>
            http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody($"Story {i}", maxTokens: 64)))));
        try
        {
            var statuses = responses.Select(r => (int)r.StatusCode).ToArray();
            Assert.Contains(200, statuses);
            Assert.Contains(503, statuses);
            Assert.All(statuses, s => Assert.True(s is 200 or 503, $"status {s}"));
            foreach (var r in responses.Where(r => r.StatusCode == HttpStatusCode.ServiceUnavailable))
            {
                Assert.Equal("1", Api.Header(r, "Retry-After"));
                Assert.Equal("overloaded", (await Api.JsonAsync(r)).GetProperty("error").GetProperty("code").GetString());
            }
        }
        finally
        {
            foreach (var r in responses) r.Dispose();
        }
        using var after = await http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"fine\"}"));
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    [Fact]
    public async Task A_request_the_bus_cannot_take_answers_503_bus_unavailable_not_no_workers()
    {
        await using var server = await NatsServer.StartAsync();
        await using var system = new QwenSystem(server);
        var (ingress, http) = await system.StartIngressAsync();
        await using var nats = Nats.Connect(server.Url);
        var js = new NatsJSContext(nats);
        // The blue pool has a worker (its heartbeat is recorded), but the blue work stream is gone, so
        // publishing the request fails on the bus rather than for want of workers.
        await js.DeleteStreamAsync(Subjects.WorkStream("blue"));
        ingress.Services.GetRequiredService<WorkerRegistry>().Record(new WorkerHeartbeat
        {
            WorkerId = "phantom", Colour = "blue", ModelId = "m", ModelSha256 = "0", ProfileVersion = "v1", Slots = 1,
        }, DateTimeOffset.UtcNow);

        using var response = await http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"fine\"}"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("bus_unavailable", (await Api.JsonAsync(response)).GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task A_request_past_its_deadline_gets_504_and_the_worker_frees_its_slot()
    {
        await using var server = await NatsServer.StartAsync();
        await using var system = new QwenSystem(server);
        var (_, http) = await system.StartIngressAsync(new() { ["Ingress:RequestTimeout"] = "00:00:00.005" });
        var (_, patient) = await system.StartIngressAsync();
        await system.StartWorkerAsync("blue", "v1");
        await QwenSystem.WaitForWorkersAsync(http, "blue", 1);
        await QwenSystem.WaitForWorkersAsync(patient, "blue", 1);

        using var late = await http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("Once upon a time", maxTokens: 400)));
        Assert.Equal(HttpStatusCode.GatewayTimeout, late.StatusCode);
        var error = (await Api.JsonAsync(late)).GetProperty("error");
        Assert.Equal("deadline_exceeded", error.GetProperty("code").GetString());
        Assert.Equal("timeout_error", error.GetProperty("type").GetString());

        // A stream whose headers went out before the deadline ends with an error event instead of a status.
        using var streamed = await http.SendAsync(Api.Post("/v1/chat/completions", Api.ChatBody("Once upon a time", maxTokens: 400, stream: true)));
        if (streamed.StatusCode == HttpStatusCode.OK)
        {
            var events = await Api.ReadEventsAsync(streamed, CancellationToken.None);
            Assert.Equal("[DONE]", events[^1]);
            Assert.Contains("\"deadline_exceeded\"", events[^2]);
        }
        else
        {
            Assert.Equal(HttpStatusCode.GatewayTimeout, streamed.StatusCode);
        }

        using var ok = await patient.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"fine\"}"));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Fact]
    public async Task A_stopped_worker_leaves_the_pool_and_the_ingress_answers_503_instead_of_hanging()
    {
        await using var server = await NatsServer.StartAsync();
        await using var system = new QwenSystem(server);
        var (_, http) = await system.StartIngressAsync();
        var worker = await system.StartWorkerAsync("blue", "v1");
        await QwenSystem.WaitForWorkersAsync(http, "blue", 1);
        using (var ok = await http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"fine\"}")))
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);

        await system.StopWorkerAsync(worker);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (true)
        {
            using var ready = await http.GetAsync("/readyz", cts.Token);
            if (ready.StatusCode == HttpStatusCode.ServiceUnavailable) break;
            await Task.Delay(50, cts.Token);
        }
        using var refused = await http.SendAsync(Api.Post("/v1/sentiment", "{\"input\":\"fine\"}"), cts.Token);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        Assert.Equal("no_workers", (await Api.JsonAsync(refused)).GetProperty("error").GetProperty("code").GetString());
    }
}
