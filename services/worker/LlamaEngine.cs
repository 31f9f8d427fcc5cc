using System.Security.Cryptography;
using System.Threading.Channels;
using LLama;
using LLama.Batched;
using LLama.Common;
using LLama.Exceptions;
using LLama.Native;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using QwenNats.Messaging;
using QwenNats.Messaging.Grammars;

namespace QwenNats.Worker;

/// <summary>
/// Loads one GGUF once and decodes every admitted request together in one batched context
/// (LLamaSharp <see cref="BatchedExecutor"/>): one decode loop, up to <see cref="WorkerOptions.Slots"/>
/// sequences per forward pass, the way llama.cpp's server runs its slots.
/// </summary>
public sealed class LlamaEngine : IAsyncDisposable
{
    private readonly WorkerOptions _options;
    private readonly ILogger<LlamaEngine> _logger;
    private readonly LLamaWeights _weights;
    // One native call per prompt instead of LLamaSharp's two; null where it could not be set up (then LLamaSharp's).
    private readonly NativeTokenizer? _tokenizer;
    private readonly ModelParams _params;
    private readonly Channel<EngineJob> _incoming = Channel.CreateUnbounded<EngineJob>(new UnboundedChannelOptions { SingleReader = true });
    private readonly CancellationTokenSource _stop = new();
    // Set under _gate when the engine is disposed.
    private bool _disposed;
    private readonly IReadOnlyList<int[]> _labelTokens;
    private BatchedExecutor _executor;
    private readonly ComputeCost _cost = new();
    private int _busy;

    // The decode loop's thread: one at a time; a newer generation takes the loop (and its requests) over.
    private readonly object _gate = new();
    private readonly object _loopLock = new();
    private readonly List<EngineJob> _active = [];
    // Mirrored jobs taken while they may not run (Worker:ShadowYield): not admitted yet, so nothing of theirs is decoded.
    private readonly List<EngineJob> _parked = [];
    private HostYield? _yield;
    private int _yieldChunk;
    private readonly TaskCompletionSource _loopDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    // Completed with the error when the decode loop stopped for good (see Broken).
    private readonly TaskCompletionSource<Exception> _broken = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile Exception? _failure;
    // Requests admitted since the warm-up (for Faults:DecodeLoopCrashAfter).
    private int _admitted;
    private bool _warmedUp;
    private CancellationTokenSource _wake = new();
    private bool _started, _candidate, _warmed;
    private int _generation, _baseNice, _threadNice, _threadId;

    public LlamaEngine(IOptions<WorkerOptions> options, PromptProfile profile, ILogger<LlamaEngine> logger)
        : this(options.Value, ModelSource.FromOptions(options.Value), profile, logger)
    {
    }

    /// <summary>Loads <paramref name="source"/>'s GGUF with <paramref name="profile"/>; throws with a reason when it cannot.</summary>
    public LlamaEngine(WorkerOptions options, ModelSource source, PromptProfile profile, ILogger<LlamaEngine> logger)
    {
        _options = options;
        _logger = logger;
        Profile = profile;
        if (string.IsNullOrWhiteSpace(source.Path))
            throw new InvalidOperationException("Worker:ModelPath is not set; point it (or QWEN_MODEL in deploy/local/up.sh) at a GGUF file.");
        if (!File.Exists(source.Path))
            throw new FileNotFoundException($"Model file '{source.Path}' does not exist.", source.Path);
        if (_options.Slots < 1 || _options.ContextSize < 16)
            throw new InvalidOperationException("Worker:Slots must be at least 1 and Worker:ContextSize at least 16.");

        var threads = _options.Threads > 0 ? _options.Threads : Environment.ProcessorCount;
        _params = new ModelParams(source.Path)
        {
            // Room for every slot's own tokens plus the shared prefixes (decoded once, forked by each request).
            ContextSize = (uint)(_options.ContextSize * (_options.Slots + 1)),
            BatchSize = (uint)_options.BatchSize,
            SeqMax = (uint)(_options.Slots * (1 + profile.Sentiment.Labels.Count) + 2),
            KVUnified = true,
            Threads = threads,
            BatchThreads = threads,
            GpuLayerCount = 0,
        };
        try
        {
            _weights = LLamaWeights.LoadFromFile(_params);
        }
        catch (Exception e) when (e is LoadWeightsFailedException or RuntimeError)
        {
            throw new InvalidOperationException($"llama.cpp cannot load '{source.Id}' ({source.Path}): {e.Message}", e);
        }
        try
        {
            _executor = new BatchedExecutor(_weights, _params);
        }
        catch
        {
            _weights.Dispose();
            throw;
        }
        _cost.Attach(_executor.Context.NativeHandle);
        _tokenizer = NativeTokenizer.TryBind(_weights);
        if (_tokenizer is null)
            EngineLog.TokenizerFallback(_logger);

        var hasTemplate = _weights.Metadata.ContainsKey("tokenizer.chat_template");
        try
        {
            Model = new ModelInfo(
                Id: source.Id,
                Path: Path.GetFullPath(source.Path),
                Sha256: source.Sha256 ?? HashFile(source.Path),
                SizeBytes: new FileInfo(source.Path).Length,
                TrainContext: _weights.ContextSize,
                HasChatTemplate: hasTemplate);
            IChatFormatter formatter = hasTemplate && profile.Template.UseModelTemplate
                ? new ModelChatFormatter(_weights)
                : new ProfileChatFormatter(profile.Template);
            Prompts = new PromptBuilder(profile, formatter);
            _labelTokens = profile.Sentiment.Labels.Select(l => Tokenize(l, addBos: false)).ToArray();
            Prefixes = new PrefixCache(new Dictionary<string, int[]>
            {
                [InferTasks.Chat] = PrefixCache.CommonPrefix(
                    Tokenize(Prompts.Chat([new ChatMessage(ChatRoles.User, "Alpha one")]), addBos: true),
                    Tokenize(Prompts.Chat([new ChatMessage(ChatRoles.User, "Zulu two")]), addBos: true)),
                [InferTasks.Sentiment] = PrefixCache.CommonPrefix(
                    Tokenize(Prompts.Sentiment("Alpha one"), addBos: true), Tokenize(Prompts.Sentiment("Zulu two"), addBos: true)),
            }, _options.PrefixCache);
            if (Prefixes.Enabled && Prefixes.TotalTokens > _options.ContextSize)
                throw new InvalidOperationException($"The profile's prompt prefixes ({Prefixes.TotalTokens} tokens) do not fit Worker:ContextSize.");
            if (_labelTokens.Any(t => t.Length == 0))
                throw new InvalidOperationException("A sentiment label tokenizes to nothing.");
        }
        catch
        {
            _executor.Dispose();
            _weights.Dispose();
            throw;
        }
        EngineLog.ModelLoaded(_logger,
            Model.Id, Model.SizeBytes, Model.Sha256[..12], profile.Version, _options.Slots, _options.ContextSize, threads, hasTemplate && profile.Template.UseModelTemplate ? "model" : "profile");
    }

    public ModelInfo Model { get; }

    /// <summary>The profile's shared prompt prefixes (system prompt), decoded once per context.</summary>
    public PrefixCache Prefixes { get; }
    public PromptProfile Profile { get; }
    public PromptBuilder Prompts { get; }
    public int Slots => _options.Slots;
    public int ContextSize => _options.ContextSize;
    public int Busy => Volatile.Read(ref _busy);

    /// <summary>
    /// Completes with the error when the decode loop has stopped for good: an error it could not recover from (a failed
    /// decode it cannot start a clean context after, a failed warm-up of the prompt prefixes). Every request it held then
    /// ends with <see cref="EngineStoppedException"/> instead of a reply, and so does every request submitted after: the
    /// engine answers nothing more and the worker serving it has to stop (<see cref="WorkerService"/>).
    /// </summary>
    public Task<Exception> Broken => _broken.Task;

    /// <summary>Fault injection (<see cref="FaultOptions.DecodeLoopCrashAfter"/>): the decode loop stops for good once it
    /// has admitted this many requests after the warm-up (0: never).</summary>
    public int CrashAfterAdmissions { get; init; }

    /// <summary>Raised with the number of prompt tokens a request took from the shared prefix.</summary>
    public event Action<int>? PrefixReused;

    /// <summary>Starts the decode loop on its own thread (see <see cref="SetCandidate"/> for its priority).</summary>
    public void Start()
    {
        lock (_gate)
        {
            if (_started) return;
            _started = true;
            // The priority a live decode thread has: the one of the thread that starts the engine (the worker's).
            _baseNice = ThreadNice.Current();
            StartDecodeThread();
        }
    }

    /// <summary>
    /// Whether this engine's colour is only a candidate (it answers mirrored copies, no live traffic): its decode
    /// thread, and so llama.cpp's compute threads it creates, then run <see cref="WorkerOptions.CandidateNice"/>
    /// nice levels lower, so on a shared box the live colour's decoding gets the CPU first. Every change moves the
    /// loop to a fresh thread between two steps (back to live, at normal priority: an unprivileged thread cannot
    /// lower its nice value again, and compute threads keep the value they were created with).
    /// Linux only; elsewhere, or with <see cref="WorkerOptions.CandidateNice"/> 0, nothing changes.
    /// </summary>
    public void SetCandidate(bool candidate)
    {
        lock (_gate)
        {
            if (_candidate == candidate) return;
            _candidate = candidate;
            // A fresh thread, created here (at the caller's priority), takes the loop over and sets its own nice value
            // before it decodes: so the compute threads llama.cpp starts from it (OpenMP) have that value too.
            if (_started && PrioritiesApply)
                StartDecodeThread();
        }
    }

    /// <summary>
    /// Mirrored jobs yield to live work on this machine (<see cref="WorkerOptions.ShadowYield"/>): while
    /// <paramref name="yield"/> says they may not run, they are not admitted, decoded or sampled, and their prompts are
    /// decoded <paramref name="chunk"/> tokens per step, so a pause starts within one short step.
    /// </summary>
    public void YieldTo(HostYield yield, int chunk)
    {
        lock (_gate)
        {
            if (_yield is not null) return;
            _yield = yield;
            _yieldChunk = chunk;
        }
        yield.Opened += Nudge;
    }

    /// <summary>Wakes the decode loop if it waits (mirrored work may run again).</summary>
    private void Nudge()
    {
        lock (_gate)
        {
            if (_disposed)
                return;
            var woken = _wake;
            _wake = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            woken.Cancel();
        }
    }

    /// <summary>Whether thread priorities are applied at all (Linux, <see cref="WorkerOptions.CandidateNice"/> above 0, decode on our thread).</summary>
    public bool PrioritiesApply => _options.CandidateNice > 0 && ThreadNice.Supported && InlineDecode.Available;

    /// <summary>The decode thread's kernel id and nice value now (0, 0 before it runs).</summary>
    public (int ThreadId, int Nice) DecodeThread => (Volatile.Read(ref _threadId), Volatile.Read(ref _threadNice));

    private int WantedNice => _candidate && PrioritiesApply ? Math.Min(19, _baseNice + _options.CandidateNice) : _baseNice;

    /// <summary>Under <see cref="_gate"/>: a new thread for the loop; the one running it (if any) hands over between two steps.</summary>
    private void StartDecodeThread()
    {
        var generation = ++_generation;
        var woken = _wake;
        _wake = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        woken.Cancel();
        var thread = new Thread(() => DecodeThreadMain(generation))
        {
            IsBackground = true,
            // What /proc/<pid>/task/<tid>/comm shows (15 characters at most).
            Name = $"decode {_options.Colour}",
        };
        thread.Start();
    }

    private void DecodeThreadMain(int generation)
    {
        try
        {
            lock (_loopLock)
            {
                if (generation != Volatile.Read(ref _generation)) return;
                ApplyNice();
                if (!_warmed)
                {
                    Prefixes.Warm(_executor, Decode);
                    CalibrateCost();
                    _warmed = true;
                    EngineLog.PrefixesShared(_logger,
                        Prefixes.Tokens[InferTasks.Chat].Length, Prefixes.Tokens[InferTasks.Sentiment].Length, Prefixes.Enabled ? "" : " (off: Worker:PrefixCache=false)");
                }
            }
            if (Run(generation))
                _loopDone.TrySetResult();
        }
        catch (Exception e)
        {
            Stopped(e);
            _loopDone.TrySetResult();
        }
    }

    /// <summary>
    /// The decode loop stopped with an error it could not recover from: nothing will be decoded again. Every request
    /// held (decoding, held back, queued) and every one submitted from now on ends with <see cref="EngineStoppedException"/>,
    /// which its worker does not answer: a queued request is redelivered by JetStream, one offered directly is queued
    /// again by its client once the worker has gone (a streamed answer already under way ends with <c>worker_lost</c>).
    /// </summary>
    private void Stopped(Exception error)
    {
        _failure = error;
        _incoming.Writer.TryComplete();
        EngineLog.LoopStopped(_logger, error);
        lock (_loopLock)
        {
            var held = _active.Concat(_parked).ToList();
            _active.Clear();
            _parked.Clear();
            while (_incoming.Reader.TryRead(out var queued))
                held.Add(queued);
            foreach (var job in held)
            {
                job.Abandon(new EngineStoppedException(error));
                Interlocked.Decrement(ref _busy);
            }
        }
        _broken.TrySetResult(error);
    }

    /// <summary>Sets this (new) thread's nice value to the wanted one (raising always works; lowering may be refused).</summary>
    private void ApplyNice()
    {
        if (!ThreadNice.Supported) return;
        int wanted;
        lock (_gate) wanted = WantedNice;
        var now = ThreadNice.Current();
        if (now != wanted && !ThreadNice.TrySet(wanted))
            EngineLog.NiceRefused(_logger, wanted, now);
        Volatile.Write(ref _threadNice, ThreadNice.Current());
        Volatile.Write(ref _threadId, ThreadNice.CurrentThreadId());
    }

    /// <summary>
    /// Measures decode steps of known shapes (prompts of several lengths at several depths, single tokens alone and
    /// batched) on scratch sequences, and fixes the step cost model's shape from them: requests' steps are then split
    /// and their work counted by that shape, while their own CPU time sets what they are charged. A controlled set of
    /// shapes pins the cost of depth apart from the cost of tokens, which traffic alone (say, one sentiment prompt
    /// length) cannot. About 200 tokens a round, repeated while the rounds are cheap (up to 0.3 s of CPU; the
    /// least time each shape took is used, the one least disturbed by other work on the machine); once per loaded
    /// model. Without a result the model learns from traffic instead.
    /// </summary>
    private void CalibrateCost()
    {
        if (!ThreadCpu.Supported) return;
        var text = Tokenize(string.Concat(Enumerable.Repeat("The quick brown fox jumps over the lazy dog; 一只敏捷的狐狸。 ", 8)), addBos: true);
        var room = Math.Min(128, _options.ContextSize - 8);
        if (text.Length == 0 || room < 24) return;
        // (sequence, tokens) per part: three scratch sequences a, b, c.
        (int Seq, int Tokens)[][] shapes =
        [
            [(0, room / 6)], [(0, 1)], [(0, 1)], [(1, room / 12)], [(0, 1), (1, 1)], [(0, 1), (1, 1)],
            [(0, room / 2)], [(0, 1)], [(2, room * 2 / 3)], [(1, 1), (2, 1)],
        ];
        var measured = shapes.Select(_ => new List<double>()).ToArray();
        var parts = new StepPart[shapes.Length];
        var spent = TimeSpan.Zero;
        var next = 0;
        for (var round = 0; round < 25 && (round == 0 || spent < TimeSpan.FromMilliseconds(300)); round++)
        {
            Conversation[] seqs = [_executor.Create(), _executor.Create(), _executor.Create()];
            try
            {
                for (var i = 0; i < shapes.Length; i++)
                {
                    var whole = default(StepPart);
                    foreach (var (seq, n) in shapes[i])
                    {
                        var tokens = new LLamaToken[n];
                        for (var t = 0; t < n; t++)
                            tokens[t] = text[next++ % text.Length];
                        seqs[seq].Prompt(tokens);
                        whole += StepPart.Of(n, seqs[seq].TokenCount - n);
                    }
                    _cost.Begin();
                    if (Decode(_executor) != DecodeResult.Ok) return;
                    var used = _cost.End();
                    spent += used;
                    parts[i] = whole;
                    measured[i].Add(used.TotalMilliseconds);
                }
            }
            finally
            {
                foreach (var seq in seqs)
                    seq.Dispose();
            }
        }
        for (var i = 0; i < shapes.Length; i++)
            _cost.Observe(parts[i], TimeSpan.FromMilliseconds(measured[i].Min()));
        _cost.Model.Freeze();
        EngineLog.CostCalibrated(_logger, measured[0].Count, _cost.Model.Describe());
    }

    private DecodeResult Decode(BatchedExecutor executor) =>
        InlineDecode.Available ? InlineDecode.Infer(executor) : executor.Infer(_stop.Token).GetAwaiter().GetResult();

    /// <summary>
    /// Runs one short request of each task through the decode loop before the worker takes work, so the
    /// first answers a client (or the judge) sees are not the ones that pay for code paths being compiled
    /// and memory being touched for the first time.
    /// </summary>
    public async Task WarmUpAsync(AnswerStamp stamp, CancellationToken ct)
    {
        var requests = new[]
        {
            new InferRequest { Id = "warmup-sentiment", Task = InferTasks.Sentiment, Input = "A fine warm-up sentence.", ReplyTo = "" },
            new InferRequest
            {
                Id = "warmup-chat", Task = InferTasks.Chat, Messages = [new ChatMessage(ChatRoles.User, "Hello")],
                Sampling = new SamplingParams { Temperature = 0, MaxTokens = 4, Seed = 1 }, ReplyTo = "",
            },
        };
        try
        {
            foreach (var request in requests)
            {
                var job = TryCreateJob(request, stamp, attempt: 1, queueMs: 0, ct, out var error)
                          ?? throw new InvalidOperationException($"The warm-up {request.Task} request was refused: {error?.Message}");
                Submit(job);
                await foreach (var _ in job.Output.ReadAllAsync(ct))
                {
                }
            }
        }
        finally
        {
            lock (_loopLock) _warmedUp = true;
        }
    }

    /// <summary>
    /// Checks a request and turns it into a job, or returns the error to answer with.
    /// </summary>
    public EngineJob? TryCreateJob(InferRequest request, AnswerStamp stamp, int attempt, double queueMs, CancellationToken cancel, out InferError? error)
    {
        error = null;
        string prompt;
        switch (request.Task)
        {
            case InferTasks.Chat:
                if (request.Messages is not { Count: > 0 })
                    return Refuse(ErrorCodes.EmptyConversation, "The conversation has no messages.", out error);
                if (request.Messages.FirstOrDefault(m => !ChatRoles.IsKnown(m.Role)) is { } bad)
                    return Refuse(ErrorCodes.InvalidRequest, $"Unknown role '{bad.Role}'.", out error);
                if (request.Messages[^1].Role == ChatRoles.Assistant)
                    return Refuse(ErrorCodes.InvalidRequest, "The last message must not be the assistant's.", out error);
                prompt = Prompts.Chat(request.Messages);
                break;
            case InferTasks.Completion:
                if (request.Messages is { Count: > 0 })
                    return Refuse(ErrorCodes.InvalidRequest, "A completion takes its prompt in 'input', not messages.", out error);
                if (string.IsNullOrEmpty(request.Input))
                    return Refuse(ErrorCodes.InvalidRequest, "The completion's prompt (input) is empty.", out error);
                prompt = PromptBuilder.Raw(request.Input);
                break;
            case InferTasks.Sentiment:
                if (string.IsNullOrWhiteSpace(request.Input))
                    return Refuse(ErrorCodes.InvalidRequest, "The input text is empty.", out error);
                prompt = Prompts.Sentiment(request.Input);
                break;
            case InferTasks.Score:
                if (request.Messages is not { Count: > 0 })
                    return Refuse(ErrorCodes.EmptyConversation, "The conversation to score an answer in has no messages.", out error);
                if (request.Messages.FirstOrDefault(m => !ChatRoles.IsKnown(m.Role)) is { } unknown)
                    return Refuse(ErrorCodes.InvalidRequest, $"Unknown role '{unknown.Role}'.", out error);
                if (string.IsNullOrEmpty(request.Input))
                    return Refuse(ErrorCodes.InvalidRequest, "There is no answer to score (input is empty).", out error);
                prompt = Prompts.Chat(request.Messages);
                break;
            default:
                return Refuse(ErrorCodes.UnknownTask, $"Unknown task '{request.Task}'; expected 'chat', 'completion', 'sentiment' or 'score'.", out error);
        }

        var tokens = Tokenize(prompt, addBos: true);
        var longestLabel = _labelTokens.Max(t => t.Length);
        var room = _options.ContextSize - tokens.Length - (request.Task == InferTasks.Sentiment ? longestLabel : 1);
        var trimmed = 0;
        if (request.Task == InferTasks.Chat && Profile.Chat.History.Overflow == HistoryPolicy.DropOldest)
        {
            // Leave room for an answer: drop the oldest turns (never the system prompt or the newest message).
            var wanted = Math.Min(Profile.Chat.History.AnswerRoom, request.Sampling.MaxTokens ?? Profile.Chat.MaxTokens);
            var messages = request.Messages!;
            while (room < wanted && Trim(messages) is { } shorter)
            {
                trimmed += messages.Count - shorter.Count;
                messages = shorter;
                tokens = Tokenize(Prompts.Chat(messages), addBos: true);
                room = _options.ContextSize - tokens.Length - 1;
            }
        }
        if (tokens.Length == 0 || room < 0)
            return Refuse(ErrorCodes.ContextLengthExceeded,
                $"The prompt is {tokens.Length} tokens; this worker's context holds {_options.ContextSize} per request.", out error);

        if (request.Task == InferTasks.Score)
        {
            var answer = Tokenize(request.Input!, addBos: false);
            if (answer.Length == 0)
                return Refuse(ErrorCodes.InvalidRequest, "The answer to score tokenizes to nothing.", out error);
            if (tokens.Length + answer.Length > _options.ContextSize)
                return Refuse(ErrorCodes.ContextLengthExceeded,
                    $"The conversation and answer are {tokens.Length + answer.Length} tokens; this worker's context holds {_options.ContextSize} per request.", out error);
            return new ScoreJob(request, tokens, answer, stamp, attempt, queueMs, cancel);
        }

        if (request.Task == InferTasks.Sentiment)
            return new SentimentJob(request, tokens, stamp, attempt, queueMs, cancel, Profile.Sentiment.Labels, _labelTokens);

        var s = request.Sampling;
        var vocab = _weights.Vocab.Count;
        if (s.LogitBias?.Keys.Where(t => t < 0 || t >= vocab).Order().FirstOrDefault(-1) is >= 0 and var outside)
            return Refuse(ErrorCodes.InvalidRequest,
                $"logit_bias names token {outside}, which is not in this model's vocabulary (token ids 0 to {vocab - 1}).", out error);
        if (s.PresencePenalty is < -2 or > 2 || s.FrequencyPenalty is < -2 or > 2)
            return Refuse(ErrorCodes.InvalidRequest, "presence_penalty and frequency_penalty must be between -2 and 2.", out error);
        string? grammar = null;
        if (s.ResponseFormat is { } format)
        {
            if (!JsonGrammar.TryFromResponseFormat(format, out var gbnf, out var problem))
                return Refuse(ErrorCodes.InvalidRequest, $"{problem!.Param}: {problem.Message}", out error);
            grammar = gbnf;
        }
        var settings = new ChatSettings(
            Temperature: s.Temperature ?? Profile.Chat.Temperature,
            TopP: s.TopP ?? Profile.Chat.TopP,
            Seed: s.Seed,
            MaxTokens: Math.Min(s.MaxTokens ?? Profile.Chat.MaxTokens, room + 1),
            // A raw completion has no chat template, so the template's stop strings do not apply to it.
            Stop: request.Task == InferTasks.Completion ? s.Stop ?? []
                : s.Stop is { Count: > 0 } ? [.. Profile.Chat.Stop, .. s.Stop] : Profile.Chat.Stop,
            ContextSize: _options.ContextSize,
            PresencePenalty: s.PresencePenalty ?? 0,
            FrequencyPenalty: s.FrequencyPenalty ?? 0,
            LogitBias: s.LogitBias,
            Grammar: grammar,
            Logprobs: s.Logprobs == true,
            TopLogprobs: Math.Clamp(s.TopLogprobs ?? 0, 0, 20));
        return new ChatJob(request, tokens, stamp, attempt, queueMs, cancel, settings) { TrimmedMessages = trimmed };
    }

    /// <summary>
    /// The conversation without its oldest turn: the first message that is neither a system message nor the
    /// last one, and the assistant's answers right after it (so what remains starts with a user's turn). Null
    /// when nothing more can go.
    /// </summary>
    public static IReadOnlyList<ChatMessage>? Trim(IReadOnlyList<ChatMessage> messages)
    {
        var first = -1;
        for (var i = 0; i < messages.Count - 1; i++)
            if (messages[i].Role != ChatRoles.System) { first = i; break; }
        if (first < 0)
            return null;
        var end = first + 1;
        while (end < messages.Count - 1 && messages[end].Role == ChatRoles.Assistant)
            end++;
        return [.. messages.Take(first), .. messages.Skip(end)];
    }

    private static EngineJob? Refuse(string code, string message, out InferError error)
    {
        error = new InferError { Id = "", Code = code, Message = message };
        return null;
    }

    public void Submit(EngineJob job)
    {
        Interlocked.Increment(ref _busy);
        if (!_incoming.Writer.TryWrite(job))
        {
            Interlocked.Decrement(ref _busy);
            if (_failure is { } failure)
                job.Abandon(new EngineStoppedException(failure));
            else
                job.Fail(ErrorCodes.Overloaded, "The worker is shutting down.");
        }
    }

    private int[] Tokenize(string text, bool addBos) =>
        _tokenizer?.Tokenize(text, addBos) ?? NativeTokenizer.Reference(_weights, text, addBos, special: true);

    /// <summary>The decode loop; true when it ended (stop), false when a newer thread took it over.</summary>
    private bool Run(int generation)
    {
        var active = _active;
        var stop = _stop.Token;
        while (!stop.IsCancellationRequested)
        {
            CancellationToken wake;
            lock (_gate) wake = _wake.Token;
            lock (_loopLock)
            {
                if (generation != Volatile.Read(ref _generation))
                    return false;
                if (_failure is not null)
                    return false; // stopped for good by the thread before this one
                if (CrashAfterAdmissions > 0 && _admitted >= CrashAfterAdmissions)
                    throw new InvalidOperationException($"Injected fault: the decode loop stops after {CrashAfterAdmissions} requests (Faults:DecodeLoopCrashAfter).");
                try
                {
                    if (Step(active, stop))
                        continue;
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    break;
                }
                catch (Exception e)
                {
                    EngineLog.LoopFailed(_logger, active.Count, e);
                    Reset(active, ErrorCodes.InternalError, "The worker failed while generating.");
                    continue;
                }
            }
            // Nothing to do: wait for work (or a stop, a change of priority, mirrored work allowed again) outside the
            // loop lock; with jobs held back, look again now and then for their deadlines and cancellations.
            try
            {
                var waiting = _incoming.Reader.WaitToReadAsync(wake).AsTask();
                if (_parked.Count > 0 || active.Any(j => j.Paused))
                    waiting.Wait(HeldBackRecheck);
                else
                    waiting.GetAwaiter().GetResult();
            }
            catch (OperationCanceledException)
            {
            }
            catch (AggregateException e) when (e.InnerException is OperationCanceledException)
            {
            }
        }
        lock (_loopLock)
        {
            if (generation != Volatile.Read(ref _generation))
                return false;
            foreach (var job in active)
                End(job, ErrorCodes.Cancelled, "The worker is shutting down.");
            active.Clear();
            foreach (var job in _parked)
                End(job, ErrorCodes.Cancelled, "The worker is shutting down.");
            _parked.Clear();
            while (_incoming.Reader.TryRead(out var queued))
                End(queued, ErrorCodes.Cancelled, "The worker is shutting down.");
        }
        return true;
    }

    /// <summary>One step of the loop: admit queued requests, decode once, sample. False when there is nothing to do.</summary>
    private bool Step(List<EngineJob> active, CancellationToken stop)
    {
        var mirrorsRun = _yield?.MayRunMirrors ?? true;
        var progressed = false;
        for (var i = _parked.Count - 1; i >= 0; i--)
            if (_parked[i].Cancel.IsCancellationRequested || PastDeadline(_parked[i]))
            {
                var job = _parked[i];
                _parked.RemoveAt(i);
                EndHeldBack(job);
                progressed = true;
            }
        while (mirrorsRun && _parked.Count > 0 && active.Count < _options.Slots)
        {
            var job = _parked[0];
            _parked.RemoveAt(0);
            job.Resume();
            Admit(active, job);
            progressed = true;
        }
        while (active.Count < _options.Slots && _incoming.Reader.TryRead(out var job))
        {
            progressed = true;
            if (job.Mirrored && _yield is not null)
            {
                job.PromptChunk = _yieldChunk;
                if (!mirrorsRun)
                {
                    job.Pause();
                    _parked.Add(job);
                    continue;
                }
            }
            Admit(active, job);
        }
        if (active.Count == 0)
            return progressed;
        foreach (var job in active)
            if (job.Mirrored && _yield is not null)
            {
                if (mirrorsRun) job.Resume();
                else job.Pause();
            }

        if (_executor.BatchQueueCount > 0 && active.Any(j => j.RequiresInference && (!j.Paused || PastDeadline(j) || j.Cancel.IsCancellationRequested)))
        {
            // Tokens a held-back job queued before it was paused are decoded with the others' (they are in the batch); a
            // held-back job cancelled or out of time is decoded once more too, so the check below can end it and free its slot.
            var participants = active.Where(j => j.RequiresInference).ToArray();
            progressed = true;
            _cost.Begin();
            var result = Decode(_executor);
            _cost.Charge(participants, _cost.End());
            if (result != DecodeResult.Ok)
            {
                EngineLog.DecodeFailed(_logger, result.ToString(), active.Count);
                Reset(active, result == DecodeResult.NoKvSlot ? ErrorCodes.Overloaded : ErrorCodes.InternalError,
                    result == DecodeResult.NoKvSlot ? "The worker ran out of KV cache; retry." : $"Decoding failed ({result}).");
                return true;
            }
        }

        for (var i = active.Count - 1; i >= 0; i--)
        {
            var job = active[i];
            if (job.RequiresInference)
                continue;
            bool done;
            if (job.Paused && (job.Cancel.IsCancellationRequested || PastDeadline(job)))
            {
                progressed = true;
                active.RemoveAt(i);
                EndHeldBack(job);
                continue;
            }
            if (job.Paused)
                continue;
            progressed = true;
            if (job.Cancel.IsCancellationRequested)
            {
                job.Fail(ErrorCodes.Cancelled, "The request was cancelled.");
                done = true;
            }
            else if (PastDeadline(job))
            {
                job.Fail(ErrorCodes.DeadlineExceeded, "The request's deadline passed during generation.");
                done = true;
            }
            else if (job.HasPromptLeft)
            {
                job.PromptMore();
                done = false;
            }
            else
            {
                try
                {
                    var cpuBefore = ThreadCpu.Now();
                    done = job.Step(_executor);
                    ComputeCost.ChargeSampling(job, ThreadCpu.Now() - cpuBefore);
                }
                catch (Exception e)
                {
                    EngineLog.RequestFailed(_logger, job.Request.Id, e);
                    job.Fail(ErrorCodes.InternalError, "The worker failed while generating.");
                    done = true;
                }
            }
            if (done)
            {
                active.RemoveAt(i);
                Interlocked.Decrement(ref _busy);
            }
        }
        return progressed;
    }

    /// <summary>How often the loop looks at held-back jobs for deadlines and cancellations while it has nothing to run.</summary>
    private static readonly TimeSpan HeldBackRecheck = TimeSpan.FromMilliseconds(100);

    private static bool PastDeadline(EngineJob job) =>
        job.Request.DeadlineUnixMs > 0 && DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() > job.Request.DeadlineUnixMs;

    private void Admit(List<EngineJob> active, EngineJob job)
    {
        try
        {
            job.CostModel = _cost.Model.Measured;
            job.Admit(_executor, Prefixes);
            active.Add(job);
            if (_warmedUp) _admitted++;
            if (job.ReusedTokens > 0) PrefixReused?.Invoke(job.ReusedTokens);
        }
        catch (Exception e)
        {
            EngineLog.AdmitFailed(_logger, job.Request.Id, e);
            End(job, ErrorCodes.InternalError, "The worker could not start this request.");
        }
    }

    /// <summary>A held-back mirrored job cancelled or out of time: the wait was for live work, so its deadline ends it as
    /// a capacity miss (<see cref="ErrorCodes.ShadowYielded"/>), not as the candidate's failure to answer.</summary>
    private void EndHeldBack(EngineJob job)
    {
        if (job.Cancel.IsCancellationRequested)
            End(job, ErrorCodes.Cancelled, "The request was cancelled.");
        else
            End(job, ErrorCodes.ShadowYielded, $"Held back {job.YieldedMs:F0} ms for live work on this machine until the deadline passed (Worker:ShadowYield).");
    }

    private void End(EngineJob job, string code, string message)
    {
        job.Fail(code, message);
        Interlocked.Decrement(ref _busy);
    }

    /// <summary>After a failed decode the batch queue may hold tokens of any job: fail them all and start a clean context.</summary>
    private void Reset(List<EngineJob> active, string code, string message)
    {
        foreach (var job in active)
            End(job, code, message);
        active.Clear();
        _executor.Dispose();
        _executor = new BatchedExecutor(_weights, _params);
        _cost.Attach(_executor.Context.NativeHandle);
        try
        {
            Prefixes.Warm(_executor, Decode);
        }
        catch (InvalidOperationException e)
        {
            EngineLog.PrefixesNotShared(_logger, e);
        }
    }

    public async ValueTask DisposeAsync()
    {
        HostYield? yielding;
        lock (_gate)
        {
            _disposed = true;
            yielding = _yield;
        }
        // The machine's yield signal outlives this engine (a release switch retires it): it must not call back into it.
        if (yielding is not null)
            yielding.Opened -= Nudge;
        _incoming.Writer.TryComplete();
        await _stop.CancelAsync();
        bool started;
        lock (_gate) started = _started;
        if (started)
            try { await _loopDone.Task; } catch (OperationCanceledException) { }
        _executor.Dispose();
        _weights.Dispose();
        _cost.Dispose();
        _stop.Dispose();
    }

    private static string HashFile(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }
}

/// <summary>The GGUF's own chat template (llama.cpp's template engine).</summary>
public sealed class ModelChatFormatter(LLamaWeights weights) : IChatFormatter
{
    public string Format(IReadOnlyList<ChatMessage> messages)
    {
        var template = new LLamaTemplate(weights) { AddAssistant = true };
        foreach (var m in messages)
            template.Add(m.Role, m.Content);
        return System.Text.Encoding.UTF8.GetString(template.Apply());
    }
}
