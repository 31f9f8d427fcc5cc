using System.Text.Json.Serialization;
using QwenNats.Messaging;

namespace QwenNats.Ingress.OpenAi;

/// <summary>A validated chat completion request.</summary>
public sealed record ChatCompletionRequest(
    IReadOnlyList<ChatMessage> Messages,
    string? Model,
    SamplingParams Sampling,
    bool Stream,
    bool IncludeUsage,
    string? User);

public sealed record ChatCompletion(
    string Id, string Object, long Created, string Model,
    IReadOnlyList<ChatChoice> Choices, Usage Usage,
    string Colour, string Profile, string Worker, Timings Timings,
    int? TrimmedMessages = null);

public sealed record ChatChoice(int Index, AssistantMessage Message, string FinishReason, ChoiceLogprobs? Logprobs = null);

/// <summary>OpenAI's <c>choices[].logprobs</c>: one entry per generated token (sent only when the request asked).</summary>
public sealed record ChoiceLogprobs(IReadOnlyList<LogprobEntry> Content)
{
    public static ChoiceLogprobs? From(IReadOnlyList<TokenLogprob>? tokens) =>
        tokens is null ? null : new(tokens.Select(t => new LogprobEntry(t.Token, t.Logprob, t.Bytes,
            (t.TopLogprobs ?? []).Select(a => new TopLogprobEntry(a.Token, a.Logprob, a.Bytes)).ToArray())).ToArray());
}

public sealed record LogprobEntry(string Token, double Logprob, IReadOnlyList<int> Bytes, IReadOnlyList<TopLogprobEntry> TopLogprobs);

public sealed record TopLogprobEntry(string Token, double Logprob, IReadOnlyList<int> Bytes);

public sealed record AssistantMessage(string Role, string Content);

/// <summary>A chunk of a stream whose client did not ask for usage: it has no <c>usage</c> field.</summary>
public sealed record ChatCompletionChunk(
    string Id, string Object, long Created, string Model,
    IReadOnlyList<ChunkChoice> Choices,
    string Colour, string Profile,
    int? TrimmedMessages = null);

/// <summary>
/// A chunk of a stream whose client sent <c>stream_options.include_usage: true</c>: every chunk carries
/// <c>"usage": null</c> except the last one, which has no choices and the request's usage (OpenAI's shape).
/// </summary>
public sealed record ChatCompletionChunkWithUsage(
    string Id, string Object, long Created, string Model,
    IReadOnlyList<ChunkChoice> Choices,
    string Colour, string Profile,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] Usage? Usage,
    int? TrimmedMessages = null);

public sealed record ChunkChoice(int Index, Delta Delta, [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FinishReason, ChoiceLogprobs? Logprobs = null);

public sealed record Delta(
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Role,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Content);

public sealed record Usage(int PromptTokens, int CompletionTokens, int TotalTokens);

/// <summary>A legacy completion (<c>POST /v1/completions</c>): OpenAI's <c>text_completion</c> object.</summary>
public sealed record TextCompletion(
    string Id, string Object, long Created, string Model,
    IReadOnlyList<TextChoice> Choices, Usage Usage,
    string Colour, string Profile, string Worker, Timings Timings);

/// <summary>One choice of a <c>text_completion</c>; <c>logprobs</c> and (in a stream) <c>finish_reason</c> are sent as null when absent, as OpenAI does.</summary>
public sealed record TextChoice(
    string Text, int Index,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] LegacyLogprobs? Logprobs,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FinishReason);

/// <summary>
/// A streamed piece of a legacy completion (<c>object: "text_completion"</c>). With <c>stream_options.include_usage</c>
/// every chunk carries <c>usage</c>, null except on the last one, which has no choices.
/// </summary>
public sealed record TextCompletionChunk(
    string Id, string Object, long Created, string Model,
    IReadOnlyList<TextChoice> Choices,
    string Colour, string Profile);

public sealed record TextCompletionChunkWithUsage(
    string Id, string Object, long Created, string Model,
    IReadOnlyList<TextChoice> Choices,
    string Colour, string Profile,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] Usage? Usage);

/// <summary>
/// The legacy completions' <c>logprobs</c>: parallel lists, one entry per generated token — its text, its
/// log-probability, the most likely tokens at that position (token text to log-probability, as many as the request's
/// <c>logprobs</c>) and its character offset in the choice's text (the prompt counts when <c>echo</c> is on).
/// </summary>
public sealed record LegacyLogprobs(
    IReadOnlyList<string> Tokens,
    IReadOnlyList<double> TokenLogprobs,
    IReadOnlyList<IReadOnlyDictionary<string, double>> TopLogprobs,
    IReadOnlyList<int> TextOffset)
{
    /// <summary>The entries of <paramref name="tokens"/>, offsets counted from <paramref name="offset"/>, which moves past them.</summary>
    public static LegacyLogprobs? From(IReadOnlyList<TokenLogprob>? tokens, ref int offset)
    {
        if (tokens is null) return null;
        var offsets = new int[tokens.Count];
        for (var i = 0; i < tokens.Count; i++)
        {
            offsets[i] = offset;
            offset += tokens[i].Token.Length;
        }
        return new(
            tokens.Select(t => t.Token).ToArray(),
            tokens.Select(t => t.Logprob).ToArray(),
            tokens.Select(t => (IReadOnlyDictionary<string, double>)Top(t)).ToArray(),
            offsets);
    }

    // Two alternatives can share a text (different token ids): the more likely one, listed first, is kept.
    private static Dictionary<string, double> Top(TokenLogprob t)
    {
        var top = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var a in t.TopLogprobs ?? [])
            top.TryAdd(a.Token, a.Logprob);
        return top;
    }
}

public sealed record Timings(double TimeToFirstTokenMs, double TotalMs, double QueueMs, double LatencyMs);

public sealed record SentimentResponse(
    string Label, double Confidence, IReadOnlyDictionary<string, double> Scores,
    string Colour, string Model, string Profile, string Worker, double LatencyMs);

public sealed record ModelList(string Object, IReadOnlyList<ModelEntry> Data);

public sealed record ModelEntry(string Id, string Object, long Created, string OwnedBy, string Colour, string Profile, int Workers);

/// <summary>WebSocket frames sent to the client.</summary>
public sealed record WsFrame
{
    public required string Type { get; init; }
    public string? SessionId { get; init; }
    public string? Text { get; init; }
    public string? Colour { get; init; }
    public string? Profile { get; init; }
    public string? Model { get; init; }
    public string? Worker { get; init; }
    public string? FinishReason { get; init; }
    public Usage? Usage { get; init; }
    public string? Code { get; init; }
    public string? Message { get; init; }
    /// <summary><c>error</c>: the field of the client's frame the error is about (as in an HTTP error's <c>param</c>).</summary>
    public string? Param { get; init; }
    public int? Turns { get; init; }
    /// <summary><c>done</c>: the oldest messages of the history left out of this turn (the ingress's character
    /// limit, then the worker's context); they are gone from the conversation's history as well.</summary>
    public int? TrimmedMessages { get; init; }
    /// <summary><c>done</c>, <c>cancelled</c>: the client's id of the turn (the <c>id</c> of its message frame).</summary>
    public string? TurnId { get; init; }
    /// <summary><c>ready</c>: the conversation was restored from an earlier connection (this or another ingress).</summary>
    public bool? Resumed { get; init; }
    /// <summary><c>done</c>: this answer was given before (a turn resent after a reconnect), not generated again.</summary>
    public bool? Replayed { get; init; }
}

/// <summary><c>GET /api/rollout</c>: the rollout state as this ingress applies it.</summary>
public sealed record RolloutSnapshot(string Ingress, RolloutState State, IReadOnlyDictionary<string, int> Workers, Verdict? Verdict, ShadowCounters Shadow);

/// <summary><c>GET /api/rollout/applied</c>: the state this ingress routes by, and whether its version reached the one asked for.</summary>
public sealed record AppliedRollout(string Ingress, bool Reached, RolloutState State);

/// <summary>Mirrors this ingress has sent, compared (sample recorded) and dropped (candidate saturated).</summary>
public sealed record ShadowCounters(long Sent, long Compared, long Dropped);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ErrorBody))]
[JsonSerializable(typeof(ChatCompletion))]
[JsonSerializable(typeof(ChatCompletionChunk))]
[JsonSerializable(typeof(ChatCompletionChunkWithUsage))]
[JsonSerializable(typeof(TextCompletion))]
[JsonSerializable(typeof(TextCompletionChunk))]
[JsonSerializable(typeof(TextCompletionChunkWithUsage))]
[JsonSerializable(typeof(SentimentResponse))]
[JsonSerializable(typeof(ModelList))]
[JsonSerializable(typeof(WsFrame))]
[JsonSerializable(typeof(RolloutSnapshot))]
[JsonSerializable(typeof(AppliedRollout))]
[JsonSerializable(typeof(QwenNats.Ingress.Endpoints.Conversation))]
public sealed partial class IngressJsonContext : JsonSerializerContext;

/// <summary>
/// The context the ingress writes with: like <see cref="IngressJsonContext.Default"/> but without escaping
/// non-ASCII text and quotes, so answers in Chinese read as Chinese (bodies are JSON, never HTML).
/// </summary>
public static class IngressJson
{
    public static IngressJsonContext Context { get; } = new(new System.Text.Json.JsonSerializerOptions
    {
        PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });

    /// <summary>WebSocket conversations in KV.</summary>
    public static NATS.Client.Core.NatsJsonContextSerializer<QwenNats.Ingress.Endpoints.Conversation> Conversation { get; } = new(Context);
}
