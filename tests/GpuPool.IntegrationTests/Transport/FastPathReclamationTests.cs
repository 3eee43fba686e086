using System.Buffers.Binary;
using System.Diagnostics;
using Google.Protobuf;
using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests.Transport;

/// <summary>
/// A fast-path client that vanishes without releasing loses its lease when the TTL runs out, and the
/// broker frees everything the lease held, whether its connection dropped or stayed open.
/// </summary>
public sealed class FastPathReclamationTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    private const ulong Allocation = 32UL << 20;
    private const int Chunk = 1 << 20;

    // The TTL counts from the last keepalive; the slack covers the store's sweep, the broker's watch and a loaded machine.
    private static readonly TimeSpan Deadline = PoolFixture.ShortLeaseTtl + TimeSpan.FromSeconds(4);

    [Fact]
    public async Task Broker_frees_the_memory_of_a_fast_path_client_that_vanished_mid_copy_within_the_lease_ttl()
    {
        await using var lease = await pool.LeaseAsync(memoryBytes: 64UL << 20, ttl: PoolFixture.ShortLeaseTtl);
        using var socket = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);
        await socket.HelloAsync(lease.Id, lease.Token);
        var alloc = await socket.CallAsync(new OpRequest { Seq = 2, MemAlloc = new MemAlloc { Bytes = Allocation } });
        Assert.Equal(FrameType.Reply, alloc.Type);
        var ptr = BinaryPrimitives.ReadUInt64LittleEndian(alloc.Fixed);
        Assert.True(pool.Device.MemoryUsed >= Allocation, $"the device shows {pool.Device.MemoryUsed} bytes in use, expected at least {Allocation}");

        // The first chunks of a 32 MiB copy, half of the next one, then the client is gone: a reset, no release, no more keepalives.
        for (var i = 0; i < 3; i++)
        {
            await socket.SendAsync(new OpRequest { Seq = 3 + (ulong)i, MemcpyHtod = new MemcpyHtoD { Ptr = ptr + (ulong)(i * Chunk), Data = ByteString.CopyFrom(new byte[Chunk]) } });
        }

        await socket.SendAsync(FrameSocket.Encode(new OpRequest { Seq = 6, MemcpyHtod = new MemcpyHtoD { Ptr = ptr, Data = ByteString.CopyFrom(new byte[Chunk]) } }).AsMemory(0, Chunk / 2));
        socket.Abort();
        await lease.AbandonAsync();
        var clock = Stopwatch.StartNew();

        await Poll.UntilAsync(() => pool.Broker.Leases.Leases.Count == 0 && pool.Device.MemoryUsed == 0 && pool.Device.MemoryReserved == 0, Deadline,
            "the broker has ended the lease and freed its memory");
        Assert.DoesNotContain((await pool.Client.ListClusterAsync()).Leases, l => l.LeaseId == lease.Id);
        Assert.True(clock.Elapsed < Deadline, $"reclaimed after {clock.Elapsed}");
    }

    [Fact]
    public async Task Open_fast_path_session_of_an_abandoned_lease_fails_with_LeaseEnded_once_its_memory_is_freed()
    {
        await using var lease = await pool.LeaseAsync(memoryBytes: 64UL << 20, ttl: PoolFixture.ShortLeaseTtl);
        await using var session = await lease.OpenSessionAsync(SessionTransportKind.Tcp);
        await session.AllocAsync(Allocation);
        Assert.True(pool.Device.MemoryUsed >= Allocation, $"the device shows {pool.Device.MemoryUsed} bytes in use, expected at least {Allocation}");

        await lease.AbandonAsync();

        // The connection stays up; the lease's end must reach it all the same.
        await Sessions.AssertEndsWithLeaseEndedAsync(session, lease, Deadline);
        await Poll.UntilAsync(() => pool.Broker.Leases.Leases.Count == 0 && pool.Device.MemoryUsed == 0, TimeSpan.FromSeconds(5), "the broker has freed the lease's memory");
    }
}
