using System.Diagnostics;
using Google.Protobuf;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests;

/// <summary>
/// A client that vanishes without releasing loses its lease when the TTL runs out, and the broker frees
/// everything the lease held.
/// </summary>
public sealed class ReclamationTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    private const ulong Allocation = 32UL << 20;
    private const int Chunk = 1 << 20;

    // The TTL counts from the last keepalive; the slack covers the store's sweep, the broker's watch and a loaded machine.
    private static readonly TimeSpan Deadline = PoolFixture.ShortLeaseTtl + TimeSpan.FromSeconds(4);

    [Fact]
    public async Task Broker_frees_the_memory_of_a_client_that_vanished_mid_copy_within_the_lease_ttl()
    {
        await using var lease = await pool.LeaseAsync(memoryBytes: 64UL << 20, ttl: PoolFixture.ShortLeaseTtl);
        await using var raw = await RawSession.OpenAsync(pool.Broker.Endpoint, lease.Id, lease.Token);
        var ptr = (await raw.CallAsync(new OpRequest { MemAlloc = new MemAlloc { Bytes = Allocation } })).DevicePtr;
        Assert.Equal(Allocation, (await raw.CallAsync(new OpRequest { MemGetInfo = new MemGetInfo() })).MemInfo.FreeBytes);
        Assert.True(pool.Device.MemoryUsed >= Allocation, $"the device shows {pool.Device.MemoryUsed} bytes in use, expected at least {Allocation}");

        // The first chunks of a 32 MiB copy, then the client is gone: no release, no more keepalives.
        for (var i = 0; i < 3; i++)
        {
            await raw.SendAsync(new OpRequest { MemcpyHtod = new MemcpyHtoD { Ptr = ptr + (ulong)(i * Chunk), Data = ByteString.CopyFrom(new byte[Chunk]) } });
        }

        await raw.AbortAsync();
        await lease.AbandonAsync();
        var clock = Stopwatch.StartNew();

        await Poll.UntilAsync(() => pool.Broker.Leases.Leases.Count == 0 && pool.Device.MemoryUsed == 0 && pool.Device.MemoryReserved == 0, Deadline,
            "the broker has ended the lease and freed its memory");
        var view = await pool.Client.ListClusterAsync();
        Assert.DoesNotContain(view.Leases, l => l.LeaseId == lease.Id);
        Assert.Equal(0UL, Assert.Single(view.Devices).MemoryLeasedBytes);
        Assert.True(clock.Elapsed < Deadline, $"reclaimed after {clock.Elapsed}");
    }

    [Fact]
    public async Task Broker_reports_the_freed_memory_in_its_registration_once_an_abandoned_lease_ends()
    {
        await using var lease = await pool.LeaseAsync(ttl: PoolFixture.ShortLeaseTtl);
        await using (var session = await lease.OpenSessionAsync())
        {
            await session.AllocAsync(Allocation);
            await Poll.UntilAsync(async () => Assert.Single((await pool.Client.ListClusterAsync()).Devices).Device.MemoryUsedBytes >= Allocation,
                TimeSpan.FromSeconds(5), "the registration shows the allocation");
            await lease.AbandonAsync();

            await Poll.UntilAsync(async () => Assert.Single((await pool.Client.ListClusterAsync()).Devices) is { MemoryLeasedBytes: 0, LeaseCount: 0, Device.MemoryUsedBytes: 0 },
                Deadline + TimeSpan.FromSeconds(1), "the pool's view shows the device with nothing leased and nothing in use");
        }
    }

    [Fact]
    public async Task Open_session_of_a_lease_whose_keepalives_stopped_fails_with_LeaseEnded()
    {
        await using var lease = await pool.LeaseAsync(ttl: PoolFixture.ShortLeaseTtl);
        await using var session = await lease.OpenSessionAsync();
        await session.AllocAsync(1024);

        await lease.AbandonAsync();

        await Sessions.AssertEndsWithLeaseEndedAsync(session, lease, Deadline);
    }

    [Fact]
    public async Task Lease_renewed_by_keepalives_outlives_its_ttl()
    {
        await using var lease = await pool.LeaseAsync(ttl: PoolFixture.ShortLeaseTtl);
        await using var session = await lease.OpenSessionAsync();
        var ptr = await session.AllocAsync(64);
        await session.MemsetAsync(ptr, 9, 64);

        await Task.Delay(PoolFixture.ShortLeaseTtl * 1.5);

        Assert.Equal(Enumerable.Repeat((byte)9, 64).ToArray(), await session.CopyToHostAsync<byte>(ptr, 64));
        Assert.Contains((await pool.Client.ListClusterAsync()).Leases, l => l.LeaseId == lease.Id);
    }
}
