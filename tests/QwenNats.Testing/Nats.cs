using NATS.Client.Core;
using QwenNats.Messaging;

namespace QwenNats.Testing;

/// <summary>The one way tests and the bench open a NATS connection: the project's serializers, a name,
/// and optionally a user and password.</summary>
public static class Nats
{
    public static NatsConnection Connect(string url, string name = "qwen-test", string? user = null, string? password = null) =>
        new(Options(url, name, user, password));

    public static NatsOpts Options(string url, string name = "qwen-test", string? user = null, string? password = null) =>
        QwenConnection.Options(url, name, user, password, reconnectForever: false);
}
