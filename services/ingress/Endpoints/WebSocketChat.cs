using System.Buffers;
using System.Net.WebSockets;
using System.Text.Json;
using Microsoft.Extensions.Options;
using QwenNats.Messaging;
using QwenNats.Ingress.OpenAi;

namespace QwenNats.Ingress.Endpoints;

/// <summary>
/// <c>GET /ws/chat</c> (mapped on the <c>/ws</c> group): a conversation over one WebSocket. In: <c>{"type":"message","content":"..."}</c>
/// (optional <c>id</c> and the HTTP chat's sampling fields, <see cref="RequestParser.SamplingFields"/>), <c>{"type":"cancel"}</c> (stops the turn being
/// generated) or <c>{"type":"reset"}</c>. Out: <c>ready</c>, <c>accepted</c>, <c>token</c>…, then <c>done</c>, <c>cancelled</c>
/// or <c>error</c>. A bad frame gets an error frame and the connection stays open. Messages sent while a turn is answered
/// wait their turn; a client that closes ends the turn in progress and the ones it sent ahead are not answered.
/// <para>
/// The conversation lives in NATS (<see cref="ConversationStore"/>): a client that reconnects with <c>?session=</c> — to
/// this ingress or another — gets its history and pinned colour back (<c>ready</c> says <c>resumed</c> and the turn
/// count), and a turn it resends with the same <c>id</c> after a reconnect is answered from the stored answer, not
/// generated twice. An ingress that stops drains: it finishes the turn in flight, then closes with 1001 and a reason.
/// </para>
/// </summary>
public static class WebSocketChat
{
    public static IEndpointRouteBuilder MapWebSocketChat(this IEndpointRouteBuilder app)
    {
        app.Map("/chat", HandleAsync);
        return app;
    }

    /// <summary>Frames a client may send ahead while a turn is answered; more get a <c>turn_in_progress</c> error.</summary>
    private const int MaxQueuedFrames = 8;

    /// <summary>What the frame reader hands the conversation loop.</summary>
    private sealed record Incoming(ParsedFrame? Frame, ApiError? Error, bool Closed);

    private static async Task HandleAsync(HttpContext http, IInferenceClient client, RequestRouting routing, Routing.SessionRouter router, ConversationStore store,
        IHostApplicationLifetime lifetime, IOptions<IngressOptions> options, ILoggerFactory loggers)
    {
        if (!http.WebSockets.IsWebSocketRequest)
        {
            await JsonAnswers.WriteErrorAsync(http, ApiError.Invalid("This endpoint speaks WebSocket only."));
            return;
        }
        var requested = http.Request.Query["colour"].FirstOrDefault() ?? http.Request.Headers[RequestRouting.ColourHeader].FirstOrDefault();
        var (route, routeError) = await routing.RouteAsync(http, http.Request.Query["session"].FirstOrDefault(), requested, userParam: "session");
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
        var ct = http.RequestAborted;
        var conversation = await store.LoadAsync(session, ct) ?? new Conversation();
        var resumed = conversation.Turns > 0;
        var send = new SemaphoreSlim(1, 1);
        await SendAsync(ws, send, new WsFrame { Type = "ready", SessionId = session, Colour = colour, Turns = conversation.Turns, Resumed = resumed ? true : null }, ct);

        // Frames are read beside the conversation, so a cancel can reach a turn in progress.
        var inbox = System.Threading.Channels.Channel.CreateBounded<Incoming>(new System.Threading.Channels.BoundedChannelOptions(8) { SingleReader = false, SingleWriter = true });
        using var stopReading = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var reader = ReadFramesAsync(ws, inbox.Writer, o, stopReading.Token);
        try
        {
            // Messages that arrived while a turn was being answered, answered next in order (a client may pipeline turns).
            var queued = new Queue<Incoming>();
            while (true)
            {
                Incoming next;
                try
                {
                    next = queued.Count > 0 ? queued.Dequeue() : await inbox.Reader.ReadAsync(lifetime.ApplicationStopping).AsTask().WaitAsync(ct);
                }
                catch (OperationCanceledException) when (lifetime.ApplicationStopping.IsCancellationRequested && !ct.IsCancellationRequested)
                {
                    await DrainCloseAsync(ws, send, session);
                    return;
                }
                catch (System.Threading.Channels.ChannelClosedException)
                {
                    return;
                }
                if (next.Closed)
                {
                    if (ws.State is WebSocketState.Open or WebSocketState.CloseReceived)
                        await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
                    return;
                }
                if (next.Error is { } error)
                {
                    await SendAsync(ws, send, new WsFrame { Type = "error", Code = error.Code, Message = error.Message, Param = error.Param }, ct);
                    continue;
                }
                var frame = next.Frame!;
                if (frame.Kind == FrameKind.Cancel)
                {
                    await SendErrorAsync(ws, send, "no_turn_in_progress", "There is no turn to cancel.", ct);
                    continue;
                }
                if (frame.Kind == FrameKind.Reset)
                {
                    conversation = new Conversation();
                    await store.DeleteAsync(session, ct);
                    await SendAsync(ws, send, new WsFrame { Type = "reset", SessionId = session, Turns = 0 }, ct);
                    continue;
                }
                if (ws.State != WebSocketState.Open)
                    continue; // the client's close is on its way: a turn it sent before it is not answered
                if (frame.Id is { } turnId && turnId == conversation.LastTurnId && conversation.LastDone is { } answered)
                {
                    // Resent after a reconnect: the turn was answered (and counted) already.
                    await SendAsync(ws, send, answered with { Replayed = true }, ct);
                    continue;
                }
                if (http.Items[Security.ApiKeys.ItemKey] is Security.Caller caller && Security.ApiKeys.Take(caller) is { Allowed: false } limited)
                {
                    await SendAsync(ws, send, new WsFrame { Type = "error", Code = "rate_limit_exceeded", Message = $"Rate limit of '{caller.Name}' reached; retry in {limited.RetryAfterSeconds} s." }, ct);
                    continue;
                }
                // Every turn follows the session's pin, so the conversation keeps its colour across
                // switches and moves to live only when its colour is rolled back.
                if (string.IsNullOrEmpty(requested))
                {
                    var (decision, pinWrite) = await router.RouteAsync(session, isNew: false, ct);
                    await pinWrite.Start();
                    colour = decision.Colour;
                }
                using var turn = CancellationTokenSource.CreateLinkedTokenSource(ct);
                var running = TurnAsync(ws, send, client, colour, session, conversation, frame, o.RequestTimeout, o.MaxPromptChars, logger, turn.Token);
                // While the turn runs: a cancel frame stops it; other frames wait their turn (a few at most).
                while (!running.IsCompleted)
                {
                    var waiting = inbox.Reader.WaitToReadAsync(ct).AsTask();
                    if (await Task.WhenAny(running, waiting) == running)
                        break;
                    if (!await waiting || !inbox.Reader.TryRead(out var during))
                        break;
                    if (during.Frame is { Kind: FrameKind.Cancel })
                    {
                        await turn.CancelAsync();
                        break;
                    }
                    if (during.Closed)
                    {
                        // The client left: nobody reads this answer, nor those of the turns it sent ahead.
                        await turn.CancelAsync();
                        queued.Clear();
                        queued.Enqueue(during);
                        break;
                    }
                    if (queued.Count >= MaxQueuedFrames)
                        await SendErrorAsync(ws, send, "turn_in_progress", $"A turn is being answered and {MaxQueuedFrames} frames wait already; wait for 'done', or send {{\"type\":\"cancel\"}}.", ct);
                    else
                        queued.Enqueue(during);
                }
                var before = conversation;
                conversation = await running;
                if (!ReferenceEquals(before, conversation))
                    await store.SaveAsync(session, conversation, CancellationToken.None);
                if (lifetime.ApplicationStopping.IsCancellationRequested)
                {
                    await DrainCloseAsync(ws, send, session);
                    return;
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        catch (WebSocketException e)
        {
            IngressLog.WebSocketEnded(logger, session, e);
        }
        finally
        {
            // After a close of ours, the client's close ends the reader; cancelling a pending receive would reset the
            // connection before the client has read our close frame.
            try { await reader.WaitAsync(TimeSpan.FromSeconds(2), CancellationToken.None); } catch (Exception) { /* still reading, or the socket is gone */ }
            await stopReading.CancelAsync();
            try { await reader; } catch (Exception) { /* the socket is gone */ }
        }
    }

    private static async Task DrainCloseAsync(WebSocket ws, SemaphoreSlim send, string session)
    {
        if (ws.State is not (WebSocketState.Open or WebSocketState.CloseReceived))
            return;
        await send.WaitAsync();
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await ws.CloseOutputAsync(WebSocketCloseStatus.EndpointUnavailable, $"ingress stopping; reconnect with session={session}", timeout.Token);
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException)
        {
        }
        finally
        {
            send.Release();
        }
    }

    /// <summary>Reads and parses frames until the client closes or the connection ends.</summary>
    private static async Task ReadFramesAsync(WebSocket ws, System.Threading.Channels.ChannelWriter<Incoming> inbox, IngressOptions o, CancellationToken ct)
    {
        var buffer = new ArrayBufferWriter<byte>(4096);
        try
        {
            while (ws.State == WebSocketState.Open)
            {
                buffer.Clear();
                var (kind, tooLarge) = await ReceiveAsync(ws, buffer, o.MaxWebSocketMessageBytes, ct);
                if (kind == WebSocketMessageType.Close)
                {
                    await inbox.WriteAsync(new Incoming(null, null, true), ct);
                    return;
                }
                if (tooLarge)
                    await inbox.WriteAsync(new Incoming(null, new ApiError(400, "message_too_large", $"Frames are limited to {o.MaxWebSocketMessageBytes} bytes."), false), ct);
                else if (kind != WebSocketMessageType.Text)
                    await inbox.WriteAsync(new Incoming(null, new ApiError(400, ErrorCodes.InvalidRequest, "Send JSON text frames."), false), ct);
                else if (!TryParse(buffer.WrittenMemory, o.MaxTokensLimit, o.MaxPromptChars, out var frame, out var error))
                    await inbox.WriteAsync(new Incoming(null, error, false), ct);
                else
                    await inbox.WriteAsync(new Incoming(frame, null, false), ct);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or WebSocketException)
        {
        }
        finally
        {
            inbox.TryComplete();
        }
    }

    /// <summary>Answers one turn; returns the conversation with it (unchanged when it failed or was cancelled).</summary>
    private static async Task<Conversation> TurnAsync(WebSocket ws, SemaphoreSlim send, IInferenceClient client, string colour, string session, Conversation conversation,
        ParsedFrame frame, TimeSpan timeout, int maxChars, ILogger logger, CancellationToken ct)
    {
        var id = ServedBy.NewId("wschat");
        var history = new List<ChatMessage>(conversation.Messages);
        // The same limit as an HTTP request's whole conversation: the oldest turns go first.
        var trimmed = TrimHistory(history, maxChars - frame.Content.Length);
        var messages = new List<ChatMessage>(history) { new(ChatRoles.User, frame.Content) };
        InferenceStart start;
        try
        {
            start = await client.TryStartAsync(InferenceQueue.Live, colour, new InferRequest
            {
                Id = id, SessionId = session, Task = InferTasks.Chat, Messages = messages, Sampling = frame.Sampling, Stream = true, ReplyTo = "",
            }, timeout, ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // Cancelled while it was being handed to a worker (the client tells any worker that took it to drop it).
            await SendAsync(ws, send, new WsFrame { Type = "cancelled", Text = "", TurnId = frame.Id, Turns = conversation.Turns }, CancellationToken.None);
            return conversation;
        }
        if (!start.Started)
        {
            await SendErrorAsync(ws, send, start.Code, start.Message, CancellationToken.None);
            return conversation;
        }
        var call = start.Call;
        var streamed = new System.Text.StringBuilder();
        try
        {
            await using (call)
            {
                await foreach (var reply in call.ReadAsync(ct))
                {
                    if (reply.Accepted is { } a)
                        await SendAsync(ws, send, new WsFrame { Type = "accepted", Colour = a.Colour, Profile = a.ProfileVersion, Model = a.ModelId, Worker = a.WorkerId, TurnId = frame.Id }, ct);
                    else if (reply.Chunk is { } c)
                    {
                        streamed.Append(c.Text);
                        await SendAsync(ws, send, new WsFrame { Type = "token", Text = c.Text, Colour = call.Accepted?.Colour ?? colour }, ct);
                    }
                    else if (reply.Result is { } r)
                    {
                        // What the worker left out to fit its context is left out of the history too, so it stays bounded.
                        history.RemoveRange(0, Math.Min(r.TrimmedMessages, history.Count));
                        trimmed += r.TrimmedMessages;
                        history.Add(new ChatMessage(ChatRoles.User, frame.Content));
                        history.Add(new ChatMessage(ChatRoles.Assistant, r.Text));
                        var done = new WsFrame
                        {
                            Type = "done", Text = r.Text, FinishReason = r.FinishReason, Colour = r.Colour, Profile = r.ProfileVersion, Model = r.ModelId, Worker = r.WorkerId,
                            Usage = new Usage(r.PromptTokens, r.CompletionTokens, r.PromptTokens + r.CompletionTokens), Turns = conversation.Turns + 1,
                            TrimmedMessages = trimmed > 0 ? trimmed : null, TurnId = frame.Id,
                        };
                        await SendAsync(ws, send, done, CancellationToken.None);
                        return new Conversation { Messages = history, Turns = conversation.Turns + 1, LastTurnId = frame.Id, LastDone = done };
                    }
                    else if (reply.Error is { } e)
                    {
                        IngressLog.TurnFailed(logger, id, e.Code);
                        await SendErrorAsync(ws, send, e.Code, e.Message, CancellationToken.None);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // Cancelled by the client (the call's disposal told the worker to stop): the turn is not part of the conversation.
            await SendAsync(ws, send, new WsFrame { Type = "cancelled", Text = streamed.ToString(), TurnId = frame.Id, Turns = conversation.Turns }, CancellationToken.None);
        }
        return conversation;
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

    private enum FrameKind { Message, Reset, Cancel }

    private sealed record ParsedFrame(FrameKind Kind, string Content, SamplingParams Sampling, string? Id = null);

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
                    error = ApiError.Invalid("'type' must be a string: 'message', 'cancel' or 'reset'.", "type");
                    return false;
                }
                type = t.GetString();
            }
            if (type is "reset" or "cancel")
            {
                frame = new ParsedFrame(type == "reset" ? FrameKind.Reset : FrameKind.Cancel, "", new SamplingParams());
                return true;
            }
            if (type != "message")
            {
                error = ApiError.Invalid($"Unknown frame type; expected 'message', 'cancel' or 'reset'.", "type");
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
            // A turn takes the HTTP chat's sampling fields, checked by the same code; any other field is refused by name.
            foreach (var field in root.EnumerateObject())
                if (field.Name is not ("type" or "content" or "id") && !RequestParser.SamplingFields.Contains(field.Name))
                {
                    var name = field.Name.Length <= 40 ? field.Name : field.Name[..40] + "…";
                    error = new ApiError(400, RequestParser.UnknownParameter,
                        $"Unknown parameter: '{name}'. A message frame takes type, content, id and the sampling fields {string.Join(", ", RequestParser.SamplingFields)}.", name);
                    return false;
                }
            if (!RequestParser.TryParseSampling(root, maxTokens, out var sampling, out error))
                return false;
            string? turnId = null;
            if (root.TryGetProperty("id", out var idElement))
            {
                if (idElement.ValueKind != JsonValueKind.String || idElement.GetString() is not { Length: > 0 and <= 128 } given)
                {
                    error = ApiError.Invalid("'id' must be a string of 1 to 128 characters: the client's id of this turn.", "id");
                    return false;
                }
                turnId = given;
            }
            frame = new ParsedFrame(FrameKind.Message, c.GetString()!, sampling, turnId);
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

    private static Task SendErrorAsync(WebSocket ws, SemaphoreSlim send, string code, string message, CancellationToken ct) =>
        SendAsync(ws, send, new WsFrame { Type = "error", Code = code, Message = message }, ct);

    /// <summary>Sends one frame; frames from the turn and from the conversation loop never interleave.</summary>
    private static async Task SendAsync(WebSocket ws, SemaphoreSlim send, WsFrame frame, CancellationToken ct)
    {
        await send.WaitAsync(ct);
        try
        {
            if (ws.State == WebSocketState.Open)
                await ws.SendAsync(JsonSerializer.SerializeToUtf8Bytes(frame, IngressJson.Context.WsFrame), WebSocketMessageType.Text, true, ct);
        }
        finally
        {
            send.Release();
        }
    }
}

