using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests;

/// <summary>
/// Errors of fire-and-forget ops are sticky, as in CUDA: the first failure is kept, later device work is
/// skipped until a synchronizing call reports it, and then the session works again.
/// </summary>
public sealed class StickyErrorTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    private const int Size = 1024;

    [Fact]
    public async Task Fire_and_forget_ops_after_a_failure_are_skipped_until_the_sync_reports_it()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var ptr = await session.AllocAsync(Size);
        await session.MemsetAsync(ptr, 0x11, Size);

        await session.CopyToDeviceAsync(ptr + Size, new byte[1]);
        var failed = session.LastSeq;
        await session.MemsetAsync(ptr, 0x22, Size);
        await session.CopyToDeviceAsync(ptr, Enumerable.Repeat((byte)0x33, Size).ToArray());

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.InvalidAddress, error.Code);
        Assert.Equal(failed, error.FailedSeq);
        Assert.All(await session.CopyToHostAsync<byte>(ptr, Size), b => Assert.Equal(0x11, b));
    }

    [Fact]
    public async Task Sticky_error_names_the_first_failure_when_several_ops_fail()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var ptr = await session.AllocAsync(Size);

        await session.MemsetAsync(ptr, 0, Size + 1);
        var first = session.LastSeq;
        await session.CopyToDeviceAsync(new DevicePtr(0x10), new byte[4]);

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(first, error.FailedSeq);
        Assert.Equal("memset", error.FailedOp);
    }

    [Fact]
    public async Task Session_works_again_once_the_sticky_error_is_reported()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var ptr = await session.AllocAsync(Size);
        await session.CopyToDeviceAsync(new DevicePtr(0x10), new byte[4]);
        await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());

        await session.MemsetAsync(ptr, 0x44, Size);
        await session.SynchronizeAsync();

        Assert.All(await session.CopyToHostAsync<byte>(ptr, Size), b => Assert.Equal(0x44, b));
    }

    [Fact]
    public async Task Sticky_error_is_reported_once()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        await session.CopyToDeviceAsync(new DevicePtr(0x10), new byte[4]);

        await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());

        await session.SynchronizeAsync();
    }

    [Fact]
    public async Task Copy_to_the_host_after_a_failure_reports_the_sticky_error_instead_of_stale_data()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var ptr = await session.AllocAsync(Size);

        await session.CopyToDeviceAsync(ptr + 1, new byte[Size]);
        var failed = session.LastSeq;
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.CopyToHostAsync(ptr, new byte[Size]).AsTask());

        Assert.Equal(ErrorCode.InvalidAddress, error.Code);
        Assert.Equal(failed, error.FailedSeq);
        Assert.Equal("memcpy_htod", error.FailedOp);
        await session.SynchronizeAsync();
    }

    [Fact]
    public async Task Stream_synchronize_reports_the_sticky_error_of_a_failed_launch()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var fill = await session.GetFunctionAsync(await session.LoadBuiltinModuleAsync(), "fill_f32");
        var stream = await session.CreateStreamAsync();

        await session.LaunchAsync(fill, new Dim3(1), new Dim3(32), new KernelArgs().U64(8).F32(1).Ptr(new DevicePtr(0x10)), stream);
        var failed = session.LastSeq;

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeStreamAsync(stream).AsTask());
        Assert.Equal(ErrorCode.InvalidAddress, error.Code);
        Assert.Equal(failed, error.FailedSeq);
        Assert.Equal("launch", error.FailedOp);
    }

    [Fact]
    public async Task New_session_on_a_lease_does_not_inherit_the_unreported_error_of_the_closed_one()
    {
        await using var lease = await pool.LeaseAsync();
        await using (var first = await lease.OpenSessionAsync())
        {
            await first.CopyToDeviceAsync(new DevicePtr(0x10), new byte[4]);
        }

        await using var second = await lease.OpenSessionAsync();
        var ptr = await second.AllocAsync(Size);
        await second.MemsetAsync(ptr, 0x66, Size);

        await second.SynchronizeAsync();
        Assert.All(await second.CopyToHostAsync<byte>(ptr, Size), b => Assert.Equal(0x66, b));
    }

    [Fact]
    public async Task Op_on_a_stream_that_does_not_exist_fails_with_NotFound_at_the_next_sync()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var ptr = await session.AllocAsync(Size);

        await session.MemsetAsync(ptr, 1, Size, stream: new DeviceStream(77));
        var failed = session.LastSeq;

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.NotFound, error.Code);
        Assert.Equal(failed, error.FailedSeq);
        Assert.EndsWith("stream 77 does not exist in this lease", error.Message, StringComparison.Ordinal);
    }
}
