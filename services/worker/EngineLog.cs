using Microsoft.Extensions.Logging;

namespace QwenNats.Worker;

/// <summary>Source-generated log messages of the llama.cpp engine and the fault injector (event ids 3900-3999).</summary>
internal static partial class EngineLog
{
    [LoggerMessage(EventId = 3900, Level = LogLevel.Information, Message = "Loaded model {Model} ({Bytes} bytes, sha256 {Sha}) with profile {Profile}; {Slots} slots x {Context} tokens, {Threads} threads, {Template} template")]
    public static partial void ModelLoaded(ILogger logger, string model, long bytes, string sha, string profile, int slots, int context, int threads, string template);

    [LoggerMessage(EventId = 3901, Level = LogLevel.Information, Message = "Prompt prefixes decoded once and shared: chat {Chat} tokens, sentiment {Sentiment} tokens{Off}")]
    public static partial void PrefixesShared(ILogger logger, int chat, int sentiment, string off);

    [LoggerMessage(EventId = 3902, Level = LogLevel.Error, Message = "Could not admit request {RequestId}")]
    public static partial void AdmitFailed(ILogger logger, string requestId, Exception exception);

    [LoggerMessage(EventId = 3903, Level = LogLevel.Warning, Message = "Batched decode returned {Result} with {Active} requests; failing them and resetting the context")]
    public static partial void DecodeFailed(ILogger logger, string result, int active);

    [LoggerMessage(EventId = 3904, Level = LogLevel.Error, Message = "Request {RequestId} failed in the decode loop")]
    public static partial void RequestFailed(ILogger logger, string requestId, Exception exception);

    [LoggerMessage(EventId = 3905, Level = LogLevel.Error, Message = "Decode loop error with {Active} requests; failing them and resetting the context")]
    public static partial void LoopFailed(ILogger logger, int active, Exception exception);

    [LoggerMessage(EventId = 3906, Level = LogLevel.Warning, Message = "Prompt prefixes not shared after the reset")]
    public static partial void PrefixesNotShared(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 3907, Level = LogLevel.Warning, Message = "The decode thread could not take nice value {Wanted} (it has {Now}); lowering a nice value needs CAP_SYS_NICE or RLIMIT_NICE")]
    public static partial void NiceRefused(ILogger logger, int wanted, int now);

    [LoggerMessage(EventId = 3909, Level = LogLevel.Critical, Message = "The decode loop stopped for good; the requests it held are not answered here (they are redelivered) and the worker stops")]
    public static partial void LoopStopped(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 3910, Level = LogLevel.Warning, Message = "FAULT INJECTION ON: fraction {Fraction}, flip labels {Flip}, truncate {Truncate}, nonsense {Nonsense}, slowdown x{Slowdown}, error rate {ErrorRate}, hang rate {HangRate}")]
    public static partial void FaultsOn(ILogger logger, double fraction, bool flip, bool truncate, bool nonsense, double slowdown, double errorRate, double hangRate);

    [LoggerMessage(EventId = 3911, Level = LogLevel.Warning, Message = "Tokenizing with LLamaSharp's two native calls per text: the one-call tokenizer could not be bound to the loaded libllama here")]
    public static partial void TokenizerFallback(ILogger logger);

    [LoggerMessage(EventId = 3913, Level = LogLevel.Information, Message = "Decode cost measured ({Rounds} rounds): {Model}")]
    public static partial void CostCalibrated(ILogger logger, int rounds, string model);
}
