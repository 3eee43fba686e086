using System.Runtime.InteropServices;
using GpuPool.Devices.Cuda;

namespace GpuPool.Devices.Tests.Cuda;

/// <summary>The pinned staging pool, with host memory standing in for cuMemHostAlloc.</summary>
public sealed class PinnedStagingPoolTests
{
    [Fact]
    public async Task The_pool_never_holds_more_buffers_than_its_capacity_and_a_rent_waits_for_a_return()
    {
        var made = 0;
        var freed = new List<nint>();
        using var pool = new PinnedStagingPool(4096, 2, bytes =>
        {
            made++;
            return HostAlloc(bytes);
        }, pointer =>
        {
            freed.Add(pointer);
            HostFree(pointer);
        });

        var a = pool.Rent();
        var b = pool.Rent();
        Assert.False(pool.TryRent(out _));
        var third = Task.Run(pool.Rent);
        await Task.Delay(50);
        Assert.False(third.IsCompleted);

        pool.Return(a);
        var c = await third.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(a.Pointer, c.Pointer);
        Assert.Equal(2, made);
        Assert.Equal(2, pool.Allocated);
        Assert.Equal(4096, c.Span.Length);
        pool.Return(b);
        pool.Return(c);
        pool.Dispose();
        Assert.Equal(2, freed.Count);
    }

    [Fact]
    public void A_failed_allocation_gives_its_place_back()
    {
        var fail = true;
        using var pool = new PinnedStagingPool(4096, 1, bytes => fail ? throw new DeviceException(DeviceErrorCode.OutOfMemory, "no pinned memory") : HostAlloc(bytes), HostFree);

        Assert.Throws<DeviceException>(() => pool.Rent());
        fail = false;

        Assert.True(pool.TryRent(out var buffer));
        pool.Return(buffer);
    }

    private static unsafe nint HostAlloc(int bytes) => (nint)NativeMemory.Alloc((nuint)bytes);

    private static unsafe void HostFree(nint pointer) => NativeMemory.Free((void*)pointer);
}
