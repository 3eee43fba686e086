using System.Net.Sockets;
using System.Text;
using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Transport;

/// <summary>
/// Bad input at the scheduler's and the broker's gRPC ports, from a plain socket: random bytes, an HTTP/2 preface cut
/// short, an HTTP/1.1 request, 10 MB of garbage. The server ends that connection (or answers and ends it) and goes on
/// serving a good client: a lease, a session over gRPC, a kernel checked against the host.
/// </summary>
public sealed class GrpcPortBadInputTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    public static TheoryData<string, string> Cases()
    {
        var cases = new TheoryData<string, string>();
        foreach (var port in new[] { "scheduler", "broker" })
        {
            foreach (var input in new[] { "random bytes", "truncated HTTP/2 preface", "HTTP/1.1 request", "10 MB of garbage" })
            {
                cases.Add(port, input);
            }
        }

        return cases;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Bad_input_ends_only_its_own_connection_and_a_good_client_is_served_after(string port, string input)
    {
        var endpoint = new Uri(port == "scheduler" ? pool.Scheduler.Endpoint : pool.Broker.Endpoint);
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(endpoint.Host, endpoint.Port);

        var sent = await SendAsync(socket, Bytes(input));

        // A preface cut short is a connection waiting for the rest: Kestrel holds it until its keep-alive timeout
        // (130 s), which this test does not wait out; everything else ends the connection at once.
        var truncated = input == "truncated HTTP/2 preface";
        var closed = await ClosedWithinAsync(socket, TimeSpan.FromSeconds(truncated ? 1 : 15));

        Assert.True(sent > 0, "nothing could be sent");
        Assert.True(closed || truncated, $"the {port} kept a connection open after {input}");
        await pool.AssertServesAnotherLeaseAsync(SessionTransportKind.Grpc);
    }

    private static byte[] Bytes(string input) => input switch
    {
        "random bytes" => RandomBytes(4096, 1),
        "truncated HTTP/2 preface" => Encoding.ASCII.GetBytes("PRI * HTTP/2.0\r\n\r\nSM"),
        "HTTP/1.1 request" => Encoding.ASCII.GetBytes("GET /gpupool.v1.Leases/Allocate HTTP/1.1\r\nHost: scheduler\r\n\r\n"),
        _ => RandomBytes(10 << 20, 2),
    };

    private static byte[] RandomBytes(int count, int seed)
    {
        var bytes = new byte[count];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>Sends what the server takes before it ends the connection; the bytes sent.</summary>
    private static async Task<long> SendAsync(Socket socket, byte[] bytes)
    {
        long sent = 0;
        try
        {
            for (var at = 0; at < bytes.Length; at += 64 << 10)
            {
                sent += await socket.SendAsync(bytes.AsMemory(at, Math.Min(64 << 10, bytes.Length - at)), SocketFlags.None);
            }
        }
        catch (SocketException)
        {
            // The server ended the connection part way: what it had to say about the garbage, it said.
        }

        return sent;
    }

    /// <summary>Whether the server ends the connection within <paramref name="limit"/> (reading and dropping what it sends).</summary>
    private static async Task<bool> ClosedWithinAsync(Socket socket, TimeSpan limit)
    {
        using var timeout = new CancellationTokenSource(limit);
        var buffer = new byte[16 << 10];
        try
        {
            while (await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token) > 0)
            {
            }

            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        catch (SocketException)
        {
            return true;
        }
    }
}
