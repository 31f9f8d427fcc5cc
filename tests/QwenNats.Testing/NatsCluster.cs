using System.Text.Json;
using NATS.Client.Core;

namespace QwenNats.Testing;

/// <summary>
/// A JetStream cluster of real <c>nats-server</c> processes on loopback, each running the shipped
/// <c>deploy/nats/cluster-node.conf</c> (the project's users and permissions included, routes authenticated with
/// their own password), on random client, route and monitoring ports. Nodes can be killed (SIGKILL) and restarted
/// with their stores.
/// </summary>
public sealed class NatsCluster : IAsyncDisposable
{
    private readonly Dictionary<string, NatsServer> _nodes;

    private NatsCluster(Dictionary<string, NatsServer> nodes) => _nodes = nodes;

    public static string NodeConf => Path.Combine(Paths.RepoRoot, "deploy", "nats", "cluster-node.conf");

    /// <summary>Node name (its <c>server_name</c>, qwen-nats-1 …) → the node.</summary>
    public IReadOnlyDictionary<string, NatsServer> Nodes => _nodes;

    /// <summary>Every node's client URL, comma-separated: what services are given, so they can fail over.</summary>
    public string Url => string.Join(',', _nodes.Values.Select(n => n.Url));

    /// <param name="environment">The users' passwords (<see cref="NatsUsers.ServerEnvironment"/>).</param>
    public static async Task<NatsCluster> StartAsync(IReadOnlyDictionary<string, string> environment, int size = 3)
    {
        var routePorts = Enumerable.Range(0, size).Select(_ => Ports.Free()).ToArray();
        var routePassword = "route-" + Guid.NewGuid().ToString("N")[..12];
        var routes = "[" + string.Join(", ", routePorts.Select(p => $"\"nats-route://route:{routePassword}@127.0.0.1:{p}\"")) + "]";
        var starts = Enumerable.Range(0, size).Select(async i =>
        {
            var name = $"qwen-nats-{i + 1}";
            var dir = Path.Combine(Path.GetTempPath(), $"qwen-nats-cluster-{Guid.NewGuid().ToString("N")[..8]}-{i + 1}");
            var clientPort = Ports.Free();
            var httpPort = Ports.Free();
            var env = new Dictionary<string, string>(environment)
            {
                ["QWEN_NATS_NAME"] = name,
                ["QWEN_NATS_STORE"] = Path.Combine(dir, "js"),
                ["QWEN_NATS_ROUTES"] = routes,
                ["QWEN_NATS_ROUTE_PASSWORD"] = routePassword,
                // The node's listen addresses, all on loopback (the flags below say the same ports again).
                ["QWEN_NATS_CLIENT_LISTEN"] = $"127.0.0.1:{clientPort}",
                ["QWEN_NATS_ROUTE_LISTEN"] = $"127.0.0.1:{routePorts[i]}",
                ["QWEN_NATS_HTTP_LISTEN"] = $"127.0.0.1:{httpPort}",
            };
            string[] args = [NatsServer.StoreFromConfig, "--cluster", $"nats://127.0.0.1:{routePorts[i]}", "-m", httpPort.ToString(System.Globalization.CultureInfo.InvariantCulture)];
            return (name, node: await NatsServer.StartAsync(NodeConf, env, clientPort, args, dir));
        });
        var nodes = await Task.WhenAll(starts);
        return new NatsCluster(nodes.ToDictionary(n => n.name, n => n.node));
    }

    /// <summary>
    /// Until JetStream answers through <paramref name="nats"/> and the named stream (when given) has a leader and,
    /// with <paramref name="allCurrent"/>, every replica current; returns the leader's node name.
    /// </summary>
    public static async Task<string?> WaitForStreamAsync(NatsConnection nats, string? stream, TimeSpan timeout, bool allCurrent = true)
    {
        using var cts = new CancellationTokenSource(timeout);
        string last = "no answer";
        while (true)
        {
            try
            {
                var subject = stream is null ? "$JS.API.INFO" : $"$JS.API.STREAM.INFO.{stream}";
                var reply = await nats.RequestAsync<byte[], byte[]>(subject, [], cancellationToken: cts.Token);
                using var doc = JsonDocument.Parse(reply.Data ?? []);
                var root = doc.RootElement;
                last = root.GetRawText();
                if (!root.TryGetProperty("error", out _))
                {
                    if (stream is null) return null;
                    if (root.TryGetProperty("cluster", out var cluster) && cluster.TryGetProperty("leader", out var leader)
                        && (!allCurrent || (cluster.TryGetProperty("replicas", out var replicas)
                            && replicas.EnumerateArray().All(r => r.TryGetProperty("current", out var c) && c.GetBoolean()))))
                        return leader.GetString();
                }
            }
            catch (Exception e) when (e is NatsException or JsonException && !cts.IsCancellationRequested)
            {
                last = e.Message;
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"{stream ?? "JetStream"} was not ready in {timeout}: {last}");
            }
            try
            {
                await Task.Delay(200, cts.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"{stream ?? "JetStream"} was not ready in {timeout}: {last}");
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in _nodes.Values)
            await node.DisposeAsync();
    }
}
