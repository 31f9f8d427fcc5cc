using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using NATS.Client.JetStream;
using QwenNats.Messaging;
using QwenNats.Ingress.Routing;

namespace QwenNats.Ingress;

/// <summary>The <c>Shadow</c> section: how live traffic is mirrored to a candidate.</summary>
public sealed record ShadowOptions
{
    public const string Section = "Shadow";

    /// <summary>Mirror at all (the rollout phase decides when).</summary>
    public bool Enabled { get; init; } = true;

    /// <summary>In Shadow, the fraction of live requests mirrored to the candidate (1 = every request).</summary>
    public double ShadowFraction { get; init; } = 1.0;

    /// <summary>In Canary, the fraction of live requests also mirrored.</summary>
    public double CanaryFraction { get; init; } = 0.25;

    /// <summary>Mirrors in flight per ingress; beyond it new mirrors are dropped and counted.</summary>
    public int MaxInFlight { get; init; } = 8;

    /// <summary>How long a mirrored copy may wait in the candidate's queue (longer: a capacity miss, not counted against
    /// the candidate), and then how long the candidate may take to answer once it took it (longer: unanswered).</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Have a live-colour worker score both chat answers of a pair (mean log-probability per token
    /// under the live model) before the sample goes to the judge. Scoring requests are short and go on the
    /// live queue; <see cref="ScoreFraction"/> bounds what they add to the live pool's work.</summary>
    public bool ScoreChat { get; init; } = true;

    /// <summary>Share of compared chat pairs that are scored (two short requests each on the live pool).</summary>
    public double ScoreFraction { get; init; } = 0.5;

    /// <summary>How long scoring may take; a pair not scored in time goes to the judge without scores.</summary>
    public TimeSpan ScoreTimeout { get; init; } = TimeSpan.FromSeconds(20);
}

/// <summary>
/// Mirrors live requests to the candidate colour's shadow queue while a rollout is in Shadow (all) or
/// Canary (a fraction), and when both answers are in sends the pair to the JetStream stream
/// <c>QWEN_SAMPLES</c> for the judge. The client only ever sees the live answer: mirrors run beside it with
/// their own timeout, are bounded in number, and are dropped (counted) when the candidate's queue is full,
/// so the mirror rate backs off by itself. Chat mirrors carry the live transcript, and a seed is fixed on
/// both sides so sampling noise is not scored as a regression.
/// </summary>
public sealed class ShadowMirror : BackgroundService
{
    private readonly InferenceClient _client;
    private readonly RolloutView _view;
    private readonly INatsJSContext _js;
    private readonly ShadowOptions _o;
    private readonly ILogger<ShadowMirror> _logger;
    private readonly SemaphoreSlim _inFlight;
    private readonly ConcurrentDictionary<ShadowPair, byte> _pairs = new();
    private long _sent, _dropped, _compared, _failed;

    private readonly IngressMetrics _metrics;

    public ShadowMirror(InferenceClient client, RolloutView view, INatsJSContext js, IOptions<ShadowOptions> options, IngressMetrics metrics, ILogger<ShadowMirror> logger)
    {
        _metrics = metrics;
        _client = client;
        _view = view;
        _js = js;
        _o = options.Value;
        _logger = logger;
        _inFlight = new SemaphoreSlim(Math.Max(1, _o.MaxInFlight));
    }

    public long Sent => Interlocked.Read(ref _sent);
    public long Dropped => Interlocked.Read(ref _dropped);
    public long Compared => Interlocked.Read(ref _compared);

    /// <summary>Decides whether to mirror a live request; when it does, fixes its seed and returns the pair.</summary>
    public ShadowPair? Begin(ref InferRequest live, string colour)
    {
        var state = _view.Current;
        if (!_o.Enabled || state.Candidate is not { } candidate || candidate == colour || state.RolloutId is null)
            return null;
        var mirror = state.Phase switch
        {
            RolloutPhase.Shadow => _o.ShadowFraction >= 1 || Random.Shared.NextDouble() < _o.ShadowFraction,
            RolloutPhase.Canary => Random.Shared.NextDouble() < _o.CanaryFraction,
            _ => false,
        };
        if (!mirror)
            return null;
        if (!_inFlight.Wait(0))
        {
            Interlocked.Increment(ref _dropped);
            _metrics.Mirrors.WithLabels("dropped").Inc();
            return null;
        }
        live = live with { Sampling = live.Sampling with { Seed = live.Sampling.Seed ?? (uint)Random.Shared.Next() } };
        var pair = new ShadowPair(this, live, colour, candidate, state);
        _pairs.TryAdd(pair, 0);
        return pair;
    }

    internal async Task RunAsync(ShadowPair pair)
    {
        try
        {
            var candidateSide = await CandidateAsync(pair);
            if (candidateSide is null)
                return;
            using var liveWait = new CancellationTokenSource(_o.Timeout);
            InferReply? live;
            try
            {
                live = await pair.Live.WaitAsync(liveWait.Token);
            }
            catch (OperationCanceledException)
            {
                live = null;
            }
            if (live is null)
                return;
            var liveSide = Side(pair.LiveColour, live);
            if (_o.ScoreChat && pair.Request.Task == InferTasks.Chat && Random.Shared.NextDouble() < _o.ScoreFraction && pair.Request.Messages is { Count: > 0 } messages
                && !string.IsNullOrEmpty(liveSide.Text) && !string.IsNullOrEmpty(candidateSide.Text))
            {
                var scores = await Task.WhenAll(
                    ScoreAsync(pair, messages, liveSide.Text!, "live"), ScoreAsync(pair, messages, candidateSide.Text!, "candidate"));
                liveSide = liveSide with { LiveModelLogProb = scores[0] };
                candidateSide = candidateSide with { LiveModelLogProb = scores[1] };
            }
            var sample = new ShadowSample
            {
                Id = pair.Request.Id,
                RolloutId = pair.State.RolloutId!,
                Phase = pair.State.Phase,
                Step = pair.State.Step,
                Task = pair.Request.Task,
                UserText = LastUserText(pair.Request),
                Live = liveSide,
                Candidate = candidateSide,
                At = DateTimeOffset.UtcNow,
            };
            var ack = await _js.PublishAsync(Judging.Samples(sample.RolloutId), sample,
                headers: new NATS.Client.Core.NatsHeaders { [Headers.RequestId] = pair.Request.Id });
            ack.EnsureSuccess();
            Interlocked.Increment(ref _compared);
            _metrics.Mirrors.WithLabels("compared").Inc();
        }
        catch (Exception e)
        {
            Interlocked.Increment(ref _failed);
            IngressLog.SampleNotRecorded(_logger, pair.Request.Id, e);
        }
        finally
        {
            Release(pair);
        }
    }

    internal void Release(ShadowPair pair)
    {
        if (_pairs.TryRemove(pair, out _))
            _inFlight.Release();
    }

    /// <summary>The user's last message (its first 500 characters), for the judge's answer-language check.</summary>
    private static string? LastUserText(InferRequest request)
    {
        var text = request.Messages?.LastOrDefault(m => m.Role == ChatRoles.User)?.Content;
        return text is { Length: > 500 } ? text[..500] : text;
    }

    /// <summary>
    /// Scores one answer of a chat pair on a worker of the live colour: the mean
    /// log-probability per token of the answer under the live model. Null when it could not be scored in time.
    /// </summary>
    private async Task<double?> ScoreAsync(ShadowPair pair, IReadOnlyList<ChatMessage> messages, string answer, string which)
    {
        var request = new InferRequest
        {
            Id = $"{pair.Request.Id}-score-{which}", SessionId = pair.Request.SessionId, Task = InferTasks.Score,
            Messages = messages, Input = answer, ReplyTo = "",
        };
        var start = await _client.TryStartAsync(InferenceQueue.Scoring, pair.LiveColour, request, _o.ScoreTimeout, CancellationToken.None);
        if (!start.Started)
            return null;
        await using var call = start.Call;
        await foreach (var reply in call.ReadAsync())
            if (reply.IsFinal)
                return reply.Result?.MeanLogProb;
        return null;
    }

    private async Task<SampleSide?> CandidateAsync(ShadowPair pair)
    {
        // Timeout to be taken (a copy still queued then is a capacity miss), and Timeout again to answer once taken.
        var copy = pair.Request with { Id = pair.Request.Id + "-shadow", Stream = false, ReplyTo = "", AnswerBudgetMs = (long)_o.Timeout.TotalMilliseconds };
        InferenceStart start;
        try
        {
            start = await _client.TryStartAsync(InferenceQueue.Shadow, pair.CandidateColour, copy, _o.Timeout, pair.Abandoned);
        }
        catch (OperationCanceledException) when (pair.Abandoned.IsCancellationRequested)
        {
            Abandoned();
            return null;
        }
        if (!start.Started)
        {
            Interlocked.Increment(ref _dropped);
            _metrics.Mirrors.WithLabels("dropped").Inc();
            return null;
        }
        var call = start.Call;
        Interlocked.Increment(ref _sent);
        _metrics.Mirrors.WithLabels("sent").Inc();
        await using (call)
        {
            // The live request's client gone without an answer, the copy is of no use: ending the call cancels it on the
            // candidate, which would otherwise spend its CPU and a mirror slot on it for up to twice the timeout.
            var replies = call.ReadAsync(pair.Abandoned);
            try
            {
                await foreach (var reply in replies)
                {
                    if (!reply.IsFinal)
                        continue;
                    if (reply.Error?.Code == ErrorCodes.ShadowYielded)
                    {
                        // Held back for live work on the candidate's machine until its deadline: a capacity miss, no sample.
                        Interlocked.Increment(ref _dropped);
                        _metrics.Mirrors.WithLabels("yielded").Inc();
                        return null;
                    }
                    return Side(pair.CandidateColour, reply) with { Taken = reply.Result is not null || call.Accepted is not null };
                }
            }
            catch (OperationCanceledException) when (pair.Abandoned.IsCancellationRequested)
            {
                Abandoned();
            }
        }
        return null;
    }

    private void Abandoned() => _metrics.Mirrors.WithLabels("abandoned").Inc();

    private static SampleSide Side(string colour, InferReply reply) => reply.Result is { } r
        ? new SampleSide
        {
            Colour = colour, Profile = r.ProfileVersion, Release = r.Release, ModelSha256 = r.ModelSha256, Text = r.Text, Label = r.Label, Confidence = r.Confidence, FinishReason = r.FinishReason,
            CompletionTokens = r.CompletionTokens, TimeToFirstTokenMs = r.TimeToFirstTokenMs, TotalMs = r.TotalMs, ComputeMs = r.ComputeMs, ComputedTokens = r.ComputedTokens, Work = r.Work, CostModel = r.CostModel,
        }
        : new SampleSide { Colour = colour, Error = reply.Error?.Code ?? ErrorCodes.InternalError };

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await Task.Delay(Timeout.Infinite, stoppingToken);
        }
        catch (OperationCanceledException)
        {
        }
        var pending = _pairs.Keys.Select(p => p.Completion).ToArray();
        if (pending.Length > 0)
            await Task.WhenAny(Task.WhenAll(pending), Task.Delay(TimeSpan.FromSeconds(5), CancellationToken.None));
    }
}

/// <summary>A live request and its mirrored copy, waiting for both answers.</summary>
public sealed class ShadowPair(ShadowMirror mirror, InferRequest request, string liveColour, string candidateColour, RolloutState state)
{
    private readonly TaskCompletionSource<InferReply?> _live = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _abandoned = new();
    private int _launched;

    /// <summary>Cancelled when the live side ended without an answer: the mirrored copy is then of no use.</summary>
    public CancellationToken Abandoned => _abandoned.Token;

    public InferRequest Request { get; } = request;
    public string LiveColour { get; } = liveColour;
    public string CandidateColour { get; } = candidateColour;
    public RolloutState State { get; } = state;
    public Task<InferReply?> Live => _live.Task;
    public Task Completion { get; private set; } = Task.CompletedTask;

    /// <summary>Starts the mirrored call once the live request is queued.</summary>
    public void Launch()
    {
        if (Interlocked.Exchange(ref _launched, 1) == 0)
            Completion = mirror.RunAsync(this);
    }

    public void SetLive(InferReply final) => _live.TrySetResult(final);

    /// <summary>The live side ended without an answer (client gone, not dispatched): no sample.</summary>
    public void Abandon()
    {
        if (_live.TrySetResult(null))
            _ = _abandoned.CancelAsync();
        if (Interlocked.Exchange(ref _launched, 1) == 0)
            mirror.Release(this);
    }
}
