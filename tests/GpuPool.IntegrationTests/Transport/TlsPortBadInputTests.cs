using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using GpuPool.Client;

namespace GpuPool.IntegrationTests.Transport;

/// <summary>One TLS pool for the bad-input tests of a class.</summary>
public sealed class TlsPoolFixture : IAsyncLifetime
{
    public TlsPool Pool { get; private set; } = null!;

    public async Task InitializeAsync() => Pool = await TlsPool.StartAsync(idle: TimeSpan.FromSeconds(5));

    public async Task DisposeAsync() => await Pool.DisposeAsync();
}

/// <summary>
/// Bad input at every TLS port — the scheduler's and the broker's gRPC ports and the broker's TCP fast path — both
/// where a TLS handshake should begin (random bytes, 10 MB of garbage, a handshake cut short) and inside a TLS
/// connection that completed its handshake (random bytes, 10 MB of garbage, an HTTP/1.1 request). Each connection is
/// ended by the server (a handshake cut short, once the handshake's deadline passes) and a good client is served
/// after: a lease, and a session over the fast path and over gRPC that copies bytes both ways.
/// </summary>
public sealed class TlsPortBadInputTests(TlsPoolFixture fixture) : IClassFixture<TlsPoolFixture>
{
    /// <summary>Past the servers' handshake deadline (10 s) and idle deadline (5 s here), with room for a loaded machine.</summary>
    private static readonly TimeSpan CloseBound = TimeSpan.FromSeconds(40);

    public static TheoryData<string, string> Cases()
    {
        var cases = new TheoryData<string, string>();
        foreach (var port in new[] { "scheduler", "broker", "fast path" })
        {
            foreach (var input in new[] { "random bytes for a handshake", "10 MB of garbage for a handshake", "a handshake cut short", "random bytes after the handshake", "10 MB of garbage after the handshake", "HTTP/1.1 after the handshake" })
            {
                cases.Add(port, input);
            }
        }

        return cases;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Bad_input_at_a_TLS_port_ends_its_own_connection_and_a_good_client_is_served_after(string port, string input)
    {
        var pool = fixture.Pool;
        var endpoint = port switch
        {
            "scheduler" => DnsEndPoint(pool.Scheduler.Endpoint),
            "broker" => DnsEndPoint(pool.Broker.Endpoint),
            _ => IPEndPoint.Parse(pool.Broker.FastPath.Tcp),
        };
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(endpoint);
        await using var network = new NetworkStream(socket, ownsSocket: false);

        bool closed;
        if (input.EndsWith("after the handshake", StringComparison.Ordinal))
        {
            await using var tls = new SslStream(network, leaveInnerStreamOpen: true);
            var options = new PoolTlsOptions(pool).For(port);
            await tls.AuthenticateAsClientAsync(options).WaitAsync(CloseBound);
            await SendAsync(tls, Payload(input));
            closed = await ClosedWithinAsync(tls, CloseBound);
        }
        else
        {
            await SendAsync(network, Payload(input));
            closed = await ClosedWithinAsync(network, CloseBound);
        }

        Assert.True(closed, $"the {port} kept a connection open after {input}");
        await AssertServedAsync(pool);
    }

    private static EndPoint DnsEndPoint(string url)
    {
        var uri = new Uri(url);
        return new IPEndPoint(IPAddress.Parse(uri.Host.Trim('[', ']')), uri.Port);
    }

    private static byte[] Payload(string input) => input switch
    {
        "random bytes for a handshake" or "random bytes after the handshake" => RandomBytes(4096, 1),
        "10 MB of garbage for a handshake" or "10 MB of garbage after the handshake" => RandomBytes(10 << 20, 2),

        // A TLS record header announcing a 512-byte handshake message, and only its first bytes.
        "a handshake cut short" => [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, .. RandomBytes(20, 3)],
        _ => Encoding.ASCII.GetBytes("GET /gpupool.v1.Leases/Allocate HTTP/1.1\r\nHost: gpupool\r\n\r\n"),
    };

    private static byte[] RandomBytes(int count, int seed)
    {
        var bytes = new byte[count];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>Sends what the server takes before it ends the connection.</summary>
    private static async Task SendAsync(Stream stream, byte[] bytes)
    {
        try
        {
            for (var at = 0; at < bytes.Length; at += 64 << 10)
            {
                await stream.WriteAsync(bytes.AsMemory(at, Math.Min(64 << 10, bytes.Length - at))).AsTask().WaitAsync(CloseBound);
            }

            await stream.FlushAsync();
        }
        catch (IOException)
        {
            // The server ended the connection part way: what it had to say about the garbage, it said.
        }
    }

    /// <summary>Whether the server ends the connection within <paramref name="limit"/> (reading and dropping what it sends).</summary>
    private static async Task<bool> ClosedWithinAsync(Stream stream, TimeSpan limit)
    {
        using var timeout = new CancellationTokenSource(limit);
        var buffer = new byte[16 << 10];
        try
        {
            while (await stream.ReadAsync(buffer, timeout.Token) > 0)
            {
            }

            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        catch (IOException)
        {
            return true;
        }
    }

    /// <summary>A lease, and sessions over the fast path and gRPC that copy bytes both ways.</summary>
    private static async Task AssertServedAsync(TlsPool pool)
    {
        await using var lease = await pool.LeaseAsync();
        foreach (var kind in new[] { SessionTransportKind.Tcp, SessionTransportKind.Grpc })
        {
            await using var session = await lease.OpenSessionAsync(kind);
            var data = RandomNumberGenerator.GetBytes(100_000);
            var ptr = await session.AllocAsync((ulong)data.Length);
            await session.CopyToDeviceAsync(ptr, data);
            var back = new byte[data.Length];
            await session.CopyToHostAsync(ptr, back);
            Assert.True(data.AsSpan().SequenceEqual(back), $"the copy over {kind} came back different");
            await session.FreeAsync(ptr);
        }
    }

    /// <summary>A client's TLS options for each port: the pool's CA, and h2 for the gRPC ports.</summary>
    private sealed class PoolTlsOptions(TlsPool pool)
    {
        public SslClientAuthenticationOptions For(string port)
        {
            var options = new GpuPool.Protocol.Security.PoolTls(pool.Pki.PublicAuthority).ClientOptions("127.0.0.1");
            if (port != "fast path")
            {
                options.ApplicationProtocols = [SslApplicationProtocol.Http2];
            }

            return options;
        }
    }
}
