using Microsoft.Extensions.Logging;
using Polly;
using Polly.Retry;

namespace QwenNats.Messaging.Internal;

/// <summary>
/// The one retry pipeline of the project (Polly): used wherever a service waits for NATS, JetStream or a
/// resource another service owns. Exponential back-off with jitter, capped, forever until the caller's
/// token is cancelled; every failed attempt is logged once, with its exception.
/// </summary>
public static class Retry
{
    /// <summary>First and largest delay between attempts.</summary>
    public static readonly TimeSpan FirstDelay = TimeSpan.FromMilliseconds(250);
    public static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(5);

    /// <summary>A pipeline that retries any exception except the caller's own cancellation.</summary>
    public static ResiliencePipeline Forever(ILogger logger, string what, TimeSpan? maxDelay = null, TimeProvider? clock = null) =>
        new ResiliencePipelineBuilder { TimeProvider = clock ?? TimeProvider.System }
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<Exception>(e => e is not OperationCanceledException),
                MaxRetryAttempts = int.MaxValue,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = FirstDelay,
                MaxDelay = maxDelay ?? MaxDelay,
                OnRetry = args =>
                {
                    Log.RetryingAfterFailure(logger, what, args.AttemptNumber + 1, args.RetryDelay.TotalMilliseconds, args.Outcome.Exception);
                    return ValueTask.CompletedTask;
                },
            })
            .Build();

    /// <summary>Runs <paramref name="action"/> until it succeeds or <paramref name="ct"/> is cancelled.</summary>
    public static ValueTask UntilDoneAsync(ILogger logger, string what, Func<CancellationToken, ValueTask> action, CancellationToken ct) =>
        Forever(logger, what).ExecuteAsync(action, ct);

    /// <summary>
    /// Keeps a long-running loop (a subscription, a consumer) running until <paramref name="ct"/> is cancelled:
    /// when it fails, or ends by itself, it is started again after the pipeline's back-off.
    /// </summary>
    public static async Task KeepRunningAsync(ILogger logger, string what, Func<CancellationToken, ValueTask> run, CancellationToken ct)
    {
        try
        {
            await Forever(logger, what).ExecuteAsync(async token =>
            {
                await run(token);
                token.ThrowIfCancellationRequested();
                throw new InvalidOperationException($"{what} ended by itself; starting it again");
            }, ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    /// <summary>Runs <paramref name="action"/> until it succeeds or <paramref name="ct"/> is cancelled, and returns its result.</summary>
    public static ValueTask<T> UntilDoneAsync<T>(ILogger logger, string what, Func<CancellationToken, ValueTask<T>> action, CancellationToken ct) =>
        Forever(logger, what).ExecuteAsync(action, ct);
}
