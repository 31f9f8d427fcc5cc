using System.Diagnostics;
using System.Text;
using System.Text.Json;
using NATS.Client.Core;
using QwenNats.Messaging;
using QwenNats.Messaging.Internal;
using QwenNats.ServiceDefaults;

namespace QwenNats.Bench;

/// <summary>
/// Switch propagation: the time from the <c>qwen.ctl</c> reply to (a) the ingress applying the new state and
/// (b) the first request of a new session answered by the new colour, on every ingress. Each switch is either
/// "set-weight 100" (to the candidate) or "rollback" (back to live), alternating.
/// (a) is observed with a long poll sent before the command, <c>GET /api/rollout/applied?version=N</c>, which the
/// ingress answers the moment its KV watch applies version N (the state its routing reads from then on), so no
/// polling interval and no per-poll cost is in the figure; only the answer's way back over loopback HTTP is. The
/// figure is negative when the ingress applied the state before the reply reached the operator.
/// </summary>
public static class SwitchPropagation
{
    public static async Task<int> RunAsync(string[] args)
    {
        var opts = Args.Parse(args);
        var natsUrl = opts.GetValueOrDefault("nats", "nats://127.0.0.1:4222");
        var ingresses = opts.GetValueOrDefault("ingress", "http://127.0.0.1:8080").Split(',', StringSplitOptions.RemoveEmptyEntries);
        var switches = int.Parse(opts.GetValueOrDefault("switches", "100"), System.Globalization.CultureInfo.InvariantCulture);

        await using var nats = Nats.Connect(natsUrl, "qwen-bench");
        await nats.ConnectAsync();
        using var http = new HttpClient(new SocketsHttpHandler { UseCookies = false, MaxConnectionsPerServer = 16 }) { Timeout = TimeSpan.FromSeconds(30) };

        var status = await CtlAsync(nats, "status", "");
        if (status.State is { Phase: not (RolloutPhase.Stable or RolloutPhase.RolledBack) })
            await CtlAsync(nats, "abort", "{\"reason\":\"bench reset\"}");
        var live = (await CtlAsync(nats, "status", "")).State!.Live;
        var candidate = live == Colours.Blue ? Colours.Green : Colours.Blue;

        var view = ingresses.ToDictionary(i => i, _ => new List<double>());
        var served = ingresses.ToDictionary(i => i, _ => new List<double>());
        var roundTrip = new List<double>();
        var known = (await CtlAsync(nats, "status", "")).State!.Version;
        var clock = Stopwatch.StartNew();
        for (var n = 0; n < switches; n++)
        {
            var toCandidate = n % 2 == 0;
            if (toCandidate)
            {
                var start = await CtlAsync(nats, "start", $"{{\"candidate\":\"{candidate}\",\"reason\":\"bench\"}}");
                if (!start.Ok) throw new InvalidOperationException(start.Error);
                await Task.WhenAll(ingresses.Select(i => AppliedAsync(http, i, start.State!.Version, clock)));
                known = start.State!.Version;
            }
            // Every ingress is asked, before the command, to answer when it applies the next state version.
            var applied = ingresses.ToDictionary(i => i, i => AppliedAsync(http, i, known + 1, clock));
            var sent = clock.Elapsed.TotalMilliseconds;
            var reply = toCandidate
                ? await CtlAsync(nats, "set-weight", "{\"weight\":100,\"reason\":\"bench\"}")
                : await CtlAsync(nats, "rollback", "{\"reason\":\"bench\"}");
            var replied = clock.Elapsed.TotalMilliseconds;
            if (!reply.Ok) throw new InvalidOperationException(reply.Error);
            roundTrip.Add(replied - sent);
            known = reply.State!.Version;
            var expected = toCandidate ? candidate : live;
            await Task.WhenAll(ingresses.Select(async ingress =>
            {
                var v = Task.Run(async () =>
                {
                    // Only a state at least as new as the reply's counts (a timer's transition in between is not the switch).
                    while ((await applied[ingress]).Version < reply.State!.Version)
                        applied[ingress] = AppliedAsync(http, ingress, reply.State!.Version, clock);
                    return (await applied[ingress]).At - replied;
                });
                var s = Task.Run(async () =>
                {
                    while (true)
                    {
                        using var req = new HttpRequestMessage(HttpMethod.Post, $"{ingress}/v1/sentiment")
                        {
                            Content = new StringContent("{\"input\":\"ok\"}", Encoding.UTF8, "application/json"),
                        };
                        req.Headers.Add("X-Session-Id", $"bench-{Guid.NewGuid():N}");
                        using var r = await http.SendAsync(req);
                        if (r.Headers.TryGetValues("X-Qwen-Colour", out var c) && c.First() == expected)
                            return clock.Elapsed.TotalMilliseconds - replied;
                    }
                });
                var (viewMs, servedMs) = (await v, await s);
                lock (view)
                {
                    view[ingress].Add(viewMs);
                    served[ingress].Add(servedMs);
                }
            }));
        }

        var table = new StringBuilder();
        table.AppendLine($"Switch propagation over {switches} switches (half set-weight 100 to {candidate}, half rollback to {live}); milliseconds after the qwen.ctl reply " +
                         "(negative: the ingress applied the state before the reply arrived).");
        table.AppendLine();
        table.AppendLine($"The qwen.ctl command itself (request to reply): p50 {P(roundTrip, 50):F2} ms, p99 {P(roundTrip, 99):F2} ms, max {roundTrip.Max():F2} ms.");
        table.AppendLine();
        table.AppendLine("| ingress | state applied p50 | p99 | max | first request on new colour p50 | p99 | max |");
        table.AppendLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        var k = 1;
        foreach (var ingress in ingresses)
        {
            var a = view[ingress];
            var b = served[ingress];
            table.AppendLine($"| #{k++} {ingress} | {P(a, 50):F2} | {P(a, 99):F2} | {a.Max():F2} | {P(b, 50):F2} | {P(b, 99):F2} | {b.Max():F2} |");
        }
        Console.Write(table);
        return 0;
    }

    /// <summary>
    /// Long-polls the ingress until it applies state <paramref name="version"/> (or later); returns that state's
    /// version and when (milliseconds on <paramref name="clock"/>) the ingress's answer arrived.
    /// </summary>
    private static async Task<(long Version, double At)> AppliedAsync(HttpClient http, string ingress, long version, Stopwatch clock)
    {
        while (true)
        {
            // The ingress answers after at most wait_ms (reached: false) and is asked again: no client timeout is hit.
            var body = await http.GetStringAsync($"{ingress}/api/rollout/applied?version={version}&wait_ms={(int)(http.Timeout.TotalMilliseconds / 2)}");
            var at = clock.Elapsed.TotalMilliseconds;
            using var doc = JsonDocument.Parse(body);
            if (doc.RootElement.GetProperty("reached").GetBoolean())
                return (doc.RootElement.GetProperty("state").GetProperty("version").GetInt64(), at);
        }
    }

    private static double P(List<double> values, double percentile) => Percentiles.Of(values, percentile / 100);

    internal static Task<ControlReply> CtlAsync(NatsConnection nats, string verb, string json) =>
        new QwenNats.Messaging.Control.ControlClient(nats).SendAsync(verb, json);
}

internal static class Args
{
    public static Dictionary<string, string> Parse(string[] args)
    {
        var d = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        for (var i = 0; i + 1 < args.Length; i += 2)
            d[args[i].TrimStart('-')] = args[i + 1];
        return d;
    }
}
