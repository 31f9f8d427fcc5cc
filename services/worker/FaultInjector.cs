using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using QwenNats.Messaging;

namespace QwenNats.Worker;

/// <summary>
/// The <c>Faults</c> section: fault injection for drills (like Envoy's or Istio's), off unless configured.
/// Lets operators rehearse a bad release and tests make one. Every field defaults to "no fault".
/// </summary>
public sealed record FaultOptions
{
    public const string Section = "Faults";

    /// <summary>Fraction of answers that get the faults below (0 = none).</summary>
    public double Fraction { get; init; }

    /// <summary>Sentiment: answer a different label than the model chose.</summary>
    public bool FlipLabels { get; init; }

    /// <summary>Chat: cut the answer to a third and report finish reason <c>length</c>.</summary>
    public bool Truncate { get; init; }

    /// <summary>Chat: replace the answer with letters and spaces drawn at random (same length): fluent-looking
    /// length, no meaning — what a broken tokenizer or a corrupt model file produces.</summary>
    public bool Nonsense { get; init; }

    /// <summary>Make the answer cost this many times the compute (1 = unchanged): the decode loop burns the extra
    /// CPU, so it is slower in CPU time and in wall-clock time, like a costlier build.</summary>
    public double Slowdown { get; init; } = 1;

    /// <summary>Fraction of requests answered with an <c>injected_fault</c> error instead (independent of <see cref="Fraction"/>).</summary>
    public double ErrorRate { get; init; }

    /// <summary>Fraction of requests the worker takes and then never answers (a hung worker), until the
    /// ingress cancels them at their deadline. Independent of the others.</summary>
    public double HangRate { get; init; }

    public bool Enabled => ErrorRate > 0 || HangRate > 0 || (Fraction > 0 && (FlipLabels || Truncate || Nonsense || Slowdown > 1));
}

public readonly record struct FaultDraw(bool Error, bool Active, bool Hang = false);

public sealed class FaultInjector
{
    public const string ErrorCode = "injected_fault";
    private readonly FaultOptions _o;

    public FaultInjector(IOptions<FaultOptions> options, ILogger<FaultInjector> logger)
    {
        _o = options.Value;
        if (_o.Enabled)
            EngineLog.FaultsOn(logger,
                _o.Fraction, _o.FlipLabels, _o.Truncate, _o.Nonsense, _o.Slowdown, _o.ErrorRate, _o.HangRate);
    }

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
        if (_o.Nonsense && r.Task == InferTasks.Chat && r.Text.Length > 0)
        {
            const string letters = "abcdefghijklmnopqrstuvwxyz    ";
            r = r with { Text = string.Create(r.Text.Length, 0, (span, _) => { for (var i = 0; i < span.Length; i++) span[i] = letters[Random.Shared.Next(letters.Length)]; }) };
        }
        if (_o.Truncate && r.Task == InferTasks.Chat)
            r = r with { Text = r.Text[..(r.Text.Length / 3)], FinishReason = FinishReasons.Length, CompletionTokens = r.CompletionTokens / 3 };
        return Task.FromResult(r);
    }
}
