using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace QwenNats.Tests.Infrastructure;

/// <summary>The WebSocket chat from a client's side: connect to an ingress, send a frame, read a frame.</summary>
public static class WsClient
{
    /// <summary>Connects; a query that chooses a colour sends the operator token, since choosing is a tester's privilege.</summary>
    public static async Task<ClientWebSocket> ConnectAsync(HttpClient ingress, string query, CancellationToken ct)
    {
        var ws = new ClientWebSocket();
        if (query.Contains("colour=", StringComparison.Ordinal))
            ws.Options.SetRequestHeader("Authorization", "Bearer " + QwenSystem.OperatorToken);
        await ws.ConnectAsync(new UriBuilder(ingress.BaseAddress!) { Scheme = "ws", Path = "/ws/chat", Query = query.TrimStart('?') }.Uri, ct);
        return ws;
    }

    public static Task SendAsync(ClientWebSocket ws, string text, CancellationToken ct) =>
        ws.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, ct);

    /// <summary>The next frame, parsed; a close instead fails the test.</summary>
    public static async Task<JsonElement> ReceiveAsync(ClientWebSocket ws, CancellationToken ct)
    {
        var buffer = new byte[64 * 1024];
        using var ms = new MemoryStream();
        while (true)
        {
            var r = await ws.ReceiveAsync(buffer, ct);
            Assert.NotEqual(WebSocketMessageType.Close, r.MessageType);
            ms.Write(buffer, 0, r.Count);
            if (r.EndOfMessage) break;
        }
        return JsonDocument.Parse(ms.ToArray()).RootElement.Clone();
    }
}
