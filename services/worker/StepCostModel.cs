using QwenNats.Messaging;

namespace QwenNats.Worker;

/// <summary>One request's part of a batched decode step: the tokens it queued and the sum of their positions.</summary>
public readonly record struct StepPart(double Tokens, double Positions)
{
    /// <summary>The part of <paramref name="tokens"/> tokens queued at positions <paramref name="first"/> onwards.</summary>
    public static StepPart Of(int tokens, int first) =>
        tokens <= 0 ? default : new StepPart(tokens, tokens * (double)first + tokens * (tokens - 1) / 2.0);

    public static StepPart operator +(StepPart a, StepPart b) => new(a.Tokens + b.Tokens, a.Positions + b.Positions);
}

/// <summary>
/// What a decode step costs on this worker's build: <c>cpu ≈ a + b·tokens + c·positions</c>, where <c>positions</c> is
/// the sum of the positions of the step's tokens (attention reads every earlier token of the sequence, so a token deep
/// in a long prompt costs more than one near its start). Fitted by exponentially weighted least squares on relative
/// errors, with non-negative coefficients; the worker fits it on a calibration at load and then freezes it
/// (<see cref="Freeze"/>), or, without one, keeps learning from the steps it runs. Pure and deterministic.
/// <para>
/// It answers what a request's part of a batched step would have cost alone, so batching neither halves nor doubles a
/// request's cost; and, once frozen, it is reported with every result (<see cref="Measured"/>) so the judge can price
/// the live and the candidate request's work with one yardstick (a profile whose prompts are longer, or sit after a
/// longer shared prefix, does more work, not slower work).
/// </para>
/// </summary>
public sealed class StepCostModel(double decay = StepCostModel.DefaultDecay)
{
    /// <summary>Weight kept by earlier steps at each new one: about the last 400 steps count.</summary>
    public const double DefaultDecay = 0.9975;

    /// <summary>Steps observed before the fit is used (with fewer, each step is split by tokens).</summary>
    public const int MinSteps = 6;

    // Weighted sums of x·xᵀ, x·y and y² over observed steps, x = (1, tokens, positions).
    private readonly double[,] _xx = new double[3, 3];
    private readonly double[] _xy = new double[3];
    private double _yy;
    private double[]? _fit;
    private bool _stale = true;

    public int Steps { get; private set; }

    /// <summary>Whether the fit is fixed (<see cref="Freeze"/>): <see cref="Split"/> no longer records steps in it.</summary>
    public bool Frozen { get; private set; }

    /// <summary>Fixes the fit as it is (after a calibration): later steps are charged by it and no longer change it.</summary>
    public void Freeze()
    {
        Frozen = Steps > 0;
        Measured = Frozen && Coefficients is { } k ? new DecodeCostModel(k.PerStep, k.PerToken, k.PerPosition) : null;
    }

    /// <summary>The frozen fit as reported with results; null before a calibration.</summary>
    public DecodeCostModel? Measured { get; private set; }

    /// <summary>The fit in words, for the log.</summary>
    public string Describe() => Coefficients is { } k
        ? $"{k.PerStep:F4} ms a step + {k.PerToken:F4} ms a token + {k.PerPosition:F6} ms a position attended"
        : "no fit";

    /// <summary>Whether enough steps have been seen to use the fit.</summary>
    public bool Ready => Steps >= MinSteps && Coefficients is not null;

    /// <summary>The fitted (a, b, c), or null before any step.</summary>
    public (double PerStep, double PerToken, double PerPosition)? Coefficients
    {
        get
        {
            if (Steps == 0) return null;
            if (_stale)
            {
                _fit = Solve();
                _stale = false;
            }
            return _fit is { } f && f[0] + f[1] + f[2] > 0 ? (f[0], f[1], f[2]) : null;
        }
    }

    /// <summary>Records a step of <paramref name="whole"/> (all its parts together) that used <paramref name="ms"/> CPU milliseconds.</summary>
    public void Observe(StepPart whole, double ms)
    {
        if (whole.Tokens <= 0 || !(ms > 0) || double.IsInfinity(ms)) return;
        // Weighted by 1/ms²: relative errors count, so a single-token step (a fraction of a millisecond) pins the
        // per-step and per-token costs as firmly as a long prompt pins the per-position one.
        var w = 1 / (ms * ms);
        Span<double> x = [1, whole.Tokens, whole.Positions];
        for (var i = 0; i < 3; i++)
        {
            for (var j = 0; j < 3; j++)
                _xx[i, j] = _xx[i, j] * decay + w * x[i] * x[j];
            _xy[i] = _xy[i] * decay + w * x[i] * ms;
        }
        _yy = _yy * decay + w * ms * ms;
        Steps++;
        _stale = true;
    }

    /// <summary>The fitted cost of a step (or a request's part of one) run alone.</summary>
    public double Predict(StepPart part)
    {
        if (part.Tokens <= 0 || Coefficients is not { } k) return 0;
        return k.PerStep + k.PerToken * part.Tokens + k.PerPosition * part.Positions;
    }

    /// <summary>
    /// Splits a step that used <paramref name="ms"/> CPU milliseconds among its parts. With a fit, each part is charged
    /// what it would have cost alone, scaled by how far this step's measured cost was from the fit's prediction (so the
    /// step's own time, a slower build's included, is what its requests pay). Before the fit is ready the step is shared
    /// by tokens. Unless the fit is frozen, the step is recorded in it first.
    /// </summary>
    public double[] Split(IReadOnlyList<StepPart> parts, double ms)
    {
        var whole = default(StepPart);
        foreach (var p in parts)
            whole += p;
        if (!Frozen)
            Observe(whole, ms);
        var charges = new double[parts.Count];
        if (whole.Tokens <= 0 || !(ms > 0))
            return charges;
        var predicted = Predict(whole);
        if (!Ready || !(predicted > 0))
        {
            for (var i = 0; i < parts.Count; i++)
                charges[i] = ms * parts[i].Tokens / whole.Tokens;
            return charges;
        }
        for (var i = 0; i < parts.Count; i++)
            charges[i] = Predict(parts[i]) * ms / predicted;
        return charges;
    }

    /// <summary>Non-negative least squares over the three coefficients (every subset tried; 3 unknowns).</summary>
    private double[]? Solve()
    {
        double[]? best = null;
        var bestError = double.PositiveInfinity;
        for (var mask = 1; mask < 8; mask++)
        {
            var idx = Enumerable.Range(0, 3).Where(i => (mask & (1 << i)) != 0).ToArray();
            var sub = SolveSubset(idx);
            if (sub is null || sub.Any(v => v < 0)) continue;
            var theta = new double[3];
            for (var i = 0; i < idx.Length; i++)
                theta[idx[i]] = sub[i];
            var error = _yy;
            for (var i = 0; i < 3; i++)
            {
                error -= 2 * theta[i] * _xy[i];
                for (var j = 0; j < 3; j++)
                    error += theta[i] * _xx[i, j] * theta[j];
            }
            if (best is null || error < bestError)
            {
                bestError = error;
                best = theta;
            }
        }
        return best;
    }

    /// <summary>Solves the normal equations restricted to <paramref name="idx"/> (Gaussian elimination, partial pivoting).</summary>
    private double[]? SolveSubset(int[] idx)
    {
        var n = idx.Length;
        var m = new double[n, n + 1];
        for (var i = 0; i < n; i++)
        {
            for (var j = 0; j < n; j++)
                m[i, j] = _xx[idx[i], idx[j]];
            m[i, n] = _xy[idx[i]];
            // A touch of ridge keeps a column the steps never varied (say, every step the same size) solvable.
            m[i, i] += 1e-9 * Math.Max(_xx[idx[i], idx[i]], 1e-12);
        }
        for (var col = 0; col < n; col++)
        {
            var pivot = col;
            for (var r = col + 1; r < n; r++)
                if (Math.Abs(m[r, col]) > Math.Abs(m[pivot, col])) pivot = r;
            if (Math.Abs(m[pivot, col]) < 1e-300) return null;
            if (pivot != col)
                for (var c = 0; c <= n; c++)
                    (m[col, c], m[pivot, c]) = (m[pivot, c], m[col, c]);
            for (var r = 0; r < n; r++)
            {
                if (r == col) continue;
                var f = m[r, col] / m[col, col];
                for (var c = col; c <= n; c++)
                    m[r, c] -= f * m[col, c];
            }
        }
        var x = new double[n];
        for (var i = 0; i < n; i++)
            x[i] = m[i, n] / m[i, i];
        return x.All(double.IsFinite) ? x : null;
    }
}
