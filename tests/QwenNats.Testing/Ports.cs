using System.Net;
using System.Net.Sockets;

namespace QwenNats.Testing;

/// <summary>Loopback ports for servers a test or the bench starts.</summary>
public static class Ports
{
    /// <summary>A free loopback TCP port (bound and released).</summary>
    public static int Free()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
