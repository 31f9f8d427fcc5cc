using Microsoft.Extensions.Logging;
using NATS.Client.Core;

namespace QwenNats.Messaging;

/// <summary>
/// The one way a QwenNats process or tool opens a NATS connection: the project's serializers, a name, optional
/// credentials (a user and password, or a token), and for long-running services reconnecting forever.
/// </summary>
public static class QwenConnection
{
    public static NatsOpts Options(string url, string name, string? user = null, string? password = null, string? token = null,
        ILoggerFactory? loggers = null, TimeSpan? connectTimeout = null, TimeSpan? requestTimeout = null, bool reconnectForever = true)
    {
        var opts = NatsOpts.Default with
        {
            Url = url,
            Name = name,
            SerializerRegistry = QwenSerializerRegistry.Default,
            AuthOpts = NatsAuthOpts.Default with { Username = user, Password = password, Token = token },
            ConnectTimeout = connectTimeout ?? NatsOpts.Default.ConnectTimeout,
            RequestTimeout = requestTimeout ?? NatsOpts.Default.RequestTimeout,
        };
        if (loggers is not null)
            opts = opts with { LoggerFactory = loggers };
        return reconnectForever ? opts with { RetryOnInitialConnect = true, MaxReconnectRetry = -1 } : opts;
    }

    /// <summary>A connection from the <c>Nats</c> settings, named after this process.</summary>
    public static NatsConnection Create(NatsOptions o, string name, ILoggerFactory? loggers = null) =>
        new(Options(o.Url, name, o.User, o.Password, o.Token, loggers, o.ConnectTimeout, o.RequestTimeout));
}
