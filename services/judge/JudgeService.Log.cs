using Microsoft.Extensions.Logging;
using QwenNats.Messaging;

namespace QwenNats.Judge;

public sealed partial class JudgeService
{
    [LoggerMessage(EventId = 4000, Level = LogLevel.Information, Message = "Judge consuming {Stream}; policy: min {Min} samples, false alarm {Alpha} and miss {Beta} per check, false rollbacks per rollout at most {Bound:P2}")]
    private static partial void LogConsuming(ILogger logger, string stream, int min, double alpha, double beta, double bound);

    [LoggerMessage(EventId = 4001, Level = LogLevel.Information, Message = "Sample applied: {Task}, {Phase} step {Step}, candidate {Outcome}")]
    private static partial void LogSampleApplied(ILogger logger, string task, RolloutPhase phase, int step, string outcome);

    [LoggerMessage(EventId = 4003, Level = LogLevel.Debug, Message = "Verdict {Outcome} for {Rollout} step {Step}: {Reason}")]
    private static partial void LogVerdict(ILogger logger, string outcome, string? rollout, int step, string reason);

    [LoggerMessage(EventId = 4004, Level = LogLevel.Warning, Message = "Evaluation failed")]
    private static partial void LogEvaluationFailed(ILogger logger, Exception exception);
}
