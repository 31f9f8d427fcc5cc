namespace QwenNats.Messaging;

/// <summary>
/// The <c>Faults</c> section: fault injection for drills (like Envoy's or Istio's), off unless configured.
/// Lets operators rehearse a bad release and tests make one. Every field defaults to "no fault". A release may
/// carry the same settings (its <c>faults</c>): a drill release that workers serve with these faults.
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

    /// <summary>Model downloads of the worker stop after this many bytes and wait until it stops (a stalled object
    /// store or network): rehearses a worker that dies or is stopped mid-download. 0: never. Process setting only
    /// (a release's faults apply to its answers, and its model is downloaded before they are read).</summary>
    public long DownloadStallAfterBytes { get; init; }

    /// <summary>The worker's decode loop stops for good once it has admitted this many requests after its warm-up, as when
    /// llama.cpp fails in a way the loop cannot recover from: rehearses a worker whose engine dies (it stops, and the
    /// requests it held are answered by other workers). 0: never. Process setting only.</summary>
    public int DecodeLoopCrashAfter { get; init; }

    /// <summary>Whether answers get any fault (<see cref="DownloadStallAfterBytes"/> is not about answers).</summary>
    public bool Enabled => ErrorRate > 0 || HangRate > 0 || (Fraction > 0 && (FlipLabels || Truncate || Nonsense || Slowdown > 1));
}
