namespace QwenNats.Messaging;

/// <summary>
/// The WebSocket subprotocols of <c>/ws/chat</c>. Browsers cannot set headers on a WebSocket, so they offer
/// the API key as a subprotocol (<c>new WebSocket(url, ["qwen", "qwen.key.&lt;key&gt;"])</c>), which keeps it out of
/// URLs and access logs; the server answers with the plain <see cref="Name"/>.
/// </summary>
public static class WebSocketProtocol
{
    /// <summary>The subprotocol the server selects when the client offered it.</summary>
    public const string Name = "qwen";

    /// <summary>Prefix of the subprotocol that carries an API key: <c>qwen.key.&lt;key&gt;</c>.</summary>
    public const string KeyPrefix = Name + ".key.";
}
