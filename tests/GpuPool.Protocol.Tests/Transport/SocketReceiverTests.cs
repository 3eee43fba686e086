using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using GpuPool.Protocol.Transport;

namespace GpuPool.Protocol.Tests.Transport;

/// <summary>
/// Receiving the rest of a frame by waiting in poll on the calling thread: every byte arrives in order whatever the
/// sender's pace (pauses longer than a wait slice send it back to the asynchronous receive), a peer that closes early
/// is an error naming it, and a cancelled receive stops.
/// </summary>
public sealed class SocketReceiverTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    public static TheoryData<string> Transports => ["tcp", "unix"];

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Every_byte_arrives_in_order_when_the_sender_pauses_longer_than_a_wait_slice(string transport)
    {
        var (sender, receiver) = await PairAsync(transport);
        using (sender)
        using (receiver)
        {
            var data = RandomNumberGenerator.GetBytes(3 << 20);
            var pieces = new Random(7);
            var sending = Task.Run(async () =>
            {
                for (var at = 0; at < data.Length;)
                {
                    var n = Math.Min(pieces.Next(1, 256 << 10), data.Length - at);
                    await sender.SendAsync(data.AsMemory(at, n), SocketFlags.None);
                    at += n;
                    if (pieces.Next(8) == 0)
                    {
                        await Task.Delay(3 * SocketReceiver.WaitSliceMs);
                    }
                }
            });
            var into = new byte[data.Length];

            await SocketReceiver.ReceiveExactlyAsync(receiver, into, "broker", CancellationToken.None).AsTask().WaitAsync(Bound);
            await sending.WaitAsync(Bound);

            Assert.Equal(SHA256.HashData(data), SHA256.HashData(into));
        }
    }

    [Fact]
    public async Task Poll_receive_is_on_for_TCP_on_Linux_and_stays_on_after_receiving()
    {
        var (sender, receiver) = await PairAsync("tcp");
        using (sender)
        using (receiver)
        {
            await sender.SendAsync(new byte[] { 1, 2, 3 }, SocketFlags.None);
            var into = new byte[3];
            await SocketReceiver.ReceiveExactlyAsync(receiver, into, "client", CancellationToken.None).AsTask().WaitAsync(Bound);

            // Were libc's recv or poll not to be found, the receiver would have switched itself off.
            Assert.Equal(OperatingSystem.IsLinux(), SocketReceiver.Enabled);
            Assert.Equal(new byte[] { 1, 2, 3 }, into);
        }
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task A_peer_that_closes_in_the_middle_is_an_IOException_naming_the_peer(string transport)
    {
        var (sender, receiver) = await PairAsync(transport);
        using (sender)
        using (receiver)
        {
            await sender.SendAsync(new byte[100], SocketFlags.None);
            sender.Shutdown(SocketShutdown.Send);

            var error = await Assert.ThrowsAsync<IOException>(() => SocketReceiver.ReceiveExactlyAsync(receiver, new byte[1000], "broker", CancellationToken.None).AsTask().WaitAsync(Bound));

            Assert.Equal("the broker closed the connection in the middle of a frame", error.Message);
        }
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task ReceiveSome_gives_what_has_come_and_zero_at_the_end_of_the_stream(string transport)
    {
        var (sender, receiver) = await PairAsync(transport);
        using (sender)
        using (receiver)
        {
            await sender.SendAsync(new byte[] { 9, 8 }, SocketFlags.None);
            sender.Shutdown(SocketShutdown.Send);
            var into = new byte[16];

            var first = await SocketReceiver.ReceiveSomeAsync(receiver, into, CancellationToken.None).AsTask().WaitAsync(Bound);
            var second = first < 2 ? await SocketReceiver.ReceiveSomeAsync(receiver, into.AsMemory(first), CancellationToken.None).AsTask().WaitAsync(Bound) : 0;
            var end = await SocketReceiver.ReceiveSomeAsync(receiver, into.AsMemory(first + second), CancellationToken.None).AsTask().WaitAsync(Bound);

            Assert.Equal(2, first + second);
            Assert.Equal(new byte[] { 9, 8 }, into[..2]);
            Assert.Equal(0, end);
        }
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task A_cancelled_receive_that_is_waiting_stops(string transport)
    {
        var (sender, receiver) = await PairAsync(transport);
        using (sender)
        using (receiver)
        {
            await sender.SendAsync(new byte[10], SocketFlags.None);
            using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));

            // Ten bytes of a thousand came; the rest never will.
            var receiving = SocketReceiver.ReceiveExactlyAsync(receiver, new byte[1000], "client", cancel.Token).AsTask();

            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => receiving.WaitAsync(Bound));
        }
    }

    /// <summary>A connected pair over loopback TCP or a Unix socket, both sides non-blocking as the fast path's are.</summary>
    private static async Task<(Socket Sender, Socket Receiver)> PairAsync(string transport)
    {
        EndPoint endpoint = transport == "unix"
            ? new UnixDomainSocketEndPoint(Path.Combine(Path.GetTempPath(), $"gpupool-recv-{Guid.NewGuid():N}.sock"))
            : new IPEndPoint(IPAddress.Loopback, 0);
        using var listener = new Socket(endpoint.AddressFamily, SocketType.Stream, transport == "unix" ? ProtocolType.Unspecified : ProtocolType.Tcp);
        listener.Bind(endpoint);
        listener.Listen();
        var sender = new Socket(endpoint.AddressFamily, SocketType.Stream, transport == "unix" ? ProtocolType.Unspecified : ProtocolType.Tcp);
        var accepting = listener.AcceptAsync();
        await sender.ConnectAsync(listener.LocalEndPoint!);
        var receiver = await accepting;
        if (endpoint is UnixDomainSocketEndPoint unix)
        {
            File.Delete(unix.ToString());
        }

        return (sender, receiver);
    }
}
