using System.Buffers;
using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests.Transport;

/// <summary>
/// A fast-path connection cut in the middle of a copy to the device: nothing of the cut copy becomes
/// visible on the device, and a client whose connection died is told so instead of seeing success.
/// </summary>
public sealed class FastPathDisconnectTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    private const int Size = 8 << 20;
    private const int Sent = 3 << 20;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Connection_cut_in_the_middle_of_a_copy_frame_leaves_the_destination_as_it_was(bool reset)
    {
        await using var lease = await pool.LeaseAsync();
        DevicePtr ptr;
        await using (var setup = await lease.OpenSessionAsync(SessionTransportKind.Tcp))
        {
            ptr = await setup.AllocAsync(Size);
            await setup.MemsetAsync(ptr, 0x11, Size);
            await setup.SynchronizeAsync();
        }

        // A copy frame declaring 8 MiB, 3 MiB of it, and the connection is gone.
        using (var socket = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp))
        {
            await socket.HelloAsync(lease.Id, lease.Token);
            await socket.SendAsync(CopyFrame(ptr, seq: 2, fill: 0xEE, declared: Size, sent: Sent));
            if (reset)
            {
                socket.Abort();
            }
            else
            {
                socket.ShutdownSend();
                Assert.Empty(await socket.ReadToCloseAsync());
            }
        }

        await using (var next = await Sessions.OpenWhenDetachedAsync(lease))
        {
            var back = await next.CopyToHostAsync<byte>(ptr, Size);
            var changed = back.AsSpan().IndexOfAnyExcept((byte)0x11);
            Assert.True(changed < 0, $"the cut copy is visible: byte {changed} is 0x{(changed < 0 ? 0x11 : back[changed]):x2}");
        }

        // The same frame, whole, does land: the cut one was refused for being cut, not for being wrong.
        using (var socket = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp))
        {
            await socket.HelloAsync(lease.Id, lease.Token);
            await socket.SendAsync(CopyFrame(ptr, seq: 2, fill: 0xEE, declared: Size, sent: Size));
            var synced = await socket.CallAsync(new OpRequest { Seq = 3, Synchronize = new CtxSynchronize() });
            Assert.Equal(FrameType.Reply, synced.Type);
        }

        await using var last = await Sessions.OpenWhenDetachedAsync(lease);
        Assert.Equal(-1, (await last.CopyToHostAsync<byte>(ptr, Size)).AsSpan().IndexOfAnyExcept((byte)0xEE));
    }

    [Fact]
    public async Task Client_whose_connection_dies_in_the_middle_of_a_copy_gets_Unavailable_not_success()
    {
        const int size = 40 << 20;
        await using var lease = await pool.LeaseAsync();
        using var proxy = new CuttingProxy(pool.Broker.FastPath.Tcp, cutAfterBytes: 6 << 20);
        var direct = lease.Record.BrokerFastPathTcp;
        lease.Record.BrokerFastPathTcp = proxy.Endpoint;
        // One connection: a striped copy's data connections have a test of their own (FastPathStripingTests).
        await using var session = await lease.OpenSessionAsync(new SessionOptions { Transport = SessionTransportKind.Tcp, Stripes = 1 });
        var ptr = await session.AllocAsync(size);
        var data = new byte[size];
        new Random(6).NextBytes(data);

        // The cut comes 6 MiB into a 40 MiB copy, more than the sockets between can hold: the copy itself fails, naming itself and the connection.
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.CopyToDeviceAsync(ptr, data).AsTask().WaitAsync(Bound));

        Assert.True(error.Code == ErrorCode.Unavailable, error.ToString());
        Assert.Equal("memcpy_htod", error.FailedOp);
        Assert.StartsWith($"copy of {size} bytes to the device at 0x{ptr.Address:x} failed after ", error.Message, StringComparison.Ordinal);
        Assert.True(System.Text.RegularExpressions.Regex.IsMatch(error.Message, "connection|sending to broker .+ failed"), error.Message);
        Assert.InRange(await proxy.Cut.WaitAsync(Bound), 6 << 20, 6 << 20);
        var later = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask().WaitAsync(Bound));
        Assert.Equal(ErrorCode.Unavailable, later.Code);

        // The lease outlives its connection: a new session on it works.
        lease.Record.BrokerFastPathTcp = direct;
        await using var next = await Sessions.OpenWhenDetachedAsync(lease);
        await next.MemsetAsync(ptr, 1, 16);
        Assert.Equal(Enumerable.Repeat((byte)1, 16).ToArray(), await next.CopyToHostAsync<byte>(ptr, 16));
    }

    /// <summary>A MemcpyHtoD frame whose header declares <paramref name="declared"/> payload bytes, of which the first <paramref name="sent"/> follow.</summary>
    private static byte[] CopyFrame(DevicePtr ptr, ulong seq, byte fill, int declared, int sent)
    {
        var writer = new ArrayBufferWriter<byte>(FrameCodec.HeaderSize + 16 + sent);
        Span<byte> scratch = stackalloc byte[16];
        FrameCodec.WriteHeader(writer, FrameType.MemcpyHtoD, seq, new FixedBuilder(scratch).U64(ptr.Address).U64(0).Written, declared);
        writer.GetSpan(sent)[..sent].Fill(fill);
        writer.Advance(sent);
        return writer.WrittenSpan.ToArray();
    }
}
