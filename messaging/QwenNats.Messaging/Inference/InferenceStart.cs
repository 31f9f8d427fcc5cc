using System.Diagnostics.CodeAnalysis;

namespace QwenNats.Messaging;

/// <summary>
/// The outcome of <see cref="IInferenceClient.TryStartAsync"/>: a call in flight, or why none could be
/// started (an HTTP-style status, an <see cref="ErrorCodes"/> code and a message meant for the caller).
/// </summary>
public sealed record InferenceStart
{
    private InferenceStart(InferenceCall? call, int status, string? code, string? message)
    {
        Call = call;
        Status = status;
        Code = code;
        Message = message;
    }

    public InferenceCall? Call { get; }
    public int Status { get; }
    public string? Code { get; }
    public string? Message { get; }

    [MemberNotNullWhen(true, nameof(Call))]
    [MemberNotNullWhen(false, nameof(Code), nameof(Message))]
    public bool Started => Call is not null;

    public static InferenceStart Of(InferenceCall call) => new(call, 0, null, null);

    public static InferenceStart Refused(int status, string code, string message) => new(null, status, code, message);

    public static InferenceStart NoWorkers(string message) => Refused(503, ErrorCodes.NoWorkers, message);

    public static InferenceStart QueueFull(string message) => Refused(503, ErrorCodes.Overloaded, message);

    public static InferenceStart BusUnavailable(string message) => Refused(503, ErrorCodes.BusUnavailable, message);

    public static InferenceStart TooLarge(string message) => Refused(413, ErrorCodes.RequestTooLarge, message);
}
