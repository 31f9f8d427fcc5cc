using System.Net;
using System.Net.Sockets;

namespace QwenNats.Testing;

/// <summary>Loopback ports for servers a test or the bench starts.</summary>
public static class Ports
{
    // Handed out below the kernel's ephemeral range, each once per process: a port is bound by its server a few seconds
    // after it is chosen, and a port from the ephemeral range can be taken meanwhile by any outgoing connection (the
    // tests open many in parallel). A random start keeps two processes picking at once apart.
    private const int Low = 20_000, High = 32_000;
    private static int _next = Random.Shared.Next(Low, High);

    /// <summary>A free loopback TCP port: not in use now, outside the ephemeral range when that starts above
    /// <c>32000</c> (otherwise one the kernel picks), and never handed out twice by this process.</summary>
    public static int Free()
    {
        if (EphemeralStart() > High)
        {
            for (var tries = 0; tries < High - Low; tries++)
            {
                var port = Low + (int)((uint)(Interlocked.Increment(ref _next) - Low) % (High - Low));
                if (Bindable(port))
                    return port;
            }
        }
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    private static bool Bindable(int port)
    {
        try
        {
            using var l = new TcpListener(IPAddress.Loopback, port);
            l.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>The first port of the kernel's ephemeral range (Linux); 0 when unknown.</summary>
    private static int EphemeralStart()
    {
        try
        {
            var range = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            return int.Parse(range[0], System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return 0;
        }
    }
}
