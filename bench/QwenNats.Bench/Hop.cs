using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.JetStream.Models;

namespace QwenNats.Bench;

/// <summary>
/// <c>hop</c>: what the path HTTP → ingress → JetStream → worker → reply adds to an inference, and where it goes.
/// Sequential one-token greedy chats on the tiny model through a system of its own (nats-server with file storage,
/// promoter, judge, one ingress, one blue worker): the added latency is the client's wall time minus the worker's
/// own <c>timings.total_ms</c>, and each answer's <c>Server-Timing</c> header gives the stages. Two cases: a client
/// that sends no session (a new session every request) and one that keeps its session (<c>X-Session-Id</c>). For
/// scale, the same run measures what the parts cost on their own: a core NATS request/reply and a JetStream
/// publish with its acknowledgement, from this process.
/// </summary>
internal static class Hop
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    /// <summary>The stages of the ingress's Server-Timing header, in path order, then the client's own share.</summary>
    private static readonly string[] Stages = ["parse", "route", "publish", "deliver", "worker-in", "infer", "worker-out", "reply", "handoff", "respond", "total"];

    public static async Task<int> RunAsync(string[] args)
    {
        var o = Args.Parse(args);
        var tiny = o["tiny"];
        var requests = int.Parse(o.GetValueOrDefault("requests", "1000"), C);
        var threads = int.Parse(o.GetValueOrDefault("threads", "1"), C);
        var slots = int.Parse(o.GetValueOrDefault("slots", "2"), C);
        // --compare NAME=VALUE,...: a second system whose services have these settings (a name with ':', e.g.
        // Topology:Storage) or environment variables (any other, e.g. DOTNET_TieredPGO), its requests taking turns with
        // the first's, so the change is measured against the same machine state as what it changes.
        // --compare-root DIR: the second system runs another checkout's Release build of the services (DIR, built), e.g.
        // the code before a change: the change measured paired.
        var compare = o.TryGetValue("compare", out var c) ? c.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(kv => kv.Split('=', 2)).ToDictionary(kv => kv[0], kv => kv[1]) : null;
        if (o.TryGetValue("compare-root", out var root))
            (compare ??= [])[Proc.RootSetting] = Path.GetFullPath(root);
        Console.WriteLine(await MeasureAsync(tiny, requests, threads, slots, compare));
        return 0;
    }

    private sealed record Sample(double WallMs, double InferMs, Dictionary<string, double> Stages)
    {
        public double AddedMs => WallMs - InferMs;
    }

    public static async Task<string> MeasureAsync(string tiny, int requests, int threads, int slots, IReadOnlyDictionary<string, string>? compare = null)
    {
        var md = new StringBuilder();
        var clock = Stopwatch.StartNew();
        var settings = new Dictionary<string, string> { ["Topology:Storage"] = "file" };
        await using var rig = await Perf.Rig.StartAsync([("blue", tiny, slots, true)], threads, controlPlane: true, settings: settings);
        await using var other = compare is null ? null
            : await Perf.Rig.StartAsync([("blue", tiny, slots, true)], threads, controlPlane: true,
                settings: compare.Aggregate(new Dictionary<string, string>(settings), (all, kv) => { all[kv.Key.Contains(':') ? kv.Key : Proc.EnvPrefix + kv.Key] = kv.Value; return all; }));
        HttpClient Client(Perf.Rig r) => new(new SocketsHttpHandler { UseCookies = false, PooledConnectionLifetime = Timeout.InfiniteTimeSpan })
        {
            BaseAddress = r.Http[0].BaseAddress, Timeout = TimeSpan.FromSeconds(30),
        };
        var systems = new List<(string Label, HttpClient Http)> { ("", Client(rig)) };
        if (other is not null)
        {
            systems[0] = ("as is: ", systems[0].Http);
            systems.Add(($"{string.Join(' ', compare!.Select(kv => $"{kv.Key}={kv.Value}"))}: ", Client(other)));
        }
        // A third case per system: the same chat from a plain blocking HTTP/1.1 client, which shows the client's own share of `http`.
        var plain = systems.Select(s => new PlainHttp(s.Http.BaseAddress!)).ToList();
        var cases = systems.SelectMany((s, k) => new (string Name, Func<Task<Sample>> Chat)[]
        {
            (s.Label + "no session (a new one each request)", () => ChatAsync(s.Http, null)),
            (s.Label + "one session (X-Session-Id)", () => ChatAsync(s.Http, Session)),
            (s.Label + "one session, plain blocking HTTP/1.1 client", () => Task.FromResult(PlainChat(plain[k], Session))),
        }).ToArray();
        // The cases take turns request by request, after a warm-up of each, so both see the machine in the same state
        // (one after the other, the first ran while the services were still compiling their hot paths in the background).
        var results = cases.Select(c => (c.Name, Samples: new List<Sample>(requests))).ToList();
        for (var i = 0; i < Math.Min(200, requests); i++)
            foreach (var (_, chat) in cases)
                await chat();
        for (var i = 0; i < requests; i++)
            for (var k = 0; k < cases.Length; k++)
                results[k].Samples.Add(await cases[k].Chat());
        // The HTTP part alone: the same client's round trip to the ingress's /healthz (no NATS), spaced like the chats.
        var httpFloor = new List<double>(requests / 2);
        var plainFloor = new List<double>(requests / 2);
        for (var i = 0; i < Math.Max(50, requests / 2) + 20; i++)
        {
            var c = Stopwatch.StartNew();
            using (var r = await systems[0].Http.GetAsync("/healthz"))
                await r.Content.ReadAsStringAsync();
            if (i >= 20) httpFloor.Add(c.Elapsed.TotalMilliseconds);
            await Task.Delay(10);
            c.Restart();
            if (plain[0].Send("GET", "/healthz", null, null).Status != 200) throw new InvalidOperationException("/healthz failed");
            if (i >= 20) plainFloor.Add(c.Elapsed.TotalMilliseconds);
            await Task.Delay(10);
        }
        foreach (var p in plain) p.Dispose();
        // How the requests reached the worker: the ingress's own count by delivery path.
        var paths = new List<string>();
        foreach (var (label, http) in systems)
        {
            var metrics = await http.GetStringAsync("/metrics");
            var counts = metrics.Split('\n')
                .Where(l => l.StartsWith("qwen_request_deliveries_total{", StringComparison.Ordinal))
                .Select(l => (Path: System.Text.RegularExpressions.Regex.Match(l, "path=\"([a-z]+)\"").Groups[1].Value, Count: double.Parse(l[(l.LastIndexOf(' ') + 1)..], C)))
                .OrderBy(p => p.Path, StringComparer.Ordinal);
            paths.Add($"{label}{string.Join(", ", counts.Select(p => $"{p.Path} {p.Count:0}"))}");
        }
        foreach (var (_, http) in systems)
            http.Dispose();
        var floor = await FloorAsync(rig.NatsUrl, Math.Max(50, requests / 2));

        md.AppendLine(C, $"Sequential one-token greedy chats on stories260K, {requests} per case, the cases taking turns request by request after a warm-up; one blue worker ({slots} slots, {threads} thread), promoter, judge and one ingress on this machine, JetStream file storage. Added = client wall time − the worker's `total_ms`.").AppendLine();
        md.AppendLine("| case | wall p50 ms | worker total_ms p50 | added p50 ms | added p90 | added p99 | added max |");
        md.AppendLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var (name, s) in results)
        {
            var added = s.Select(x => x.AddedMs).ToList();
            md.AppendLine(C, $"| {name} | {P(s.Select(x => x.WallMs).ToList(), .5):F2} | {P(s.Select(x => x.InferMs).ToList(), .5):F2} | **{P(added, .5):F2}** | {P(added, .9):F2} | **{P(added, .99):F2}** | {added.Max():F2} |");
        }
        md.AppendLine();
        md.AppendLine("The slowest request of each case, by stage (ms):").AppendLine();
        foreach (var (name, s) in results)
        {
            var worst = s.MaxBy(x => x.AddedMs)!;
            md.AppendLine(C, $"- {name}: added {worst.AddedMs:F2}; {string.Join(", ", worst.Stages.Select(kv => $"{kv.Key} {kv.Value:F2}"))}, http {worst.WallMs - worst.Stages.GetValueOrDefault("total"):F2}");
        }
        md.AppendLine();
        md.AppendLine("Per stage (`Server-Timing`; `http` = the client's wall time − the ingress's `total`: client, loopback TCP and Kestrel), p50 and p99 ms:").AppendLine();
        md.Append("| stage |");
        foreach (var (name, _) in results) md.Append(C, $" {name} p50 | p99 |");
        md.AppendLine();
        md.Append("| --- |");
        foreach (var _ in results) md.Append(" ---: | ---: |");
        md.AppendLine();
        foreach (var stage in Stages.Append("http"))
        {
            md.Append(C, $"| {stage} |");
            foreach (var (_, s) in results)
            {
                var values = s.Select(x => stage == "http" ? (x.Stages.TryGetValue("total", out var t) ? x.WallMs - t : double.NaN) : x.Stages.GetValueOrDefault(stage, double.NaN))
                    .Where(v => !double.IsNaN(v)).ToList();
                md.Append(values.Count == 0 ? " – | – |" : string.Create(C, $" {P(values, .5):F3} | {P(values, .99):F3} |"));
            }
            md.AppendLine();
        }
        md.AppendLine();
        md.AppendLine(C, $"How the live requests reached the worker (the ingress's `qwen_request_deliveries_total`, warm-up included): {string.Join("; ", paths)}.").AppendLine();
        md.AppendLine(C, $"The parts on their own, from this process to the same nats-server: core NATS request/reply p50 {P(floor.Core, .5):F3} ms, p99 {P(floor.Core, .99):F3} ms; JetStream publish (file storage) to its acknowledgement p50 {P(floor.JetStream, .5):F3} ms, p99 {P(floor.JetStream, .99):F3} ms. One way between two connections, 10 ms apart: a core message p50 {P(floor.CoreOneWay, .5):F3} ms, p99 {P(floor.CoreOneWay, .99):F3} ms; a JetStream message from its publish to the pull waiting for it p50 {P(floor.JetStreamOneWay, .5):F3} ms, p99 {P(floor.JetStreamOneWay, .99):F3} ms. The same HTTP client's round trip to the ingress's `/healthz` (no NATS), 10 ms apart: p50 {P(httpFloor, .5):F3} ms, p99 {P(httpFloor, .99):F3} ms; the plain blocking client's, p50 {P(plainFloor, .5):F3} ms, p99 {P(plainFloor, .99):F3} ms.");
        md.AppendLine().AppendLine(C, $"Took {clock.Elapsed.TotalMinutes:F1} minutes.");
        return md.ToString();
    }

    private const string ChatBody = """{"messages":[{"role":"user","content":"Hi"}],"max_tokens":1,"temperature":0}""";
    private const string Session = "hop-bench-session";

    private static async Task<Sample> ChatAsync(HttpClient http, string? session)
    {
        using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(ChatBody, Encoding.UTF8, "application/json") };
        if (session is not null) req.Headers.Add("X-Session-Id", session);
        var clock = Stopwatch.StartNew();
        using var r = await http.SendAsync(req);
        var text = await r.Content.ReadAsStringAsync();
        var wall = clock.Elapsed.TotalMilliseconds;
        if (!r.IsSuccessStatusCode) throw new InvalidOperationException($"HTTP {(int)r.StatusCode}: {text}");
        return Parse(wall, text, r.Headers.TryGetValues("Server-Timing", out var values) ? string.Join(", ", values) : null);
    }

    private static Sample PlainChat(PlainHttp http, string session)
    {
        var clock = Stopwatch.StartNew();
        var (status, headers, text) = http.Send("POST", "/v1/chat/completions", ChatBody, session);
        var wall = clock.Elapsed.TotalMilliseconds;
        if (status != 200) throw new InvalidOperationException($"HTTP {status}: {text}");
        return Parse(wall, text, headers.GetValueOrDefault("server-timing"));
    }

    /// <summary>A sample from the answer's body (the worker's <c>total_ms</c>) and its <c>Server-Timing</c> header.</summary>
    private static Sample Parse(double wall, string body, string? serverTiming)
    {
        using var doc = JsonDocument.Parse(body);
        var total = doc.RootElement.GetProperty("timings").GetProperty("total_ms").GetDouble();
        var stages = new Dictionary<string, double>();
        foreach (var part in (serverTiming ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var bits = part.Split(";dur=");
            if (bits.Length == 2 && double.TryParse(bits[1], NumberStyles.Float, C, out var ms)) stages[bits[0]] = ms;
        }
        return new Sample(wall, total, stages);
    }

    /// <summary>
    /// A plain HTTP/1.1 client on one keep-alive connection with blocking socket calls: the request written at once,
    /// the answer read by the calling thread (a blocked <c>recv</c> the kernel wakes), against HttpClient's async path
    /// where a socket event wakes the runtime's event thread, which then wakes a thread-pool thread for the
    /// continuation. It shows how much of <c>http</c> is the client's own; the services are the same.
    /// </summary>
    private sealed class PlainHttp : IDisposable
    {
        private readonly System.Net.Sockets.Socket _socket;
        private readonly string _host;
        private byte[] _buffer = new byte[64 * 1024];
        private int _start, _end;

        public PlainHttp(Uri baseAddress)
        {
            _host = $"{baseAddress.Host}:{baseAddress.Port}";
            _socket = new(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp) { NoDelay = true };
            _socket.Connect(baseAddress.Host, baseAddress.Port);
        }

        /// <summary>Sends one request; the status, the headers (names lower-case) and the body.</summary>
        public (int Status, Dictionary<string, string> Headers, string Body) Send(string method, string path, string? json, string? session)
        {
            var body = json is null ? [] : Encoding.UTF8.GetBytes(json);
            var head = new StringBuilder().Append(C, $"{method} {path} HTTP/1.1\r\nHost: {_host}\r\n");
            if (session is not null) head.Append(C, $"X-Session-Id: {session}\r\n");
            if (json is not null) head.Append(C, $"Content-Type: application/json\r\nContent-Length: {body.Length}\r\n");
            var request = Encoding.ASCII.GetBytes(head.Append("\r\n").ToString()).Concat(body).ToArray();
            for (var sent = 0; sent < request.Length;)
                sent += _socket.Send(request, sent, request.Length - sent, System.Net.Sockets.SocketFlags.None);

            var lines = ReadLine().Split(' ', 3);
            var status = int.Parse(lines[1], C);
            var headers = new Dictionary<string, string>(StringComparer.Ordinal);
            for (var line = ReadLine(); line.Length > 0; line = ReadLine())
            {
                var colon = line.IndexOf(':');
                var name = line[..colon].Trim().ToLowerInvariant();
                var value = line[(colon + 1)..].Trim();
                headers[name] = headers.TryGetValue(name, out var earlier) ? $"{earlier}, {value}" : value;
            }
            var bytes = new List<byte>();
            if (headers.TryGetValue("transfer-encoding", out var te) && te.Contains("chunked", StringComparison.OrdinalIgnoreCase))
            {
                for (var size = ChunkSize(); size > 0; size = ChunkSize())
                {
                    bytes.AddRange(Read(size));
                    ReadLine();
                }
                while (ReadLine().Length > 0) { }
            }
            else if (headers.TryGetValue("content-length", out var length))
                bytes.AddRange(Read(int.Parse(length, C)));
            return (status, headers, Encoding.UTF8.GetString(bytes.ToArray()));
        }

        private int ChunkSize() => Convert.ToInt32(ReadLine().Split(';')[0].Trim(), 16);

        private string ReadLine()
        {
            while (true)
            {
                var at = Array.IndexOf(_buffer, (byte)'\n', _start, _end - _start);
                if (at >= 0)
                {
                    var line = Encoding.ASCII.GetString(_buffer, _start, at - _start).TrimEnd('\r');
                    _start = at + 1;
                    return line;
                }
                Fill();
            }
        }

        private byte[] Read(int count)
        {
            while (_end - _start < count) Fill();
            var bytes = _buffer.AsSpan(_start, count).ToArray();
            _start += count;
            return bytes;
        }

        private void Fill()
        {
            if (_start > 0)
            {
                Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
                (_end, _start) = (_end - _start, 0);
            }
            if (_end == _buffer.Length) Array.Resize(ref _buffer, _buffer.Length * 2);
            var got = _socket.Receive(_buffer, _end, _buffer.Length - _end, System.Net.Sockets.SocketFlags.None);
            if (got == 0) throw new IOException("the ingress closed the connection");
            _end += got;
        }

        public void Dispose() => _socket.Dispose();
    }

    /// <summary>What the parts cost alone, in milliseconds.</summary>
    private sealed record Floor(List<double> Core, List<double> JetStream, List<double> CoreOneWay, List<double> JetStreamOneWay);

    /// <summary>
    /// Core request/reply and JetStream publish-to-ack round trips from this process, and two one-way trips between
    /// two connections of this process, spaced 10 ms apart like the hop's requests: a core message, and a JetStream
    /// message from its publish to a pull that was waiting for it (the hop's <c>deliver</c> without the services).
    /// </summary>
    private static async Task<Floor> FloorAsync(string url, int n)
    {
        await using var nats = QwenNats.Testing.Nats.Connect(url, "qwen-bench-floor");
        await nats.ConnectAsync();
        using var stop = new CancellationTokenSource();
        var echo = Task.Run(async () =>
        {
            await foreach (var m in nats.SubscribeAsync<byte[]>("bench.hop.echo", cancellationToken: stop.Token))
                await m.ReplyAsync(m.Data);
        });
        await Task.Delay(200);
        var payload = new byte[300];
        var core = new List<double>(n);
        for (var i = 0; i < n + 20; i++)
        {
            var c = Stopwatch.StartNew();
            await nats.RequestAsync<byte[], byte[]>("bench.hop.echo", payload);
            if (i >= 20) core.Add(c.Elapsed.TotalMilliseconds);
        }
        await stop.CancelAsync();
        try { await echo; } catch (OperationCanceledException) { }
        var js = new NatsJSContext(nats);
        await js.CreateStreamAsync(new StreamConfig("BENCH_HOP", ["bench.hop.js"]) { Storage = StreamConfigStorage.File, Retention = StreamConfigRetention.Workqueue, MaxMsgs = 10_000 });
        var acks = new List<double>(n);
        for (var i = 0; i < n + 20; i++)
        {
            var c = Stopwatch.StartNew();
            (await js.PublishAsync("bench.hop.js", payload)).EnsureSuccess();
            if (i >= 20) acks.Add(c.Elapsed.TotalMilliseconds);
        }

        await using var other = QwenNats.Testing.Nats.Connect(url, "qwen-bench-floor-2");
        await other.ConnectAsync();
        var coreOneWay = new List<double>(n);
        await using (var sub = await other.SubscribeCoreAsync<long>("bench.hop.oneway"))
        {
            await other.PingAsync();
            for (var i = 0; i < n + 20; i++)
            {
                await nats.PublishAsync("bench.hop.oneway", Stopwatch.GetTimestamp());
                var m = await sub.Msgs.ReadAsync();
                if (i >= 20) coreOneWay.Add(Stopwatch.GetElapsedTime(m.Data).TotalMilliseconds);
                await Task.Delay(10);
            }
        }
        // The stream still holds the messages of the round trips above.
        await js.PurgeStreamAsync("BENCH_HOP", new StreamPurgeRequest());
        var consumer = await new NatsJSContext(other).CreateOrUpdateConsumerAsync("BENCH_HOP", new ConsumerConfig("bench") { AckPolicy = ConsumerConfigAckPolicy.Explicit });
        var jsOneWay = new List<double>(n);
        for (var i = 0; i < n + 20; i++)
        {
            var next = consumer.NextAsync<long>(opts: new NatsJSNextOpts { Expires = TimeSpan.FromSeconds(5) }).AsTask();
            await Task.Delay(10);
            (await js.PublishAsync("bench.hop.js", Stopwatch.GetTimestamp())).EnsureSuccess();
            var m = await next ?? throw new InvalidOperationException("the pull came back empty");
            if (i >= 20) jsOneWay.Add(Stopwatch.GetElapsedTime(m.Data).TotalMilliseconds);
            await m.AckAsync();
        }
        await js.DeleteStreamAsync("BENCH_HOP");
        return new Floor(core, acks, coreOneWay, jsOneWay);
    }

    private static double P(IReadOnlyList<double> values, double q) => Perf.P(values, q);
}
