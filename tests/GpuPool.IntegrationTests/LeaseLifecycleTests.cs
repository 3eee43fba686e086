using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests;

/// <summary>A lease from grant to release: what the pool shows, one session at a time, nothing left behind.</summary>
public sealed class LeaseLifecycleTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task Granted_lease_shows_in_the_cluster_view_with_its_slice()
    {
        await using var lease = await pool.LeaseAsync(memoryBytes: 96UL << 20, share: 300);

        var view = await pool.Client.ListClusterAsync();

        var record = Assert.Single(view.Leases, l => l.LeaseId == lease.Id);
        Assert.Equal(PoolFixture.BrokerId, record.BrokerId);
        Assert.Equal(pool.Broker.Endpoint, record.BrokerEndpoint);
        Assert.Equal(96UL << 20, record.MemoryBytes);
        Assert.Equal(300U, record.ComputeShare);
        Assert.Equal((uint)PoolFixture.LeaseTtl.TotalSeconds, record.TtlSeconds);
        var device = Assert.Single(view.Devices);
        Assert.True(device.MemoryLeasedBytes >= 96UL << 20);
        Assert.True(device.ComputeLeased >= 300);
    }

    [Fact]
    public async Task Releasing_a_lease_frees_its_memory_and_gives_its_capacity_back()
    {
        var lease = await pool.LeaseAsync(memoryBytes: 128UL << 20, share: 400);
        await using (var session = await lease.OpenSessionAsync())
        {
            await session.AllocAsync(48UL << 20);
            await session.LoadBuiltinModuleAsync();
            await session.CreateStreamAsync();
            await session.CreateEventAsync();
            Assert.Contains(pool.Broker.Leases.Leases, l => l.Claims.LeaseId == lease.Id);
        }

        await lease.ReleaseAsync();

        await Poll.UntilAsync(() => pool.Broker.Leases.Leases.Count == 0 && pool.Device.MemoryUsed == 0 && pool.Device.MemoryReserved == 0, Deadline,
            "the broker has ended the lease and freed its memory");
        var view = await pool.Client.ListClusterAsync();
        Assert.Empty(view.Leases);
        var device = Assert.Single(view.Devices);
        Assert.Equal(0UL, device.MemoryLeasedBytes);
        Assert.Equal(0U, device.ComputeLeased);
        Assert.Equal(0U, device.LeaseCount);
        await lease.DisposeAsync();
    }

    [Fact]
    public async Task Opening_a_session_on_a_released_lease_fails_with_LeaseEnded()
    {
        await using var lease = await pool.LeaseAsync();
        await lease.ReleaseAsync();

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => lease.OpenSessionAsync());

        Assert.Equal(ErrorCode.LeaseEnded, error.Code);
        Assert.Equal($"lease {lease.Id} has ended (released, expired or revoked) or was never granted: allocate a new lease", error.Message);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Open_session_of_a_released_lease_fails_with_LeaseEnded()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        await session.AllocAsync(4096);

        await lease.ReleaseAsync();

        await Sessions.AssertEndsWithLeaseEndedAsync(session, lease, Deadline);
    }

    [Fact]
    public async Task Second_concurrent_session_on_one_lease_fails_with_FailedPrecondition()
    {
        await using var lease = await pool.LeaseAsync();
        await using var first = await lease.OpenSessionAsync();

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => lease.OpenSessionAsync());

        Assert.Equal(ErrorCode.FailedPrecondition, error.Code);
        Assert.Equal($"lease {lease.Id} already has an open session; close it before opening another", error.Message);
        await first.SynchronizeAsync();
    }

    [Fact]
    public async Task Lease_keeps_its_memory_across_sessions()
    {
        await using var lease = await pool.LeaseAsync();
        var data = Enumerable.Range(0, 4096).Select(i => (byte)(i % 251)).ToArray();
        Client.DevicePtr ptr;
        await using (var first = await lease.OpenSessionAsync())
        {
            ptr = await first.AllocAsync((ulong)data.Length);
            await first.CopyToDeviceAsync(ptr, data);
            await first.SynchronizeAsync();
        }

        await using var second = await lease.OpenSessionAsync();

        Assert.Equal(data, await second.CopyToHostAsync<byte>(ptr, data.Length));
    }

    [Fact]
    public async Task Releasing_a_lease_twice_is_harmless()
    {
        var lease = await pool.LeaseAsync();

        await lease.ReleaseAsync();
        await lease.ReleaseAsync();
        await lease.DisposeAsync();

        Assert.DoesNotContain((await pool.Client.ListClusterAsync()).Leases, l => l.LeaseId == lease.Id);
    }
}
