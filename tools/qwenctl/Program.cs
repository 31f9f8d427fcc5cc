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
               qwenctl --help             this text

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
        if (args.Length > 2)
        {
            Console.Error.WriteLine($"qwenctl: {verb} takes one JSON argument, got {args.Length - 1}; quote it: qwenctl {verb} '{{...}}'");
            return 2;
        }

        var url = Environment.GetEnvironmentVariable("NATS_URL") is { Length: > 0 } u ? u : "nats://127.0.0.1:4222";
        var timeout = TimeSpan.FromSeconds(double.TryParse(Environment.GetEnvironmentVariable("QWEN_CTL_TIMEOUT"), System.Globalization.CultureInfo.InvariantCulture, out var s) && s > 0
            ? s
            : verb == Rollouts.Verbs.Golden ? 120 : 5);
        var auth = Credentials(url);
        await using var nats = new NatsConnection(QwenConnection.Options(url, "qwenctl", auth.Username, auth.Password, connectTimeout: TimeSpan.FromSeconds(5), reconnectForever: false));
        ControlReply reply;
        try
        {
            await nats.ConnectAsync();
            reply = await new ControlClient(nats, timeout).SendAsync(verb, args.Length > 1 ? args[1] : "");
        }
        catch (Exception e) when (e is NatsException or TimeoutException or OperationCanceledException)
        {
            var why = e is NatsNoRespondersException ? $"no promoter answered on {Rollouts.Control(verb)} (no responders)"
                : e is NatsNoReplyException ? $"no promoter answered on {Rollouts.Control(verb)} within {timeout.TotalSeconds:0} s"
                : $"cannot reach NATS at {url}: {e.Message}";
            Console.WriteLine(Pretty(ControlReply.Refused("unavailable", why)));
            return 1;
        }
        Console.WriteLine(Pretty(reply));
        return reply.Ok ? 0 : 1;
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
