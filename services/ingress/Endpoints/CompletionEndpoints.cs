using System.Text.Json;
using Microsoft.Extensions.Options;
using QwenNats.Messaging;
using QwenNats.Ingress.OpenAi;

namespace QwenNats.Ingress.Endpoints;

/// <summary>
/// <c>POST /v1/completions</c> (mapped on the <c>/v1</c> group): OpenAI's legacy text completions, JSON or Server-Sent
/// Events. The prompt is continued as it is, without the chat template (task <see cref="InferTasks.Completion"/>);
/// routing, session pins, publishing, mirroring and errors are the chat endpoint's.
/// </summary>
public static class CompletionEndpoints
{
    public static IEndpointRouteBuilder MapCompletionsApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/completions", HandleAsync);
        return app;
    }

    private static async Task HandleAsync(HttpContext http, IInferenceClient client, RequestRouting routing, IOptions<IngressOptions> options, ILoggerFactory loggers)
    {
        var o = options.Value;
        if (await OpenAiPipeline.ReadAndRouteAsync<CompletionRequest>(http, routing, o, RequestParser.TryParseCompletion, c => c.User) is not (var completion, var route))
            return;
        var id = ServedBy.NewId("cmpl");
        var logger = loggers.CreateLogger("QwenNats.Ingress.Completions");
        using var scope = logger.BeginScope(new Dictionary<string, object?> { ["request_id"] = id, ["session_id"] = route.Session });
        var draft = new InferRequest
        {
            Id = id, SessionId = route.Session, Task = InferTasks.Completion, Input = completion.Prompt,
            Sampling = completion.Sampling, Stream = completion.Stream, ReplyTo = "",
        };
        if (await OpenAiPipeline.StartAsync(http, client, route, draft, o) is not { } call)
            return;
        await using (call)
        {
            if (completion.Stream)
                await StreamAsync(http, call, completion, o);
            else
                await RespondAsync(http, call, completion, DateTimeOffset.UtcNow, o);
        }
    }

    private static async Task RespondAsync(HttpContext http, InferenceCall call, CompletionRequest completion, DateTimeOffset started, IngressOptions o)
    {
        await foreach (var reply in call.ReadAsync(http.RequestAborted))
        {
            if (reply.Result is { } r)
            {
                ServedBy.Stamp(http, r.Colour, r.ProfileVersion, r.WorkerId, call.Id, r.Release);
                RequestTimes.Stamp(http, o, call, r);
                var latency = (DateTimeOffset.UtcNow - started).TotalMilliseconds;
                var offset = completion.Echo ? completion.Prompt.Length : 0;
                var text = completion.Echo ? completion.Prompt + r.Text : r.Text;
                await JsonAnswers.WriteAsync(http, 200, new TextCompletion(
                    call.Id, "text_completion", ServedBy.Now(), r.ModelId,
                    [new TextChoice(text, 0, LegacyLogprobs.From(r.Logprobs, ref offset), r.FinishReason)],
                    new Usage(r.PromptTokens, r.CompletionTokens, r.PromptTokens + r.CompletionTokens),
                    r.Colour, r.ProfileVersion, r.WorkerId,
                    new Timings(r.TimeToFirstTokenMs, r.TotalMs, r.QueueMs, Math.Round(latency, 3))), IngressJson.Context.TextCompletion);
                return;
            }
            if (reply.Error is { } e)
            {
                await OpenAiPipeline.ErrorAsync(http, call, e, o);
                return;
            }
        }
    }

    private static async Task StreamAsync(HttpContext http, InferenceCall call, CompletionRequest completion, IngressOptions o)
    {
        var created = ServedBy.Now();
        var started = false;
        // Offsets of streamed tokens count from the start of the choice's text (the echoed prompt first).
        var offset = completion.Echo ? completion.Prompt.Length : 0;
        async Task StartAsync(InferAccepted a)
        {
            await OpenAiPipeline.StartEventsAsync(http, call, a);
            if (completion.Echo)
                await SendAsync(http, Chunk(call, a, created, completion.Prompt, null, null), completion.IncludeUsage);
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
                await SendAsync(http, Chunk(call, acc, created, c.Text, LegacyLogprobs.From(c.Logprobs, ref offset), null), completion.IncludeUsage);
            }
            else if (reply.Result is { } r)
            {
                var acc2 = call.Accepted ?? new InferAccepted { Id = call.Id, WorkerId = r.WorkerId, Colour = r.Colour, ModelId = r.ModelId, ProfileVersion = r.ProfileVersion };
                if (!started) await StartAsync(acc2);
                // The last chunk says why the answer ended.
                var finish = Chunk(call, acc2, created, "", null, r.FinishReason);
                await SendAsync(http, finish, completion.IncludeUsage);
                // OpenAI's include_usage: one more chunk, with no choices and the usage.
                if (completion.IncludeUsage)
                    await SendAsync(http, finish with { Choices = [] }, true, new Usage(r.PromptTokens, r.CompletionTokens, r.PromptTokens + r.CompletionTokens));
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

    private static TextCompletionChunk Chunk(InferenceCall call, InferAccepted a, long created, string text, LegacyLogprobs? logprobs, string? finish) =>
        new(call.Id, "text_completion", created, a.ModelId, [new TextChoice(text, 0, logprobs, finish)], a.Colour, a.ProfileVersion);

    /// <summary>Sends one chunk; with <paramref name="includeUsage"/> it carries <c>usage</c> (null unless given).</summary>
    private static async Task SendAsync(HttpContext http, TextCompletionChunk chunk, bool includeUsage, Usage? usage = null)
    {
        var json = includeUsage
            ? JsonSerializer.Serialize(new TextCompletionChunkWithUsage(chunk.Id, chunk.Object, chunk.Created, chunk.Model, chunk.Choices, chunk.Colour, chunk.Profile, usage), IngressJson.Context.TextCompletionChunkWithUsage)
            : JsonSerializer.Serialize(chunk, IngressJson.Context.TextCompletionChunk);
        await OpenAiPipeline.SendEventAsync(http, json);
    }
}
