using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using GpuPool.Perf.Harness;

namespace GpuPool.Perf.Anchors;

/// <summary>
/// The floor for a small synchronous call: a 16-byte message echoed over one loopback TCP connection
/// (NoDelay both ends) by a server task in this process, with plain async Socket calls.
/// </summary>
public sealed class SocketEchoAnchor : IBenchmark
{
    private const int MessageBytes = 16;

    public string Name => "raw socket echo anchor";

    public async Task<IReadOnlyList<Measurement>> RunAsync(BenchmarkOptions options, CancellationToken cancellationToken)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var server = Task.Run(() => EchoServerAsync(listener, stop.Token), CancellationToken.None);

        var ticks = new long[options.LatencyRoundTrips];
        try
        {
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await client.ConnectAsync(listener.LocalEndPoint!, cancellationToken).ConfigureAwait(false);
            var message = new byte[MessageBytes];
            var reply = new byte[MessageBytes];
            Random.Shared.NextBytes(message);

            for (var i = 0; i < options.LatencyWarmupRoundTrips; i++)
            {
                await RoundTripAsync(client, message, reply, cancellationToken).ConfigureAwait(false);
            }

            for (var i = 0; i < ticks.Length; i++)
            {
                var start = Stopwatch.GetTimestamp();
                await RoundTripAsync(client, message, reply, cancellationToken).ConfigureAwait(false);
                ticks[i] = Stopwatch.GetTimestamp() - start;
            }

            if (!reply.AsSpan().SequenceEqual(message))
            {
                throw new InvalidOperationException("The echo server returned different bytes.");
            }

            client.Shutdown(SocketShutdown.Send);
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            await server.ConfigureAwait(false);
        }

        var note = $"{ticks.Length:N0} round trips after {options.LatencyWarmupRoundTrips:N0} warm-up";
        return
        [
            new Measurement(Groups.Latency, AnchorNames.SocketEchoP50, Stats.PercentileMicroseconds(ticks, 50), Units.Microseconds, MessageBytes, Note: note),
            new Measurement(Groups.Latency, AnchorNames.SocketEchoP99, Stats.PercentileMicroseconds(ticks, 99), Units.Microseconds, MessageBytes, Note: note),
        ];
    }

    private static async ValueTask RoundTripAsync(Socket socket, byte[] message, byte[] reply, CancellationToken cancellationToken)
    {
        await socket.SendAsync(message, SocketFlags.None, cancellationToken).ConfigureAwait(false);
        if (!await ReceiveExactlyAsync(socket, reply, cancellationToken).ConfigureAwait(false))
        {
            throw new InvalidOperationException("The echo server closed the connection.");
        }
    }

    private static async Task EchoServerAsync(Socket listener, CancellationToken cancellationToken)
    {
        try
        {
            using var peer = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
            peer.NoDelay = true;
            var buffer = new byte[MessageBytes];
            while (await ReceiveExactlyAsync(peer, buffer, cancellationToken).ConfigureAwait(false))
            {
                await peer.SendAsync(buffer, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            // The client is done (or the run was cancelled).
        }
    }

    /// <summary>False when the peer closed before a whole message arrived.</summary>
    private static async ValueTask<bool> ReceiveExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await socket.ReceiveAsync(buffer[read..], SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                return false;
            }

            read += n;
        }

        return true;
    }
}
