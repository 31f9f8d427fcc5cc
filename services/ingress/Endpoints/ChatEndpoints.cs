using System.Text.Json;
using Microsoft.Extensions.Options;
using QwenNats.Messaging;
using QwenNats.Ingress.OpenAi;

namespace QwenNats.Ingress.Endpoints;

/// <summary><c>POST /v1/chat/completions</c> (mapped on the <c>/v1</c> group): OpenAI-compatible, JSON or Server-Sent Events.</summary>
public static class ChatEndpoints
{
    public static IEndpointRouteBuilder MapChatApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/chat/completions", HandleAsync);
        return app;
    }

    private static async Task HandleAsync(HttpContext http, IInferenceClient client, RequestRouting routing, IOptions<IngressOptions> options, ILoggerFactory loggers)
    {
        var o = options.Value;
        if (await OpenAiPipeline.ReadAndRouteAsync<ChatCompletionRequest>(http, routing, o, RequestParser.TryParseChat, c => c.User) is not (var chat, var route))
            return;
        var id = ServedBy.NewId("chatcmpl");
        var logger = loggers.CreateLogger("QwenNats.Ingress.Chat");
        using var scope = logger.BeginScope(new Dictionary<string, object?> { ["request_id"] = id, ["session_id"] = route.Session });
        var draft = new InferRequest
        {
            Id = id, SessionId = route.Session, Task = InferTasks.Chat, Messages = chat.Messages, Sampling = chat.Sampling, Stream = chat.Stream, ReplyTo = "",
        };
        if (await OpenAiPipeline.StartAsync(http, client, route, draft, o) is not { } call)
            return;
        await using (call)
        {
            var started = DateTimeOffset.UtcNow;
            if (chat.Stream)
                await StreamAsync(http, call, chat, o);
            else
                await RespondAsync(http, call, started, o);
        }
    }

    private static async Task RespondAsync(HttpContext http, InferenceCall call, DateTimeOffset started, IngressOptions o)
    {
        await foreach (var reply in call.ReadAsync(http.RequestAborted))
        {
            if (reply.Result is { } r)
            {
                ServedBy.Stamp(http, r.Colour, r.ProfileVersion, r.WorkerId, call.Id, r.Release);
                ServedBy.Trimmed(http, r.TrimmedMessages);
                RequestTimes.Stamp(http, o, call, r);
                var latency = (DateTimeOffset.UtcNow - started).TotalMilliseconds;
                await JsonAnswers.WriteAsync(http, 200, new ChatCompletion(
                    call.Id, "chat.completion", ServedBy.Now(), r.ModelId,
                    [new ChatChoice(0, new AssistantMessage(ChatRoles.Assistant, r.Text), r.FinishReason, ChoiceLogprobs.From(r.Logprobs))],
                    new Usage(r.PromptTokens, r.CompletionTokens, r.PromptTokens + r.CompletionTokens),
                    r.Colour, r.ProfileVersion, r.WorkerId,
                    new Timings(r.TimeToFirstTokenMs, r.TotalMs, r.QueueMs, Math.Round(latency, 3)),
                    r.TrimmedMessages > 0 ? r.TrimmedMessages : null), IngressJson.Context.ChatCompletion);
                return;
            }
            if (reply.Error is { } e)
            {
                await OpenAiPipeline.ErrorAsync(http, call, e, o);
                return;
            }
        }
    }

    private static async Task StreamAsync(HttpContext http, InferenceCall call, ChatCompletionRequest chat, IngressOptions o)
    {
        var created = ServedBy.Now();
        var started = false;
        async Task StartAsync(InferAccepted a)
        {
            await OpenAiPipeline.StartEventsAsync(http, call, a);
            await SendAsync(http, Chunk(call, a, created, new Delta(ChatRoles.Assistant, ""), null), chat.IncludeUsage);
            started = true;
        }

        // The answer's headers (200, text/event-stream) go out with its first output, not with the worker's acceptance:
        // a request the worker refuses before any output (a prompt longer than the context, a bad logit_bias) gets
        // its error status, as it would without streaming.
        await foreach (var reply in call.ReadAsync(http.RequestAborted))
        {
            if (reply.Accepted is not null)
            {
                continue;
            }
            else if (reply.Chunk is { } c && call.Accepted is { } acc)
            {
                if (!started) await StartAsync(acc);
                await SendAsync(http, Chunk(call, acc, created, new Delta(null, c.Text), null, ChoiceLogprobs.From(c.Logprobs)), chat.IncludeUsage);
            }
            else if (reply.Result is { } r)
            {
                var acc2 = call.Accepted ?? new InferAccepted { Id = call.Id, WorkerId = r.WorkerId, Colour = r.Colour, ModelId = r.ModelId, ProfileVersion = r.ProfileVersion };
                if (!started) await StartAsync(acc2);
                // The finish chunk says how many of the oldest messages were left out (the headers went out before the worker knew).
                var finish = Chunk(call, acc2, created, new Delta(null, null), r.FinishReason) with { TrimmedMessages = r.TrimmedMessages > 0 ? r.TrimmedMessages : null };
                await SendAsync(http, finish, chat.IncludeUsage);
                // OpenAI's include_usage: one more chunk after the finish chunk, with no choices and the usage.
                if (chat.IncludeUsage)
                    await SendAsync(http, finish with { Choices = [], TrimmedMessages = null }, true, new Usage(r.PromptTokens, r.CompletionTokens, r.PromptTokens + r.CompletionTokens));
                await OpenAiPipeline.EndEventsAsync(http);
                return;
            }
            else if (reply.Error is { } e)
            {
                await OpenAiPipeline.StreamErrorAsync(http, call, e, started, o);
                return;
            }
        }
    }

    private static ChatCompletionChunk Chunk(InferenceCall call, InferAccepted a, long created, Delta delta, string? finish, ChoiceLogprobs? logprobs = null) =>
        new(call.Id, "chat.completion.chunk", created, a.ModelId, [new ChunkChoice(0, delta, finish, logprobs)], a.Colour, a.ProfileVersion);

    /// <summary>Sends one chunk; with <paramref name="includeUsage"/> it carries <c>usage</c> (null unless given).</summary>
    private static async Task SendAsync(HttpContext http, ChatCompletionChunk chunk, bool includeUsage, Usage? usage = null)
    {
        var json = includeUsage
            ? JsonSerializer.Serialize(new ChatCompletionChunkWithUsage(chunk.Id, chunk.Object, chunk.Created, chunk.Model, chunk.Choices, chunk.Colour, chunk.Profile, usage, chunk.TrimmedMessages), IngressJson.Context.ChatCompletionChunkWithUsage)
            : JsonSerializer.Serialize(chunk, IngressJson.Context.ChatCompletionChunk);
        await OpenAiPipeline.SendEventAsync(http, json);
    }
}
