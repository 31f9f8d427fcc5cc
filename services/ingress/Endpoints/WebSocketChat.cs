using System.Buffers;
using System.Net.WebSockets;
using System.Text.Json;
using Microsoft.Extensions.Options;
using QwenNats.Messaging;
using QwenNats.Ingress.OpenAi;

namespace QwenNats.Ingress.Endpoints;

/// <summary>
/// <c>GET /ws/chat</c> (mapped on the <c>/ws</c> group): a conversation over one WebSocket. In: <c>{"type":"message","content":"..."}</c>
/// (optional <c>temperature</c>, <c>max_tokens</c>, <c>seed</c>) or <c>{"type":"reset"}</c>. Out: <c>ready</c>,
/// <c>accepted</c>, <c>token</c>…, then <c>done</c> or <c>error</c>. The connection keeps the history; a bad frame
/// gets an error frame and the connection stays open.
/// </summary>
public static class WebSocketChat
{
    public static IEndpointRouteBuilder MapWebSocketChat(this IEndpointRouteBuilder app)
    {
        app.Map("/chat", HandleAsync);
        return app;
    }

    private static async Task HandleAsync(HttpContext http, IInferenceClient client, RequestRouting routing, Routing.SessionRouter router, IOptions<IngressOptions> options, ILoggerFactory loggers)
    {
        if (!http.WebSockets.IsWebSocketRequest)
        {
            await JsonAnswers.WriteErrorAsync(http, ApiError.Invalid("This endpoint speaks WebSocket only."));
            return;
        }
        var requested = http.Request.Query["colour"].FirstOrDefault() ?? http.Request.Headers[RequestRouting.ColourHeader].FirstOrDefault();
        var (route, routeError) = await routing.RouteAsync(http, http.Request.Query["session"].FirstOrDefault(), requested);
        if (route is null)
        {
            await JsonAnswers.WriteErrorAsync(http, routeError!);
            return;
        }
        var (colour, session) = (route.Colour, route.Session);
        // A browser that sent its API key as a subprotocol must get the plain "qwen" protocol back.
        using var ws = await http.WebSockets.AcceptWebSocketAsync(
            http.WebSockets.WebSocketRequestedProtocols.Contains(WebSocketProtocol.Name) ? WebSocketProtocol.Name : null);
        var logger = loggers.CreateLogger("QwenNats.Ingress.WebSocket");
        var o = options.Value;
        var history = new List<ChatMessage>();
        var ct = http.RequestAborted;
        await SendAsync(ws, new WsFrame { Type = "ready", SessionId = session, Colour = colour }, ct);

        var buffer = new ArrayBufferWriter<byte>(4096);
        try
        {
            while (ws.State == WebSocketState.Open && !ct.IsCancellationRequested)
            {
                buffer.Clear();
                var (kind, tooLarge) = await ReceiveAsync(ws, buffer, o.MaxWebSocketMessageBytes, ct);
                if (kind == WebSocketMessageType.Close)
                {
                    await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
                    return;
                }
                if (tooLarge)
                {
                    await SendErrorAsync(ws, "message_too_large", $"Frames are limited to {o.MaxWebSocketMessageBytes} bytes.", ct);
                    continue;
                }
                if (kind != WebSocketMessageType.Text)
                {
                    await SendErrorAsync(ws, ErrorCodes.InvalidRequest, "Send JSON text frames.", ct);
                    continue;
                }
                if (!TryParse(buffer.WrittenMemory, o.MaxTokensLimit, o.MaxPromptChars, out var frame, out var error))
                {
                    await SendErrorAsync(ws, error!.Code, error.Message, ct);
                    continue;
                }
                if (frame.Reset)
                {
                    history.Clear();
                    await SendAsync(ws, new WsFrame { Type = "reset", SessionId = session, Turns = 0 }, ct);
                    continue;
                }
                if (http.Items[Security.ApiKeys.ItemKey] is Security.Caller caller && Security.ApiKeys.Take(caller) is { Allowed: false } limited)
                {
                    await SendAsync(ws, new WsFrame { Type = "error", Code = "rate_limit_exceeded", Message = $"Rate limit of '{caller.Name}' reached; retry in {limited.RetryAfterSeconds} s." }, ct);
                    continue;
                }
                // Every turn follows the session's pin, so the conversation keeps its colour across
                // switches and moves to live only when its colour is rolled back.
                if (string.IsNullOrEmpty(requested))
                    colour = (await router.RouteAsync(session, ct)).Colour;
                await TurnAsync(ws, client, colour, session, history, frame, o.RequestTimeout, o.MaxPromptChars, logger, ct);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        catch (WebSocketException e)
        {
            IngressLog.WebSocketEnded(logger, session, e);
        }
    }

    private static async Task TurnAsync(WebSocket ws, IInferenceClient client, string colour, string session, List<ChatMessage> history, ParsedFrame frame, TimeSpan timeout, int maxChars, ILogger logger, CancellationToken ct)
    {
        var id = ServedBy.NewId("wschat");
        // The same limit as an HTTP request's whole conversation: the oldest turns go first.
        var trimmed = TrimHistory(history, maxChars - frame.Content.Length);
        var messages = new List<ChatMessage>(history) { new(ChatRoles.User, frame.Content) };
        var start = await client.TryStartAsync(InferenceQueue.Live, colour, new InferRequest
        {
            Id = id, SessionId = session, Task = InferTasks.Chat, Messages = messages, Sampling = frame.Sampling, Stream = true, ReplyTo = "",
        }, timeout, ct);
        if (!start.Started)
        {
            await SendErrorAsync(ws, start.Code, start.Message, ct);
            return;
        }
        var call = start.Call;
        await using (call)
        {
            await foreach (var reply in call.ReadAsync(ct))
            {
                if (reply.Accepted is { } a)
                    await SendAsync(ws, new WsFrame { Type = "accepted", Colour = a.Colour, Profile = a.ProfileVersion, Model = a.ModelId, Worker = a.WorkerId }, ct);
                else if (reply.Chunk is { } c)
                    await SendAsync(ws, new WsFrame { Type = "token", Text = c.Text, Colour = call.Accepted?.Colour ?? colour }, ct);
                else if (reply.Result is { } r)
                {
                    // What the worker left out to fit its context is left out of the history too, so it stays bounded.
                    history.RemoveRange(0, Math.Min(r.TrimmedMessages, history.Count));
                    trimmed += r.TrimmedMessages;
                    history.Add(new ChatMessage(ChatRoles.User, frame.Content));
                    history.Add(new ChatMessage(ChatRoles.Assistant, r.Text));
                    await SendAsync(ws, new WsFrame
                    {
                        Type = "done", Text = r.Text, FinishReason = r.FinishReason, Colour = r.Colour, Profile = r.ProfileVersion, Model = r.ModelId, Worker = r.WorkerId,
                        Usage = new Usage(r.PromptTokens, r.CompletionTokens, r.PromptTokens + r.CompletionTokens), Turns = history.Count / 2,
                        TrimmedMessages = trimmed > 0 ? trimmed : null,
                    }, ct);
                }
                else if (reply.Error is { } e)
                {
                    IngressLog.TurnFailed(logger, id, e.Code);
                    await SendErrorAsync(ws, e.Code, e.Message, ct);
                }
            }
        }
    }

    /// <summary>Drops the oldest messages until the history holds at most <paramref name="maxChars"/> characters; returns how many went.</summary>
    public static int TrimHistory(List<ChatMessage> history, int maxChars)
    {
        var total = history.Sum(m => m.Content.Length);
        var dropped = 0;
        while (dropped < history.Count && total > Math.Max(0, maxChars))
            total -= history[dropped++].Content.Length;
        if (dropped % 2 == 1 && dropped < history.Count) // whole turns: a user message and its answer
            dropped++;
        history.RemoveRange(0, dropped);
        return dropped;
    }

    private sealed record ParsedFrame(bool Reset, string Content, SamplingParams Sampling);

    private static bool TryParse(ReadOnlyMemory<byte> utf8, int maxTokens, int maxChars, out ParsedFrame frame, out ApiError? error)
    {
        frame = null!;
        error = null;
        JsonDocument doc;
        if (!System.Text.Unicode.Utf8.IsValid(utf8.Span))
        {
            error = new ApiError(400, "invalid_json", "The frame is not valid UTF-8.");
            return false;
        }
        try
        {
            doc = JsonDocument.Parse(utf8, new JsonDocumentOptions { MaxDepth = 32 });
        }
        catch (JsonException)
        {
            error = new ApiError(400, "invalid_json", "The frame is not valid JSON.");
            return false;
        }
        catch (ArgumentException)
        {
            error = new ApiError(400, "invalid_json", "The frame is not valid UTF-8.");
            return false;
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                error = ApiError.Invalid("A frame must be a JSON object.");
                return false;
            }
            string? type = "message";
            if (root.TryGetProperty("type", out var t))
            {
                if (t.ValueKind != JsonValueKind.String)
                {
                    error = ApiError.Invalid("'type' must be a string: 'message' or 'reset'.", "type");
                    return false;
                }
                type = t.GetString();
            }
            if (type == "reset")
            {
                frame = new ParsedFrame(true, "", new SamplingParams());
                return true;
            }
            if (type != "message")
            {
                error = ApiError.Invalid($"Unknown frame type; expected 'message' or 'reset'.", "type");
                return false;
            }
            if (!root.TryGetProperty("content", out var c) || c.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(c.GetString()))
            {
                error = new ApiError(400, ErrorCodes.EmptyConversation, "'content' must be a non-empty string.", "content");
                return false;
            }
            if (!RequestParser.CheckText(c.GetString()!, "content", out error))
                return false;
            if (c.GetString()!.Length > maxChars)
            {
                error = new ApiError(400, RequestParser.PromptTooLong, $"'content' is longer than {maxChars} characters.", "content");
                return false;
            }
            // Reuse the HTTP parser's checks for the sampling fields by wrapping them as a chat request.
            var wrapped = new Dictionary<string, JsonElement>
            {
                ["messages"] = JsonDocument.Parse("[{\"role\":\"user\",\"content\":\"x\"}]").RootElement,
            };
            foreach (var name in new[] { "temperature", "top_p", "max_tokens", "seed", "stop" })
                if (root.TryGetProperty(name, out var v))
                    wrapped[name] = v.Clone();
            using var check = JsonDocument.Parse(JsonSerializer.SerializeToUtf8Bytes(wrapped, WsJson.Default.DictionaryStringJsonElement));
            if (!RequestParser.TryParseChat(check.RootElement, maxTokens, out var parsed, out error))
                return false;
            frame = new ParsedFrame(false, c.GetString()!, parsed.Sampling);
            return true;
        }
    }

    private static async Task<(WebSocketMessageType Kind, bool TooLarge)> ReceiveAsync(WebSocket ws, ArrayBufferWriter<byte> buffer, int max, CancellationToken ct)
    {
        var tooLarge = false;
        while (true)
        {
            var memory = buffer.GetMemory(4096);
            var result = await ws.ReceiveAsync(memory, ct);
            if (result.MessageType == WebSocketMessageType.Close)
                return (WebSocketMessageType.Close, false);
            if (!tooLarge)
                buffer.Advance(result.Count);
            if (buffer.WrittenCount > max)
            {
                tooLarge = true;
                buffer.Clear();
            }
            if (result.EndOfMessage)
                return (result.MessageType, tooLarge);
        }
    }

    private static Task SendErrorAsync(WebSocket ws, string code, string message, CancellationToken ct) =>
        SendAsync(ws, new WsFrame { Type = "error", Code = code, Message = message }, ct);

    private static Task SendAsync(WebSocket ws, WsFrame frame, CancellationToken ct) =>
        ws.State == WebSocketState.Open
            ? ws.SendAsync(JsonSerializer.SerializeToUtf8Bytes(frame, IngressJson.Context.WsFrame), WebSocketMessageType.Text, true, ct)
            : Task.CompletedTask;
}

[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, JsonElement>))]
internal sealed partial class WsJson : System.Text.Json.Serialization.JsonSerializerContext;
