using QwenNats.Messaging;

namespace QwenNats.Ingress.OpenAi;

/// <summary>An error answer in OpenAI's shape: <c>{"error": {"message", "type", "code", "param"}}</c>.</summary>
public sealed record ApiError(int Status, string Code, string Message, string? Param = null)
{
    public string Type => Status switch
    {
        400 or 404 or 405 or 413 or 415 => "invalid_request_error",
        401 or 403 => "authentication_error",
        429 => "rate_limit_error",
        504 => "timeout_error",
        _ => "server_error",
    };

    public ErrorBody ToBody() => new(new ErrorDetail(Message, Type, Code, Param));

    public static ApiError Invalid(string message, string? param = null) => new(400, ErrorCodes.InvalidRequest, message, param);

    /// <summary>Maps a worker's error code to an HTTP status.</summary>
    public static ApiError FromInfer(InferError e) => new(e.Code switch
    {
        ErrorCodes.InvalidRequest or ErrorCodes.EmptyConversation or ErrorCodes.UnknownTask or ErrorCodes.ContextLengthExceeded or ErrorCodes.AnswerTooLarge => 400,
        ErrorCodes.RequestTooLarge => 413,
        ErrorCodes.DeadlineExceeded => 504,
        ErrorCodes.NoWorkers or ErrorCodes.Overloaded or ErrorCodes.WorkerLost or ErrorCodes.Cancelled or ErrorCodes.BusUnavailable => 503,
        _ => 502,
    }, e.Code, e.Message);
}

public sealed record ErrorBody(ErrorDetail Error);

public sealed record ErrorDetail(string Message, string Type, string Code, string? Param);
