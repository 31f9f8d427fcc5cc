using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using QwenNats.Messaging;

namespace QwenNats.Worker;

public readonly record struct FaultDraw(bool Error, bool Active, bool Hang = false);

public sealed class FaultInjector
{
    public const string ErrorCode = "injected_fault";
    private readonly FaultOptions _o;

    public FaultInjector(IOptions<FaultOptions> options, ILogger<FaultInjector> logger) : this(options.Value, logger)
    {
    }

    public FaultInjector(FaultOptions options, ILogger logger)
    {
        _o = options;
        if (_o.Enabled)
            EngineLog.FaultsOn(logger,
                _o.Fraction, _o.FlipLabels, _o.Truncate, _o.Nonsense, _o.Slowdown, _o.ErrorRate, _o.HangRate);
    }

    /// <summary>The faults this injects (part of what the worker serves: <see cref="GoldenKeys.Fingerprint"/>).</summary>
    public FaultOptions Options => _o;

    public FaultDraw Draw() => !_o.Enabled
        ? default
        : new FaultDraw(Random.Shared.NextDouble() < _o.ErrorRate, Random.Shared.NextDouble() < _o.Fraction, Random.Shared.NextDouble() < _o.HangRate);

    /// <summary>The compute factor of a request drawn for faults (see <see cref="EngineJob.CostFactor"/>).</summary>
    public double Slowdown => Math.Max(1, _o.Slowdown);

    /// <summary>Changes a finished answer as configured (the slowdown already happened in the decode loop).</summary>
    public Task<InferResult> ApplyAsync(InferResult r, PromptProfile profile)
    {
        if (_o.FlipLabels && r.Label is { } label)
        {
            var labels = profile.Sentiment.Labels;
            var flipped = labels[(labels.ToList().IndexOf(label) + 1) % labels.Count];
            r = r with { Label = flipped, Text = flipped };
        }
        if (_o.Nonsense && r.Task is InferTasks.Chat or InferTasks.Completion && r.Text.Length > 0)
        {
            const string letters = "abcdefghijklmnopqrstuvwxyz    ";
            r = r with { Text = string.Create(r.Text.Length, 0, (span, _) => { for (var i = 0; i < span.Length; i++) span[i] = letters[Random.Shared.Next(letters.Length)]; }) };
        }
        if (_o.Truncate && r.Task is InferTasks.Chat or InferTasks.Completion)
            r = r with { Text = r.Text[..(r.Text.Length / 3)], FinishReason = FinishReasons.Length, CompletionTokens = r.CompletionTokens / 3 };
        return Task.FromResult(r);
    }
}
