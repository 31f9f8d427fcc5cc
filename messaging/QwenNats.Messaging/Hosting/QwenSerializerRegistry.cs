using NATS.Client.Core;
using QwenNats.Messaging;

namespace QwenNats.Messaging;

/// <summary>Serializes the project's messages with the source-generated <see cref="QwenJsonContext"/>;
/// strings, bytes and primitives keep NATS.Net's defaults.</summary>
public sealed class QwenSerializerRegistry : INatsSerializerRegistry
{
    public static readonly QwenSerializerRegistry Default = new();

    public INatsSerialize<T> GetSerializer<T>() =>
        new NatsJsonContextSerializer<T>([QwenJsonContext.Default], NatsDefaultSerializer<T>.Default);

    public INatsDeserialize<T> GetDeserializer<T>() =>
        new NatsJsonContextSerializer<T>([QwenJsonContext.Default], NatsDefaultSerializer<T>.Default);
}
