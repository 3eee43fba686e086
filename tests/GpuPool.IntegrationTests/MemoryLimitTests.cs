using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests;

/// <summary>A lease's memory is a hard limit: passing it is OutOfMemory, and the session goes on.</summary>
public sealed class MemoryLimitTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    private const ulong Limit = 1 << 20;

    [Fact]
    public async Task Allocation_past_the_lease_limit_fails_with_OutOfMemory_naming_the_limit()
    {
        await using var lease = await pool.LeaseAsync(Limit);
        await using var session = await lease.OpenSessionAsync();
        await session.AllocAsync(Limit / 4);

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.AllocAsync(Limit));

        Assert.Equal(ErrorCode.OutOfMemory, error.Code);
        Assert.Equal(0UL, error.FailedSeq);
        Assert.Equal("cannot allocate 1048576 bytes: the lease's memory limit is 1048576 bytes and 262144 are in use (786432 free)", error.Message);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Session_keeps_working_after_an_allocation_past_the_limit()
    {
        await using var lease = await pool.LeaseAsync(Limit);
        await using var session = await lease.OpenSessionAsync();
        var first = await session.AllocAsync(Limit / 2);
        await Assert.ThrowsAsync<GpuPoolException>(() => session.AllocAsync(Limit));

        var second = await session.AllocAsync(Limit / 2);
        var data = Enumerable.Range(0, (int)(Limit / 2)).Select(i => (byte)i).ToArray();
        await session.CopyToDeviceAsync(second, data);
        await session.CopyDeviceToDeviceAsync(first, second, Limit / 2);
        await session.SynchronizeAsync();

        Assert.Equal(data, await session.CopyToHostAsync<byte>(first, data.Length));
        Assert.Equal((0UL, Limit), await session.MemGetInfoAsync());
    }

    [Fact]
    public async Task Freeing_an_allocation_gives_its_bytes_back_to_the_lease()
    {
        await using var lease = await pool.LeaseAsync(Limit);
        await using var session = await lease.OpenSessionAsync();
        var whole = await session.AllocAsync(Limit);

        await session.FreeAsync(whole);

        Assert.Equal((Limit, Limit), await session.MemGetInfoAsync());
        await session.AllocAsync(Limit);
    }
}
