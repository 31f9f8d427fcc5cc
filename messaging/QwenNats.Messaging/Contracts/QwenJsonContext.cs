using System.Text.Json.Serialization;

namespace QwenNats.Messaging;

/// <summary>The one source-generated JSON context for every message on the wire (snake_case names).</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    UseStringEnumConverter = true)]
[JsonSerializable(typeof(InferRequest))]
[JsonSerializable(typeof(InferReply))]
[JsonSerializable(typeof(CancelRequest))]
[JsonSerializable(typeof(WorkerHeartbeat))]
[JsonSerializable(typeof(HostLiveLoad))]
[JsonSerializable(typeof(ErrorReply))]
[JsonSerializable(typeof(RolloutState))]
[JsonSerializable(typeof(RolloutEvent))]
[JsonSerializable(typeof(ControlRequest))]
[JsonSerializable(typeof(ControlReply))]
[JsonSerializable(typeof(SessionPin))]
[JsonSerializable(typeof(PromoterLease))]
[JsonSerializable(typeof(ShadowSample))]
[JsonSerializable(typeof(Verdict))]
[JsonSerializable(typeof(GoldenReport))]
[JsonSerializable(typeof(GoldenResult))]
[JsonSerializable(typeof(GoldenInput))]
[JsonSerializable(typeof(CompareReport))]
[JsonSerializable(typeof(Release))]
[JsonSerializable(typeof(Assignment))]
[JsonSerializable(typeof(FaultOptions))]
public sealed partial class QwenJsonContext : JsonSerializerContext;
