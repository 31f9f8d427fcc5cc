using NATS.Client.Core;
using NATS.Client.JetStream;
using QwenNats.Messaging;
using QwenNats.ServiceDefaults;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>The worker's NATS contract, spoken directly: what any client of <c>qwen.&lt;colour&gt;.infer</c> gets.</summary>
[Collection(SystemCollection.Name)]
public sealed class WorkerProtocolTests(SystemFixture fx)
{
    private static int _next;
    private static string NextId() => $"proto{Interlocked.Increment(ref _next)}-{Guid.NewGuid():N}";

    [Theory]
    [InlineData("translate", ErrorCodes.UnknownTask)]
    [InlineData(InferTasks.Chat, ErrorCodes.EmptyConversation)]
    [InlineData(InferTasks.Sentiment, ErrorCodes.InvalidRequest)]
    public async Task A_request_the_worker_cannot_serve_gets_an_InferError_with_a_code(string task, string code)
    {
        await using var nats = await ConnectAsync();
        var replies = await SendAsync(nats, new InferRequest { Id = NextId(), Task = task, ReplyTo = "" });
        var error = replies[^1].Error;
        Assert.NotNull(error);
        Assert.Equal(code, error.Code);
        Assert.Equal("blue", error.Colour);
        Assert.False(string.IsNullOrWhiteSpace(error.Message));
    }

    [Fact]
    public async Task Unknown_roles_are_refused_by_the_worker_too()
    {
        await using var nats = await ConnectAsync();
        var replies = await SendAsync(nats, new InferRequest { Id = NextId(), Task = InferTasks.Chat, Messages = [new ChatMessage("robot", "hi")], ReplyTo = "" });
        Assert.Equal(ErrorCodes.InvalidRequest, replies[^1].Error?.Code);
    }

    [Fact]
    public async Task An_undecodable_message_is_dropped_and_the_pool_keeps_serving()
    {
        await using var nats = await ConnectAsync();
        var js = new NatsJSContext(nats);
        var ack = await js.PublishAsync(Subjects.Infer("blue"), "this is not an InferRequest"u8.ToArray());
        ack.EnsureSuccess();
        var replies = await SendAsync(nats, new InferRequest { Id = NextId(), Task = InferTasks.Sentiment, Input = "lovely", ReplyTo = "" });
        Assert.NotNull(replies[^1].Result?.Label);
    }

    [Fact]
    public async Task A_request_whose_deadline_passed_in_the_queue_is_not_run()
    {
        await using var nats = await ConnectAsync();
        var replies = await SendAsync(nats, new InferRequest
        {
            Id = NextId(), Task = InferTasks.Sentiment, Input = "late", ReplyTo = "",
            DeadlineUnixMs = DateTimeOffset.UtcNow.AddSeconds(-1).ToUnixTimeMilliseconds(),
        });
        Assert.Equal(ErrorCodes.DeadlineExceeded, replies[^1].Error?.Code);
    }

    [Fact]
    public async Task A_streamed_chat_sends_accepted_then_chunks_then_one_result()
    {
        await using var nats = await ConnectAsync();
        var replies = await SendAsync(nats, new InferRequest
        {
            Id = NextId(), Task = InferTasks.Chat, Stream = true, Messages = [new ChatMessage(ChatRoles.User, "Once upon a time")],
            Sampling = new SamplingParams { Temperature = 0, MaxTokens = 10 }, ReplyTo = "",
        });
        Assert.NotNull(replies[0].Accepted);
        Assert.Equal("v1", replies[0].Accepted!.ProfileVersion);
        var chunks = replies.Where(r => r.Chunk is not null).Select(r => r.Chunk!).ToList();
        Assert.NotEmpty(chunks);
        Assert.Equal(Enumerable.Range(0, chunks.Count), chunks.Select(c => c.Index));
        var result = replies[^1].Result!;
        Assert.Equal(string.Concat(chunks.Select(c => c.Text)), result.Text);
        Assert.Equal(10, result.CompletionTokens);
        Assert.Equal(FinishReasons.Length, result.FinishReason);
        Assert.True(result.TimeToFirstTokenMs > 0 && result.TotalMs >= result.TimeToFirstTokenMs);
        Assert.Single(replies, r => r.IsFinal);
    }

    [Fact]
    public async Task The_worker_works_under_the_trace_id_of_the_traceparent_header()
    {
        await using var nats = await ConnectAsync();
        const string traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
        var id = NextId();
        var inbox = $"test.reply.{id}";
        await using var sub = await nats.SubscribeCoreAsync<InferReply>(inbox);
        var js = new NatsJSContext(nats);
        (await js.PublishAsync(Subjects.Infer("blue"), new InferRequest { Id = id, Task = InferTasks.Sentiment, Input = "ok", ReplyTo = inbox },
            headers: new NatsHeaders { [Headers.TraceParent] = $"00-{traceId}-00f067aa0ba902b7-01" })).EnsureSuccess();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var first = await sub.Msgs.ReadAsync(cts.Token);
        Assert.Equal(traceId, first.Data!.Accepted!.TraceId);
    }

    private async Task<NatsConnection> ConnectAsync()
    {
        var nats = Nats.Connect(fx.Nats.Url);
        await nats.ConnectAsync();
        return nats;
    }

    internal static async Task<List<InferReply>> SendAsync(NatsConnection nats, InferRequest request, string colour = "blue", TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(20));
        var inbox = $"test.reply.{request.Id}";
        await using var sub = await nats.SubscribeCoreAsync<InferReply>(inbox, cancellationToken: cts.Token);
        var js = new NatsJSContext(nats);
        var ack = await js.PublishAsync(Subjects.Infer(colour), request with { ReplyTo = inbox }, cancellationToken: cts.Token);
        ack.EnsureSuccess();
        var replies = new List<InferReply>();
        await foreach (var msg in sub.Msgs.ReadAllAsync(cts.Token))
        {
            replies.Add(msg.Data!);
            if (msg.Data!.IsFinal) break;
        }
        return replies;
    }
}
