using System.Text.Encodings.Web;
using System.Text.Json;
using NATS.Client.Core;
using QwenNats.Messaging;
using QwenNats.Messaging.Control;

// qwenctl: one operator command to the promoters, the same request as `nats req qwen.ctl.<verb> '<json>'`.
// Exit codes: 0 the promoter says ok; 1 it refused (its "code" and "error" say why) or no promoter answered;
// 2 a usage error (nothing is sent).
return await Cli.RunAsync(args);

internal static class Cli
{
    private const string Usage = """
        qwenctl: send one operator command to the QwenNats promoters, the same request as
        `nats req qwen.ctl.<verb> '<json>'`.

        usage: qwenctl <verb> ['<json>']
               qwenctl <verb> --help      what the verb does, its fields and examples
               qwenctl upload <file.gguf> upload a model to the model store (by its SHA-256; prints it)
               qwenctl register --release <id> --model <file.gguf> --profile <file.json> [--notes <text>]
                                          upload the model and register the release (no deploy)
               qwenctl compare [--file <inputs.jsonl>] [--sentiment-only | --chat-only] [--colour <colour>] [--json]
                                          send the golden sets (or the file's inputs) to live and the other colour
                                          on their low-priority queues; print both answers side by side per input
                                          with every check and a summary (--json: the reply as JSON)
               qwenctl rollout --release <id> [options]
                                          the pipeline command: upload, register, deploy to the idle colour,
                                          wait for its workers, start the rollout and follow it to the end
               qwenctl --help             this text

        rollout options:
          --release <id>          the release (required); registered when --profile is given, else it must exist
          --model <file.gguf>     upload this model (skipped when the store already has its digest)
          --model-sha256 <hex>    or name an uploaded model by digest
          --profile <file.json>   the prompt profile (deploy/profiles/*.json)
          --notes <text>          what changed
          --faults '<json>'       a drill release: faults its workers inject, e.g. '{"fraction":1,"flip_labels":true}'
          --colour <colour>       ship to this colour (default: the idle one)
          --until promoted        stop following at Promoted (default: until the bake window closes)
          --no-wait               return once the rollout started
          --ready-timeout <s>     how long the workers may take to serve the release (default 600)
          --timeout <s>           how long the rollout may take (default 3600)
          --actor <name>          who ships (default pipeline)
        rollout exit codes: 0 promoted (or started, with --no-wait), 1 NATS or the promoters unreachable, 2 usage,
          3 rolled back, 4 paused, 5 refused (release id taken, deploy or start refused, aborted),
          6 a worker cannot load the release, 7 timed out.

        Environment: NATS_URL (default nats://127.0.0.1:4222); credentials from the URL (nats://user:pass@host:port),
        else NATS_USER/NATS_PASSWORD, else the operator user in QWEN_CTL_USERS_FILE (deploy/local/qwenctl points it
        at .run/nats-users.env, written by up.sh). QWEN_CTL_TIMEOUT: seconds to wait for an answer (default 5; a
        golden run waits 120).
        Prints the promoter's JSON reply; exits 0 when it says ok, 1 when it refuses (its "code" and "error" say
        why) or no promoter answers, 2 on a usage error (nothing is sent).
        """;

    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            if (args.Length > 1 && args[0] == "help" && VerbHelp.Verbs.ContainsKey(args[1]))
            {
                Console.WriteLine(VerbUsage(args[1]));
                return 0;
            }
            (args.Length == 0 ? Console.Error : Console.Out).WriteLine(FullUsage());
            return args.Length == 0 ? 2 : 0;
        }
        var verb = args[0];
        if (verb is "upload" or "rollout" or "register")
            return await PipelineAsync(verb, args[1..]);
        if (!VerbHelp.Verbs.ContainsKey(verb))
        {
            Console.Error.WriteLine($"qwenctl: unknown verb '{verb}'; known: {string.Join(", ", VerbHelp.Verbs.Keys)} (qwenctl --help)");
            return 2;
        }
        if (args.Length > 1 && args[1] is "-h" or "--help")
        {
            Console.WriteLine(VerbUsage(verb));
            return 0;
        }
        if (verb == Rollouts.Verbs.Compare)
            return await CompareAsync(args[1..]);
        if (args.Length > 2)
        {
            Console.Error.WriteLine($"qwenctl: {verb} takes one JSON argument, got {args.Length - 1}; quote it: qwenctl {verb} '{{...}}'");
            return 2;
        }

        var timeout = Timeout(Rollouts.Verbs.RunsInference(verb) ? 120 : 5);
        var (reply, _) = await SendAsync(verb, args.Length > 1 ? args[1] : "", timeout);
        Console.WriteLine(Pretty(reply));
        return reply.Ok ? 0 : 1;
    }

    private static TimeSpan Timeout(double fallback) =>
        TimeSpan.FromSeconds(double.TryParse(Environment.GetEnvironmentVariable("QWEN_CTL_TIMEOUT"), System.Globalization.CultureInfo.InvariantCulture, out var s) && s > 0
            ? s
            : fallback);

    /// <summary>Sends one command; a reply that says why when NATS or the promoters cannot be reached (and whether that happened).</summary>
    private static async Task<(ControlReply Reply, bool Unreachable)> SendAsync(string verb, string body, TimeSpan timeout)
    {
        var url = Environment.GetEnvironmentVariable("NATS_URL") is { Length: > 0 } u ? u : "nats://127.0.0.1:4222";
        var auth = Credentials(url);
        await using var nats = new NatsConnection(QwenConnection.Options(url, "qwenctl", auth.Username, auth.Password, connectTimeout: TimeSpan.FromSeconds(5), reconnectForever: false));
        try
        {
            await nats.ConnectAsync();
            return (await new ControlClient(nats, timeout).SendAsync(verb, body), false);
        }
        catch (Exception e) when (e is NatsException or TimeoutException or OperationCanceledException)
        {
            var why = e is NatsNoRespondersException ? $"no promoter answered on {Rollouts.Control(verb)} (no responders)"
                : e is NatsNoReplyException ? $"no promoter answered on {Rollouts.Control(verb)} within {timeout.TotalSeconds:0} s"
                : $"cannot reach NATS at {url}: {e.Message}";
            return (ControlReply.Refused("unavailable", why), true);
        }
    }

    /// <summary>qwenctl compare: the request from options (or one JSON argument), the answer printed side by side.</summary>
    private static async Task<int> CompareAsync(string[] args)
    {
        string? file = null, task = null, colour = null, body = null;
        var json = false;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--file" or "--colour" when i + 1 >= args.Length:
                    return UsageError($"compare: {args[i]} needs a value");
                case "--file": file = args[++i]; break;
                case "--colour": colour = args[++i]; break;
                case "--sentiment-only" or "--chat-only":
                    var t = args[i] == "--chat-only" ? InferTasks.Chat : InferTasks.Sentiment;
                    if (task is not null && task != t) return UsageError("compare: give --sentiment-only or --chat-only, not both");
                    task = t;
                    break;
                case "--json": json = true; break;
                case var a when a.TrimStart().StartsWith('{') && body is null: body = a; break;
                default: return UsageError($"compare: unknown option '{args[i]}'");
            }
        }
        if (body is not null && (file is not null || task is not null || colour is not null))
            return UsageError("compare: give either a JSON request or options (--file, --sentiment-only, --chat-only, --colour), not both");
        if (body is null)
        {
            IReadOnlyList<GoldenInput>? inputs = null;
            if (file is not null)
            {
                try
                {
                    inputs = GoldenInputs.Load(file, InferTasks.Chat);
                }
                catch (Exception e) when (e is GoldenInputsException or IOException or UnauthorizedAccessException)
                {
                    return UsageError($"compare: {e.Message}");
                }
                if (inputs.Count == 0) return UsageError($"compare: '{file}' has no inputs");
            }
            body = JsonSerializer.Serialize(new ControlRequest { Inputs = inputs, Task = task, Colour = colour }, QwenJsonContext.Default.ControlRequest);
            if (System.Text.Encoding.UTF8.GetByteCount(body) > MaxRequestBytes)
                return UsageError($"compare: the inputs make a request over {MaxRequestBytes / 1024} KB (the NATS payload limit); split the file");
        }
        var (reply, _) = await SendAsync(Rollouts.Verbs.Compare, body, Timeout(150));
        if (json || !reply.Ok || reply.Compare is null)
        {
            Console.WriteLine(Pretty(reply));
            return reply.Ok ? 0 : 1;
        }
        foreach (var line in Comparison.Format(reply.Compare))
            Console.WriteLine(line);
        return 0;
    }

    /// <summary>A request must fit the server's max_payload (1 MB by default), with room for headers.</summary>
    private const int MaxRequestBytes = 900 * 1024;

    private static async Task<int> PipelineAsync(string command, string[] args)
    {
        if (args is ["-h" or "--help", ..])
        {
            Console.WriteLine(Usage);
            return 0;
        }
        PipelineRequest? request = null;
        string? file = null;
        if (command == "upload")
        {
            if (args.Length != 1)
                return UsageError("upload takes one file: qwenctl upload <file.gguf>");
            file = args[0];
        }
        else if (ParseRollout(args, out var error) is { } parsed)
        {
            if (command == "register" && parsed.Profile is null)
                return UsageError("register needs --profile <file.json> and --model <file.gguf> (or --model-sha256)");
            request = parsed;
        }
        else
        {
            return UsageError(error!);
        }
        if (file is not null && !File.Exists(file))
            return UsageError($"'{file}' does not exist");

        var url = Environment.GetEnvironmentVariable("NATS_URL") is { Length: > 0 } u ? u : "nats://127.0.0.1:4222";
        var auth = Credentials(url);
        await using var nats = new NatsConnection(QwenConnection.Options(url, "qwenctl", auth.Username, auth.Password, connectTimeout: TimeSpan.FromSeconds(5), reconnectForever: false));
        try
        {
            await nats.ConnectAsync();
            if (file is not null)
            {
                var store = await new NATS.Client.ObjectStore.NatsObjContext(new NATS.Client.JetStream.NatsJSContext(nats)).GetObjectStoreAsync(Releases.ModelsBucket);
                var upload = await ModelStore.UploadAsync(store, file, CancellationToken.None);
                Console.WriteLine(upload.Uploaded ? $"uploaded {file}: sha256 {upload.Sha256} ({upload.SizeBytes:N0} bytes)" : $"already stored: sha256 {upload.Sha256}");
                Console.WriteLine(upload.Sha256);
                return 0;
            }
            var pipeline = new ReleasePipeline(nats, line => Console.WriteLine(line));
            if (command == "register")
            {
                if (await pipeline.RegisterAsync(request!) is { } refused)
                {
                    Console.WriteLine($"result: {refused.Outcome.ToString().ToLowerInvariant()}: {refused.Message}");
                    return refused.ExitCode;
                }
                Console.WriteLine($"result: registered: {request!.Release}");
                return 0;
            }
            var result = await pipeline.RunAsync(request!);
            if (result.Timeline.Count > 0)
            {
                Console.WriteLine();
                Console.WriteLine("timeline:");
                foreach (var line in ReleasePipeline.Format(result))
                    Console.WriteLine(line);
            }
            Console.WriteLine();
            Console.WriteLine($"result: {result.Outcome.ToString().ToLowerInvariant()}: {result.Message}");
            return result.ExitCode;
        }
        catch (Exception e) when (e is NatsException or TimeoutException or OperationCanceledException or NATS.Client.JetStream.NatsJSException)
        {
            var why = e is NatsNoRespondersException ? "no promoter answered (no responders)"
                : e is NatsNoReplyException ? "no promoter answered in time"
                : e is NATS.Client.JetStream.NatsJSApiException { Error.Code: 404 } ? $"the model store {Releases.ModelsBucket} does not exist: start the promoter (it creates it)"
                : $"cannot reach NATS at {url}: {e.Message}";
            Console.WriteLine($"result: unavailable: {why}");
            return 1;
        }
        catch (ModelStoreException e)
        {
            Console.WriteLine($"result: refused: {e.Code}: {e.Message}");
            return (int)PipelineOutcome.Refused;
        }
    }

    private static int UsageError(string message)
    {
        Console.Error.WriteLine($"qwenctl: {message} (qwenctl --help)");
        return 2;
    }

    private static PipelineRequest? ParseRollout(string[] args, out string? error)
    {
        error = null;
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        var flags = new HashSet<string>(StringComparer.Ordinal);
        string[] withValue = ["--release", "--model", "--model-sha256", "--profile", "--notes", "--faults", "--colour", "--until", "--ready-timeout", "--timeout", "--actor"];
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] == "--no-wait") { flags.Add(args[i]); continue; }
            if (!withValue.Contains(args[i])) { error = $"rollout: unknown option '{args[i]}'"; return null; }
            if (i + 1 >= args.Length) { error = $"rollout: {args[i]} needs a value"; return null; }
            values[args[i]] = args[++i];
        }
        if (!values.TryGetValue("--release", out var release) || !Releases.IsWellFormedId(release))
        {
            error = "rollout: --release <id> is required (letters, digits, '.', '_', '-')";
            return null;
        }
        PromptProfile? profile = null;
        if (values.TryGetValue("--profile", out var profilePath))
        {
            try
            {
                profile = PromptProfile.Load(profilePath);
            }
            catch (Exception e) when (e is InvalidOperationException or FileNotFoundException)
            {
                error = $"rollout: {e.Message}";
                return null;
            }
        }
        if (values.TryGetValue("--model", out var model) && !File.Exists(model))
        {
            error = $"rollout: model file '{model}' does not exist";
            return null;
        }
        if (values.ContainsKey("--model") && values.ContainsKey("--model-sha256"))
        {
            error = "rollout: give --model or --model-sha256, not both";
            return null;
        }
        if (profile is not null && !values.ContainsKey("--model") && !values.ContainsKey("--model-sha256"))
        {
            error = "rollout: registering a release (--profile) needs --model or --model-sha256";
            return null;
        }
        FaultOptions? faults = null;
        if (values.TryGetValue("--faults", out var faultJson))
        {
            try
            {
                faults = JsonSerializer.Deserialize(faultJson, QwenJsonContext.Default.FaultOptions);
            }
            catch (JsonException e)
            {
                error = $"rollout: --faults is not valid JSON: {e.Message}";
                return null;
            }
        }
        if (values.TryGetValue("--until", out var until) && until is not ("promoted" or "stable"))
        {
            error = "rollout: --until is promoted or stable";
            return null;
        }
        TimeSpan Seconds(string name, double fallback) =>
            TimeSpan.FromSeconds(values.TryGetValue(name, out var v) && double.TryParse(v, System.Globalization.CultureInfo.InvariantCulture, out var s) && s > 0 ? s : fallback);
        return new PipelineRequest
        {
            Release = release, ModelPath = model, ModelSha256 = values.GetValueOrDefault("--model-sha256")?.ToLowerInvariant(), Profile = profile,
            Notes = values.GetValueOrDefault("--notes"), Faults = faults, Colour = values.GetValueOrDefault("--colour"),
            Actor = values.GetValueOrDefault("--actor") ?? "pipeline", Wait = !flags.Contains("--no-wait"), UntilPromoted = until == "promoted",
            ReadyTimeout = Seconds("--ready-timeout", 600), RolloutTimeout = Seconds("--timeout", 3600),
        };
    }

    private static string FullUsage()
    {
        var width = VerbHelp.Verbs.Keys.Max(v => v.Length);
        var lines = new List<string> { Usage.TrimEnd(), "", "verbs:" };
        lines.AddRange(VerbHelp.Verbs.Select(v => $"  {v.Key.PadRight(width)}  {v.Value.Summary}"));
        lines.AddRange(["", "examples:", "  qwenctl status", "  qwenctl start '{\"candidate\":\"green\",\"reason\":\"profile v2\"}'",
            "  qwenctl promote '{\"full\":true}'", "  qwenctl rollback '{\"reason\":\"answers got colder\"}'", "  qwenctl rollback --help"]);
        return string.Join('\n', lines);
    }

    private static string VerbUsage(string verb)
    {
        var h = VerbHelp.Verbs[verb];
        return string.Join('\n', [$"qwenctl {verb} ['<json>']: {h.Summary}.", $"Sends {Rollouts.Control(verb)}. JSON fields: {h.Fields}.", "", "examples:",
            .. h.Examples.Select(e => $"  qwenctl {e}")]);
    }

    private static NatsAuthOpts Credentials(string url)
    {
        if (Uri.TryCreate(url.Split(',')[0], UriKind.Absolute, out var uri) && uri.UserInfo.Length > 0)
            return NatsAuthOpts.Default; // NATS.Net reads user:pass from the URL itself.
        if (Environment.GetEnvironmentVariable("NATS_USER") is { Length: > 0 } user)
            return NatsAuthOpts.Default with { Username = user, Password = Environment.GetEnvironmentVariable("NATS_PASSWORD") ?? "" };
        if (Environment.GetEnvironmentVariable("QWEN_CTL_USERS_FILE") is { Length: > 0 } file && File.Exists(file))
        {
            foreach (var line in File.ReadLines(file))
            {
                var (key, _, value) = line.Trim().Partition('=');
                if (key == "QWEN_NATS_OPERATOR_PASSWORD")
                    return NatsAuthOpts.Default with { Username = "operator", Password = value };
            }
        }
        return NatsAuthOpts.Default;
    }

    private static (string, string, string) Partition(this string s, char c)
    {
        var i = s.IndexOf(c, StringComparison.Ordinal);
        return i < 0 ? (s, "", "") : (s[..i], c.ToString(), s[(i + 1)..]);
    }

    private static readonly JsonSerializerOptions Indented = new(QwenJsonContext.Default.Options)
    {
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private static string Pretty(ControlReply reply) => JsonSerializer.Serialize(reply, Indented.GetTypeInfo(typeof(ControlReply)));
}
