using System.Buffers.Binary;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests.Transport;

/// <summary>A fast-path client that stops reading cannot hold the broker's connection and staged data once its lease has ended.</summary>
public sealed class FastPathSlowReaderTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    private const ulong CopyBytes = 48UL << 20;

    [Fact]
    public async Task Broker_drops_a_client_that_stopped_reading_soon_after_its_lease_ends()
    {
        await using var lease = await pool.LeaseAsync(memoryBytes: 64UL << 20);
        using var socket = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);
        await socket.HelloAsync(lease.Id, lease.Token);
        var alloc = await socket.CallAsync(new OpRequest { Seq = 2, MemAlloc = new MemAlloc { Bytes = CopyBytes } });
        Assert.Equal(FrameType.Reply, alloc.Type);
        var ptr = BinaryPrimitives.ReadUInt64LittleEndian(alloc.Fixed);

        // Ask for far more than the socket buffers hold, and read none of it.
        await socket.SendAsync(new OpRequest { Seq = 3, MemcpyDtoh = new MemcpyDtoH { Ptr = ptr, Bytes = CopyBytes } });
        await Task.Delay(TimeSpan.FromMilliseconds(300));
        await lease.ReleaseAsync();

        // The lease's memory comes back at once; the connection goes a few seconds later, before the copy is
        // delivered: the broker gave up writing to a client that does not read.
        await Poll.UntilAsync(() => pool.Device.MemoryUsed == 0, TimeSpan.FromSeconds(5), "the broker freed the lease's memory");
        await Task.Delay(TimeSpan.FromSeconds(7));
        var received = await socket.DrainUntilClosedAsync(TimeSpan.FromSeconds(5));
        Assert.True(received < (long)CopyBytes, $"the broker kept writing to the stalled client: {received} bytes arrived");
    }
}
