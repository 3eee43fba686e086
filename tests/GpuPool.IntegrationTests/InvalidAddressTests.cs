using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests;

/// <summary>
/// Every range an op names must lie inside one of the lease's allocations. Fire-and-forget ops report the
/// violation at the next synchronizing call, naming the op's sequence number; a copy to the host reports
/// its own. Either way the broker goes on serving.
/// </summary>
public sealed class InvalidAddressTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    private const int Size = 4096;

    [Fact]
    public async Task Copy_to_the_device_past_the_end_of_an_allocation_fails_with_InvalidAddress_at_the_next_sync()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var ptr = await session.AllocAsync(Size);

        await session.CopyToDeviceAsync(ptr + 4000, new byte[200]);
        var seq = session.LastSeq;

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.InvalidAddress, error.Code);
        Assert.Equal(seq, error.FailedSeq);
        Assert.Equal("memcpy_htod", error.FailedOp);
        Assert.Contains($"operation #{seq} (memcpy_htod) failed", error.Message, StringComparison.Ordinal);
        Assert.Contains($"copy to device destination: 0x{ptr.Address + 4000:x} + 200 bytes runs past the end of its allocation (0x{ptr.Address:x}, 4096 bytes) by 104 bytes", error.Message, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Copy_to_the_device_at_an_address_outside_every_allocation_fails_with_InvalidAddress_at_the_next_sync()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        await session.AllocAsync(Size);

        await session.CopyToDeviceAsync(new DevicePtr(0x1000), new byte[16]);
        var seq = session.LastSeq;

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.InvalidAddress, error.Code);
        Assert.Equal(seq, error.FailedSeq);
        Assert.Contains("copy to device destination: 0x1000 is not inside any allocation of this lease", error.Message, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Copy_to_the_host_past_the_end_of_an_allocation_fails_with_InvalidAddress_on_that_copy()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var ptr = await session.AllocAsync(Size);

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.CopyToHostAsync(ptr + 1, new byte[Size]).AsTask());

        Assert.Equal(ErrorCode.InvalidAddress, error.Code);
        Assert.Equal(0UL, error.FailedSeq);
        Assert.Contains($"copy to host source: 0x{ptr.Address + 1:x} + 4096 bytes runs past the end of its allocation (0x{ptr.Address:x}, 4096 bytes) by 1 bytes", error.Message, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Copy_to_the_host_from_an_address_outside_every_allocation_fails_with_InvalidAddress_on_that_copy()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        await session.AllocAsync(Size);

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.CopyToHostAsync(new DevicePtr(0xdead0000), new byte[8]).AsTask());

        Assert.Equal(ErrorCode.InvalidAddress, error.Code);
        Assert.Contains("copy to host source: 0xdead0000 is not inside any allocation of this lease", error.Message, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Device_to_device_copy_past_the_end_of_the_destination_fails_with_InvalidAddress_at_the_next_sync()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var src = await session.AllocAsync(Size);
        var dst = await session.AllocAsync(Size / 2);

        await session.CopyDeviceToDeviceAsync(dst, src, Size);
        var seq = session.LastSeq;

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.InvalidAddress, error.Code);
        Assert.Equal(seq, error.FailedSeq);
        Assert.Equal("memcpy_dtod", error.FailedOp);
        Assert.Contains($"device copy destination: 0x{dst.Address:x} + 4096 bytes runs past the end of its allocation (0x{dst.Address:x}, 2048 bytes)", error.Message, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Device_to_device_copy_from_outside_every_allocation_fails_with_InvalidAddress_at_the_next_sync()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var dst = await session.AllocAsync(Size);

        await session.CopyDeviceToDeviceAsync(dst, new DevicePtr(0x2000), 64);
        var seq = session.LastSeq;

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.InvalidAddress, error.Code);
        Assert.Equal(seq, error.FailedSeq);
        Assert.Contains("device copy source: 0x2000 is not inside any allocation of this lease", error.Message, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Memset_past_the_end_of_an_allocation_fails_with_InvalidAddress_at_the_next_sync()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var ptr = await session.AllocAsync(Size);

        await session.MemsetAsync(ptr, 7, (Size / 4) + 1, elementSize: 4);
        var seq = session.LastSeq;

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.InvalidAddress, error.Code);
        Assert.Equal(seq, error.FailedSeq);
        Assert.Equal("memset", error.FailedOp);
        Assert.Contains("memset destination", error.Message, StringComparison.Ordinal);
        Assert.Contains("runs past the end of its allocation", error.Message, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Theory]
    [InlineData(4)]
    [InlineData(2)]
    public async Task Memset_whose_byte_count_overflows_fails_with_InvalidArgument_and_the_session_goes_on(int elementSize)
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var ptr = await session.AllocAsync(Size);

        await session.MemsetAsync(ptr, 7, (ulong.MaxValue / (ulong)elementSize) + 1, elementSize);
        var seq = session.LastSeq;

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.InvalidArgument, error.Code);
        Assert.Equal(seq, error.FailedSeq);
        Assert.Contains("more than any memory holds", error.Message, StringComparison.Ordinal);
        await session.MemsetAsync(ptr, 7, Size / 4, elementSize: 4);
        await session.SynchronizeAsync();
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Launch_that_runs_past_the_end_of_an_allocation_fails_with_InvalidAddress_at_the_next_sync()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var fill = await session.GetFunctionAsync(await session.LoadBuiltinModuleAsync(), "fill_f32");
        var ptr = await session.AllocAsync(Size);

        await session.LaunchAsync(fill, new Dim3(8), new Dim3(128), new KernelArgs().U64((Size / 4) + 1).F32(1).Ptr(ptr));
        var seq = session.LastSeq;

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.InvalidAddress, error.Code);
        Assert.Equal(seq, error.FailedSeq);
        Assert.Equal("launch", error.FailedOp);
        Assert.Contains($"kernel fill_f32 parameter y: 0x{ptr.Address:x} + 4100 bytes runs past the end of its allocation", error.Message, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Launch_with_a_pointer_outside_every_allocation_fails_with_InvalidAddress_at_the_next_sync()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var fill = await session.GetFunctionAsync(await session.LoadBuiltinModuleAsync(), "fill_f32");
        await session.AllocAsync(Size);

        await session.LaunchAsync(fill, new Dim3(1), new Dim3(32), new KernelArgs().U64(4).F32(1).Ptr(new DevicePtr(0x4000)));
        var seq = session.LastSeq;

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.InvalidAddress, error.Code);
        Assert.Equal(seq, error.FailedSeq);
        Assert.Contains("kernel fill_f32 parameter y: 0x4000 is not inside any allocation of this lease", error.Message, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Freeing_a_pointer_inside_an_allocation_fails_with_InvalidAddress()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var ptr = await session.AllocAsync(Size);

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.FreeAsync(ptr + 16));

        Assert.Equal(ErrorCode.InvalidAddress, error.Code);
        Assert.Contains($"cannot free 0x{ptr.Address + 16:x}: it points inside the allocation at 0x{ptr.Address:x}, not at its start", error.Message, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }
}
