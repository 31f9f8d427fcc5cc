using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using LLama;
using LLama.Batched;
using LLama.Common;
using LLama.Native;
using LLama.Sampling;
using NATS.Client.Core;
using QwenNats.Messaging;
using QwenNats.Messaging.Internal;
using QwenNats.ServiceDefaults;
using QwenNats.Worker;

namespace QwenNats.Bench;

/// <summary>
/// <c>perf</c>: the performance comparisons of bench/README.md, each measured side by side in one run and
/// reported as differences or ratios — ingress overhead against in-process LLamaSharp, worker tokens/s
/// against a plain LLamaSharp decode loop, concurrent streams with slots on and off, live latency under
/// shadow mirroring, and resident memory. Starts its own nats-server and service processes.
/// </summary>
internal static class Perf
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    public static async Task<int> RunAsync(string[] args)
    {
        // llama.cpp's own log lines only when they are warnings or worse.
        NativeLibraryConfig.All.WithLogCallback((level, message) =>
        {
            if (level is LLamaLogLevel.Warning or LLamaLogLevel.Error) Console.Error.Write(message);
        });
        var o = Args.Parse(args);
        var tiny = o["tiny"];
        var q4 = o["qwen"];
        var q8 = o.GetValueOrDefault("qwen8");
        var threads = int.Parse(o.GetValueOrDefault("threads", "1"), C);
        var quick = o.ContainsKey("quick") && o["quick"] == "true";
        var reps = quick ? 4 : 12;
        var genTokens = quick ? 12 : 48;
        var rateTokens = quick ? 12 : 96;
        var levels = quick ? new[] { 1, 2 } : new[] { 1, 2, 4, 8 };
        // Section 4: live requests per setting (at least), per block, chat length, pause between blocks; --only shadow runs it alone.
        var shadowRequests = int.Parse(o.GetValueOrDefault("shadow-requests", quick ? "12" : "200"), C);
        var shadowBlock = int.Parse(o.GetValueOrDefault("shadow-block", quick ? "4" : "20"), C);
        var shadowChatTokens = int.Parse(o.GetValueOrDefault("shadow-chat-tokens", "4"), C);
        var shadowGapMs = int.Parse(o.GetValueOrDefault("shadow-gap-ms", "1500"), C);
        var onlyShadow = o.GetValueOrDefault("only") == "shadow";
        // The mirrored fractions compared (the first is the baseline); 0,0.2,1 adds the 20 % row at half as much time again.
        var shadowFractions = o.GetValueOrDefault("shadow-fractions", "0,1").Split(',').Select(f => double.Parse(f, C)).ToArray();
        // How the candidate shares the machine, one system each (its own baseline row): priority = a lower OS priority for
        // its decode threads only; yield = also Worker:ShadowYield (mirrors run only while live work on the machine is idle).
        var shadowModes = o.GetValueOrDefault("shadow-modes", "priority,yield").Split(',', StringSplitOptions.RemoveEmptyEntries);
        var yieldChunk = o.GetValueOrDefault("yield-chunk", "16");
        var profile = Path.Combine(Proc.Root, "deploy", "profiles", "v1.json");
        var md = new StringBuilder();
        var qName = Path.GetFileNameWithoutExtension(q4);
        var memory = new List<(string What, long Bytes)>();
        var total = Stopwatch.StartNew();

        if (!onlyShadow)
        {
            // 1. Ingress overhead, and the prefix cache's effect, on both models.
            md.AppendLine("## 1. Ingress overhead (HTTP → ingress → NATS → worker, against the same calls in-process)").AppendLine();
            md.AppendLine(C, $"Sequential requests, {reps} of each, greedy; worker and in-process engine use {threads} thread(s). Prefix cache off on both sides so the comparison is like for like; its effect is the last column (the worker with it on).").AppendLine();
            md.AppendLine("| model | call | in-process p50 ms | p99 | through the system p50 ms | p99 | added p50 ms | added p99 ms | system with prefix cache p50 ms |");
            md.AppendLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
            double workerRate = 0, directRate = 0;
            foreach (var (label, model) in new[] { ("stories260K (tiny)", tiny), (qName, q4) })
            {
                // In-process and through-the-system calls alternate, so both see the same machine conditions.
                await using (var rig = await Rig.StartAsync([("blue", model, 1, false)], threads))
                {
                    using var direct = new Direct(model, profile, threads);
                    const string Input = "The weather is lovely today and I feel great";
                    var (dSent, sSent) = await InterleaveAsync(reps, () => direct.SentimentAsync(Input), () => rig.SentimentAsync(Input));
                    var (dChat, sChat) = await InterleaveAsync(reps, () => direct.ChatAsync("Tell me a short story", 8), () => rig.ChatAsync("Tell me a short story", 8));
                    md.AppendLine(C, $"| {label} | sentiment | {P(dSent, .5):F1} | {P(dSent, .99):F1} | {P(sSent, .5):F1} | {P(sSent, .99):F1} | {P(sSent, .5) - P(dSent, .5):F1} | {P(sSent, .99) - P(dSent, .99):F1} | |");
                    md.AppendLine(C, $"| {label} | chat, 8 tokens | {P(dChat, .5):F1} | {P(dChat, .99):F1} | {P(sChat, .5):F1} | {P(sChat, .99):F1} | {P(sChat, .5) - P(dChat, .5):F1} | {P(sChat, .99) - P(dChat, .99):F1} | |");
                    if (model == q4)
                    {
                        var d = new List<double>();
                        var w = new List<double>();
                        for (var i = 0; i < (quick ? 2 : 5); i++)
                        {
                            d.Add(await direct.TokensPerSecondAsync("Tell me a short story", rateTokens));
                            w.Add((await rig.StreamAsync("Tell me a short story", rateTokens)).TokensPerSecond);
                        }
                        (directRate, workerRate) = (Median(d), Median(w));
                    }
                }
                await using (var rig = await Rig.StartAsync([("blue", model, 1, true)], threads))
                {
                    var cached = await TimeAsync(reps, () => rig.SentimentAsync("The weather is lovely today and I feel great"));
                    md.AppendLine(C, $"| {label} | sentiment, prefix cache on | | | | | | | {P(cached, .5):F1} |");
                }
            }
            md.AppendLine();

            // 2. Single-stream generation speed.
            md.AppendLine("## 2. Worker tokens/s for one stream against a plain LLamaSharp decode loop").AppendLine();
            md.AppendLine("Generation speed after the first token, greedy, median of alternating runs; the worker's is measured by the client from the first streamed token to the end of the stream.").AppendLine();
            md.AppendLine("| model | threads | tokens | plain LLamaSharp tokens/s | worker through the system tokens/s | ratio |");
            md.AppendLine("| --- | ---: | ---: | ---: | ---: | ---: |");
            md.AppendLine(C, $"| {qName} | {threads} | {rateTokens} | {directRate:F2} | {workerRate:F2} | **{workerRate / directRate:F3}** |").AppendLine();

            // 3. Concurrent streams, slots on and off.
            md.AppendLine("## 3. Concurrent streams: aggregate tokens/s and p95 time to first token").AppendLine();
            md.AppendLine(C, $"{qName}, one worker, {threads} thread(s), {genTokens / 2} tokens per stream; slots on = 4 sequences per forward pass, off = 1.").AppendLine();
            md.AppendLine("| streams | slots off tokens/s | slots on tokens/s | gain | slots off p95 TTFT ms | slots on p95 TTFT ms |");
            md.AppendLine("| ---: | ---: | ---: | ---: | ---: | ---: |");
            var rows = new Dictionary<int, (double Tps, double Ttft)[]>();
            foreach (var slots in new[] { 1, 4 })
            {
                await using var rig = await Rig.StartAsync([("blue", q4, slots, true)], threads);
                await rig.StreamAsync("warm up", 2);
                foreach (var c in levels)
                {
                    var clock = Stopwatch.StartNew();
                    var runs = await Task.WhenAll(Enumerable.Range(0, c).Select(i => rig.StreamAsync($"Story number {i}", genTokens / 2)));
                    var tps = runs.Sum(r => r.Tokens) / clock.Elapsed.TotalSeconds;
                    rows.TryAdd(c, new (double, double)[2]);
                    rows[c][slots == 1 ? 0 : 1] = (tps, P(runs.Select(r => r.TtftMs).ToList(), .95));
                }
                memory.Add(($"worker, {qName}, {slots} slot(s), after load", rig.Workers[0].Resident()));
            }
            foreach (var (c, r) in rows.OrderBy(r => r.Key))
                md.AppendLine(C, $"| {c} | {r[0].Tps:F2} | {r[1].Tps:F2} | {r[1].Tps / r[0].Tps:F2}x | {r[0].Ttft:F0} | {r[1].Ttft:F0} |");
            md.AppendLine();
        }

        var section4 = Stopwatch.StartNew();
        // 4. Live latency under shadow mirroring, candidate on the same machine. One ingress per setting (the share of
        // live requests it mirrors), all in the same Shadow rollout; the clients take turns at them in short blocks
        // until every setting has its requests, so each sees the same machine over the same minutes.
        // A whole percentage with its sign; one that rounds to 0 is "+0", never "-0".
        static string Signed(double percent) => Math.Round(percent) is var r && r == 0 ? "+0" : r.ToString("+0;-0", CultureInfo.InvariantCulture);
        static string Pct(double f) => f.ToString("0.#%", CultureInfo.InvariantCulture).Replace("%", " %", StringComparison.Ordinal);
        md.AppendLine(C, $"## 4. Live latency with shadow mirroring at {string.Join(", ", shadowFractions.Select(Pct))}").AppendLine();
        md.AppendLine(C, $"{qName}; blue (live) and green (candidate, in Shadow) workers on this machine, 2 slots and {threads} thread(s) each; 2 clients in a closed loop of sentiment and {shadowChatTokens}-token chats, taking turns at {shadowFractions.Length} ingresses that mirror {string.Join(", ", shadowFractions.Select(Pct))} of live requests, in blocks of {shadowBlock} requests with a {shadowGapMs} ms pause between blocks, until each setting has at least {shadowRequests} live requests. One system per way the candidate shares the machine, each with its own first row: *priority*, its decode threads at a lower OS priority (`Worker:CandidateNice`); *yield*, also `Worker:ShadowYield` (mirrored work only while live work on the machine is idle, paused between steps, prompts {yieldChunk} tokens per step).").AppendLine();
        md.AppendLine("| candidate | mirroring | live requests | live p50 ms | live p95 ms | p95 vs first row | mirrored | compared | dropped |");
        md.AppendLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var mode in shadowModes)
        {
            var modeSettings = mode == "yield"
                ? new Dictionary<string, string> { ["Worker:ShadowYield"] = "true", ["Worker:ShadowYieldChunk"] = yieldChunk }
                : mode == "priority" ? new Dictionary<string, string>() : throw new ArgumentException($"--shadow-modes: unknown mode '{mode}' (priority, yield)");
            await using var rig = await Rig.StartAsync([("blue", q4, 2, true), ("green", q4, 2, true)], threads, controlPlane: true, shadowFractions: shadowFractions, settings: modeSettings);
            var last = mode == shadowModes[^1];
            if (last)
            {
                memory.Add(("ingress, idle", rig.Ingresses[0].Resident()));
                memory.Add(("judge, idle", rig.Judge!.Resident()));
                memory.Add(("promoter, idle", rig.Promoter!.Resident()));
                memory.Add(("nats-server, idle", rig.Nats.Resident()));
            }
            await rig.SentimentAsync("warm up");
            await rig.CtlAsync("start", "{\"candidate\":\"green\",\"reason\":\"bench\"}");
            var settings = Enumerable.Range(0, shadowFractions.Length).ToArray();
            var (rows4, peaks) = await rig.InterleavedAsync(settings, shadowRequests, shadowBlock, shadowChatTokens, TimeSpan.FromMilliseconds(shadowGapMs), memoryOf: settings[^1]);
            await rig.CtlAsync("abort", "{\"reason\":\"bench done\"}");
            var first = rows4[0];
            foreach (var (f, row) in shadowFractions.Zip(rows4))
                md.AppendLine(C, $"| {mode} | {Pct(f)} | {row.Ms.Count} | {P(row.Ms, .5):F0} | {P(row.Ms, .95):F0} | {Signed((P(row.Ms, .95) / P(first.Ms, .95) - 1) * 100)} % | {row.Sent} | {row.Compared} | {row.Dropped} |");
            if (last)
            {
                memory.Add(($"ingress, under load with {Pct(shadowFractions[^1])} mirroring", peaks["ingress"]));
                memory.Add(("judge, under load", peaks["judge"]));
                memory.Add(("promoter, under load", peaks["promoter"]));
                memory.Add(("nats-server, under load", peaks["nats-server"]));
            }
        }
        md.AppendLine();
        md.AppendLine(C, $"Section 4 took {section4.Elapsed.TotalMinutes:F1} minutes.").AppendLine();
        if (onlyShadow)
        {
            Console.WriteLine(md.ToString());
            return 0;
        }

        // 5. Memory.
        foreach (var (label, model) in new[] { ("stories260K", tiny), (q8 is null ? "" : Path.GetFileNameWithoutExtension(q8), q8) })
        {
            if (model is null) continue;
            await using var rig = await Rig.StartAsync([("blue", model, 4, true)], threads);
            await rig.ChatAsync("hello", 8);
            memory.Add(($"worker, {label}, 4 slots, after load", rig.Workers[0].Resident()));
        }
        md.AppendLine("## 5. Resident memory").AppendLine();
        md.AppendLine(C, $"Model files: stories260K {new FileInfo(tiny).Length / 1048576.0:F1} MiB, {qName} {new FileInfo(q4).Length / 1048576.0:F0} MiB{(q8 is null ? "" : $", {Path.GetFileNameWithoutExtension(q8)} {new FileInfo(q8).Length / 1048576.0:F0} MiB")}. Workers use 512-token contexts per slot here.").AppendLine();
        md.AppendLine("| process | resident MiB |");
        md.AppendLine("| --- | ---: |");
        foreach (var (what, bytes) in memory)
            md.AppendLine(C, $"| {what} | {bytes / 1048576.0:F0} |");
        var one = memory.FirstOrDefault(m => m.What.Contains($"{qName}, 1 slot", StringComparison.Ordinal)).Bytes;
        var four = memory.FirstOrDefault(m => m.What.Contains($"{qName}, 4 slot", StringComparison.Ordinal)).Bytes;
        md.AppendLine().AppendLine(C, $"Per extra slot (q4_k_m, 512 tokens each): {(four - one) / 3.0 / 1048576.0:F1} MiB.");
        md.AppendLine().AppendLine(C, $"All of the above took {total.Elapsed.TotalMinutes:F1} minutes.");
        Console.WriteLine(md.ToString());
        return 0;
    }

    private static double Median(IReadOnlyList<double> xs) => P(xs, 0.5);

    /// <summary>One warm-up call, then <paramref name="n"/> timed calls in milliseconds.</summary>
    private static async Task<List<double>> TimeAsync(int n, Func<Task> call)
    {
        await call();
        var list = new List<double>();
        for (var i = 0; i < n; i++)
        {
            var clock = Stopwatch.StartNew();
            await call();
            list.Add(clock.Elapsed.TotalMilliseconds);
        }
        return list;
    }

    private static async Task<(List<double> A, List<double> B)> InterleaveAsync(int n, Func<Task> a, Func<Task> b)
    {
        await a();
        await b();
        var (ta, tb) = (new List<double>(), new List<double>());
        for (var i = 0; i < n; i++)
        {
            var clock = Stopwatch.StartNew();
            await a();
            ta.Add(clock.Elapsed.TotalMilliseconds);
            clock.Restart();
            await b();
            tb.Add(clock.Elapsed.TotalMilliseconds);
        }
        return (ta, tb);
    }

    public static double P(IReadOnlyList<double> values, double q) => Percentiles.Of(values, q);

    private static async Task<List<double>> RepeatAsync(int n, Func<Task<double>> f)
    {
        var list = new List<double>();
        for (var i = 0; i < n; i++) list.Add(await f());
        return list;
    }

    /// <summary>The same prompts and decoding as the worker, called in-process on LLamaSharp without any service around it.</summary>
    private sealed class Direct : IDisposable
    {
        private readonly LLamaWeights _weights;
        private readonly BatchedExecutor _executor;
        private readonly PromptBuilder _prompts;
        private readonly int[][] _labelTokens;
        private Conversation? _sentiment;
        private Conversation? _chat;

        /// <summary>One long-lived sequence per kind of call, emptied before each call (what a plain loop over one context does).</summary>
        private Conversation Fresh(ref Conversation? conversation)
        {
            conversation ??= _executor.Create();
            if (conversation.TokenCount > 0) conversation.Rewind(conversation.TokenCount);
            return conversation;
        }

        public Direct(string model, string profilePath, int threads)
        {
            var p = new ModelParams(model) { ContextSize = 2048, BatchSize = 512, SeqMax = 16, KVUnified = true, Threads = threads, BatchThreads = threads, GpuLayerCount = 0 };
            _weights = LLamaWeights.LoadFromFile(p);
            _executor = new BatchedExecutor(_weights, p);
            var profile = PromptProfile.Load(profilePath);
            IChatFormatter formatter = _weights.Metadata.ContainsKey("tokenizer.chat_template") && profile.Template.UseModelTemplate
                ? new ModelChatFormatter(_weights) : new ProfileChatFormatter(profile.Template);
            _prompts = new PromptBuilder(profile, formatter);
            _labelTokens = profile.Sentiment.Labels.Select(l => _weights.Tokenize(l, false, true, Encoding.UTF8).Select(t => (int)t).ToArray()).ToArray();
        }

        private LLamaToken[] Tokens(string text) => _weights.Tokenize(text, true, true, Encoding.UTF8);

        public async Task SentimentAsync(string input)
        {
            var conversation = Fresh(ref _sentiment);
            conversation.Prompt(Tokens(_prompts.Sentiment(input)));
            if (await _executor.Infer() is var result && result != DecodeResult.Ok)
                throw new InvalidOperationException($"decode failed: {result}");
            // The worker's scoring: first label token from the prompt's logits, the rest of multi-token labels
            // on forks of the prompt sequence, all in one more decode.
            var logits = conversation.Sample();
            var best = float.MinValue;
            foreach (var t in _labelTokens) best = Math.Max(best, logits[t[0]]);
            var forks = new List<Conversation>();
            foreach (var t in _labelTokens.Where(t => t.Length > 1))
            {
                var fork = conversation.Fork();
                fork.Prompt(t[..^1].Select(x => (LLamaToken)x).ToArray(), allLogits: true);
                forks.Add(fork);
            }
            if (forks.Count > 0 && await _executor.Infer() is var more && more != DecodeResult.Ok)
                throw new InvalidOperationException($"decode failed: {more}");
            foreach (var f in forks) f.Dispose();
            GC.KeepAlive(best);
        }

        public async Task ChatAsync(string user, int tokens) => await GenerateAsync(user, tokens);

        public async Task<double> TokensPerSecondAsync(string user, int tokens)
        {
            var (first, done, n) = await GenerateAsync(user, tokens);
            return (n - 1) / (done - first);
        }

        private async Task<(double FirstSeconds, double DoneSeconds, int Tokens)> GenerateAsync(string user, int tokens)
        {
            var conversation = Fresh(ref _chat);
            using var sampler = new GreedySamplingPipeline();
            conversation.Prompt(Tokens(_prompts.Chat([new ChatMessage(ChatRoles.User, user)])));
            var clock = Stopwatch.StartNew();
            double first = 0;
            var n = 0;
            for (; n < tokens; n++)
            {
                if (await _executor.Infer() is var result && result != DecodeResult.Ok)
                    throw new InvalidOperationException($"decode failed: {result}");
                var token = conversation.Sample(sampler);
                if (n == 0) first = clock.Elapsed.TotalSeconds;
                if (n + 1 < tokens) conversation.Prompt(token);
            }
            return (first, clock.Elapsed.TotalSeconds, n);
        }

        public void Dispose()
        {
            _sentiment?.Dispose();
            _chat?.Dispose();
            _executor.Dispose();
            _weights.Dispose();
        }
    }

    internal sealed record Stream(int Tokens, double TtftMs, double TokensPerSecond);

    internal sealed record LoopResult(List<double> Ms, long Sent, long Compared, long Dropped);

    /// <summary>A nats-server and service processes on free ports.</summary>
    internal sealed class Rig : IAsyncDisposable
    {
        public required Proc Nats { get; init; }
        public required List<Proc> Workers { get; init; }
        public required List<Proc> Ingresses { get; init; }
        public required List<HttpClient> Http { get; init; }
        public Proc? Promoter { get; init; }
        public Proc? Judge { get; init; }
        public required string NatsUrl { get; init; }
        public required string Dir { get; init; }

        /// <param name="settings">Settings given to every service, over the rig's own (e.g. <c>Topology:Storage</c>, memory here by default).</param>
        public static async Task<Rig> StartAsync((string Colour, string Model, int Slots, bool Prefix)[] workers, int threads, bool controlPlane = false, double[]? shadowFractions = null,
            IReadOnlyDictionary<string, string>? settings = null)
        {
            var dir = Path.Combine(Path.GetTempPath(), "qwen-perf-" + Guid.NewGuid().ToString("N")[..8]);
            var port = Proc.FreePort();
            var url = $"nats://127.0.0.1:{port}";
            var nats = Proc.Nats(port, dir);
            await Task.Delay(300);
            var common = new Dictionary<string, string> { ["Nats:Url"] = url, ["Logging:LogLevel:Default"] = "Warning", ["Topology:Storage"] = "memory" };
            foreach (var (k, v) in settings ?? new Dictionary<string, string>())
                common[k] = v;
            var ws = workers.Select(w => Proc.Service($"worker-{w.Colour}", "worker", "QwenNats.Worker", new Dictionary<string, string>(common)
            {
                ["Worker:Colour"] = w.Colour, ["Worker:ModelPath"] = w.Model, ["Worker:ProfilePath"] = Path.Combine(Proc.Root, "deploy", "profiles", w.Colour == "blue" ? "v1.json" : "v2.json"),
                ["Worker:Threads"] = threads.ToString(C), ["Worker:Slots"] = w.Slots.ToString(C), ["Worker:ContextSize"] = "512",
                ["Worker:PrefixCache"] = w.Prefix ? "true" : "false", ["Logging:LogLevel:LLama"] = "Error",
            })).ToList();
            Proc? promoter = null, judge = null;
            if (controlPlane)
            {
                promoter = Proc.Service("promoter", "promoter", "QwenNats.Promoter", new Dictionary<string, string>(common) { ["Promoter:Automatic"] = "false" });
                judge = Proc.Service("judge", "judge", "QwenNats.Judge", new Dictionary<string, string>(common));
            }
            var ingresses = new List<Proc>();
            var http = new List<HttpClient>();
            foreach (var fraction in shadowFractions ?? [1.0])
            {
                var httpPort = Proc.FreePort();
                ingresses.Add(Proc.Service("ingress", "ingress", "QwenNats.Ingress", new Dictionary<string, string>(common)
                {
                    ["urls"] = $"http://127.0.0.1:{httpPort}", ["Shadow:ShadowFraction"] = fraction.ToString(C), ["Ingress:RequestTimeout"] = "00:02:00",
                }));
                http.Add(new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{httpPort}"), Timeout = TimeSpan.FromMinutes(3) });
            }
            var rig = new Rig { Nats = nats, Workers = ws, Ingresses = ingresses, Http = http, Promoter = promoter, Judge = judge, NatsUrl = url, Dir = dir };
            var deadline = DateTime.UtcNow.AddMinutes(3);
            foreach (var h in http)
                foreach (var colour in workers.Select(w => w.Colour).Distinct())
                    while (true)
                    {
                        if (DateTime.UtcNow > deadline)
                            throw new TimeoutException($"workers did not come up: {string.Join("\n", ws.Select(w => w.Tail))}");
                        try
                        {
                            var models = await h.GetFromJsonAsync<JsonElement>("/v1/models");
                            if (models.GetProperty("data").EnumerateArray().Any(m => m.GetProperty("colour").GetString() == colour)) break;
                        }
                        catch (HttpRequestException)
                        {
                        }
                        await Task.Delay(250);
                    }
            if (controlPlane)
            {
                await using var n = await rig.ConnectAsync();
                while (true)
                {
                    try { if ((await SwitchPropagation.CtlAsync(n, "status", "")).Ok) break; }
                    catch (NatsException) { }
                    await Task.Delay(250);
                }
            }
            return rig;
        }

        private async Task<NatsConnection> ConnectAsync()
        {
            var n = QwenNats.Testing.Nats.Connect(NatsUrl, "qwen-bench");
            await n.ConnectAsync();
            return n;
        }

        public async Task CtlAsync(string verb, string json)
        {
            await using var n = await ConnectAsync();
            var r = await SwitchPropagation.CtlAsync(n, verb, json);
            if (!r.Ok) throw new InvalidOperationException($"{verb}: {r.Error}");
            await Task.Delay(500);
        }

        public Task SentimentAsync(string input, int ingress = 0) =>
            PostAsync(ingress, "/v1/sentiment", JsonSerializer.Serialize(new { input }), null);

        public Task ChatAsync(string user, int tokens, int ingress = 0, string? session = null) =>
            PostAsync(ingress, "/v1/chat/completions", JsonSerializer.Serialize(new { messages = new[] { new { role = "user", content = user } }, max_tokens = tokens, temperature = 0 }), session);

        private async Task PostAsync(int ingress, string path, string body, string? session)
        {
            using var req = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            if (session is not null) req.Headers.Add("X-Session-Id", session);
            using var r = await Http[ingress].SendAsync(req);
            if (!r.IsSuccessStatusCode) throw new InvalidOperationException($"{path}: HTTP {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
        }

        /// <summary>A streamed chat; TTFT is the first content chunk, tokens/s runs from there to the end.</summary>
        public async Task<Stream> StreamAsync(string user, int tokens)
        {
            var body = JsonSerializer.Serialize(new { messages = new[] { new { role = "user", content = user } }, max_tokens = tokens, temperature = 0, stream = true, stream_options = new { include_usage = true } });
            using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            var clock = Stopwatch.StartNew();
            using var r = await Http[0].SendAsync(req, HttpCompletionOption.ResponseHeadersRead);
            r.EnsureSuccessStatusCode();
            using var reader = new StreamReader(await r.Content.ReadAsStreamAsync());
            double first = 0;
            var completion = 0;
            while (await reader.ReadLineAsync() is { } line)
            {
                if (!line.StartsWith("data: {", StringComparison.Ordinal)) continue;
                var e = JsonDocument.Parse(line[6..]).RootElement;
                if (first == 0 && e.GetProperty("choices").GetArrayLength() > 0 && e.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("content", out var c) && c.GetString() is { Length: > 0 })
                    first = clock.Elapsed.TotalMilliseconds;
                if (e.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object)
                    completion = u.GetProperty("completion_tokens").GetInt32();
            }
            var done = clock.Elapsed.TotalMilliseconds;
            return new Stream(completion, first, completion > 1 && done > first ? (completion - 1) / ((done - first) / 1000) : 0);
        }

        /// <summary>
        /// Two clients in a closed loop, taking turns at <paramref name="ingresses"/> in blocks of <paramref name="block"/>
        /// requests (a pause between blocks), until each ingress has served <paramref name="perIngress"/> requests; the
        /// peak memory of the services is sampled while <paramref name="memoryOf"/>'s blocks run.
        /// </summary>
        public async Task<(LoopResult[] Results, Dictionary<string, long> Peaks)> InterleavedAsync(int[] ingresses, int perIngress, int block, int chatTokens, TimeSpan gap, int memoryOf)
        {
            var before = new List<(long Sent, long Compared, long Dropped)>();
            foreach (var i in ingresses) before.Add(await ShadowAsync(i));
            var ms = ingresses.Select(_ => new List<double>()).ToArray();
            var peaks = new Dictionary<string, long>();
            var n = 0;
            while (ms.Any(m => m.Count < perIngress))
            {
                foreach (var (slot, ingress) in ingresses.Select((x, k) => (k, x)))
                {
                    if (ms[slot].Count >= perIngress) continue;
                    var left = block;
                    async Task ClientAsync(int id)
                    {
                        while (Interlocked.Decrement(ref left) >= 0)
                        {
                            var k = Interlocked.Increment(ref n);
                            var clock = Stopwatch.StartNew();
                            if (k % 2 == 0) await SentimentAsync("The soup was cold but the staff were kind", ingress);
                            else await ChatAsync("Say something nice", chatTokens, ingress, session: $"bench-{id}-{k}");
                            lock (ms) ms[slot].Add(clock.Elapsed.TotalMilliseconds);
                        }
                    }
                    using var sampling = new CancellationTokenSource();
                    var sampler = ingress == memoryOf ? SampleAsync(ingress, peaks, sampling.Token) : Task.CompletedTask;
                    await Task.WhenAll(ClientAsync(0), ClientAsync(1));
                    await sampling.CancelAsync();
                    await sampler;
                    await Task.Delay(gap);
                }
            }
            await Task.Delay(1000);
            var results = new LoopResult[ingresses.Length];
            for (var k = 0; k < ingresses.Length; k++)
            {
                var after = await ShadowAsync(ingresses[k]);
                results[k] = new LoopResult(ms[k], after.Sent - before[k].Sent, after.Compared - before[k].Compared, after.Dropped - before[k].Dropped);
            }
            return (results, peaks);
        }

        private async Task SampleAsync(int ingress, Dictionary<string, long> peaks, CancellationToken ct)
        {
            while (!ct.IsCancellationRequested)
            {
                foreach (var p in new[] { Ingresses[ingress], Judge, Promoter, Nats })
                    if (p is not null) peaks[p.Name] = Math.Max(peaks.GetValueOrDefault(p.Name), p.Resident());
                try { await Task.Delay(1000, ct); } catch (OperationCanceledException) { }
            }
        }

        private async Task<(long Sent, long Compared, long Dropped)> ShadowAsync(int ingress)
        {
            var s = (await Http[ingress].GetFromJsonAsync<JsonElement>("/api/rollout")).GetProperty("shadow");
            return (s.GetProperty("sent").GetInt64(), s.GetProperty("compared").GetInt64(), s.GetProperty("dropped").GetInt64());
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var h in Http) h.Dispose();
            foreach (var p in Ingresses.Concat(Workers)) await p.DisposeAsync();
            if (Promoter is not null) await Promoter.DisposeAsync();
            if (Judge is not null) await Judge.DisposeAsync();
            await Nats.DisposeAsync();
            try { Directory.Delete(Dir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
