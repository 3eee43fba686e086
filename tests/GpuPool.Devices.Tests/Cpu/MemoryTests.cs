using CsCheck;
using GpuPool.Devices.Cpu;

namespace GpuPool.Devices.Tests.Cpu;

/// <summary>The allocation table and a context's memory accounting: what keeps a lease inside its own memory.</summary>
public sealed class MemoryTests
{
    [Theory]
    [InlineData(1UL)]
    [InlineData(3UL)]
    [InlineData(255UL)]
    [InlineData(256UL)]
    [InlineData(4097UL)]
    public void Allocations_are_256_byte_aligned(ulong bytes)
    {
        var table = new AllocationTable();
        try
        {
            for (var i = 0; i < 8; i++)
            {
                Assert.Equal(0UL, table.Allocate(bytes) % 256);
            }
        }
        finally
        {
            table.FreeAll();
        }
    }

    [Fact]
    public void Allocations_are_zeroed_even_when_the_memory_was_used_before()
    {
        var table = new AllocationTable();
        try
        {
            for (var round = 0; round < 20; round++)
            {
                var ptr = table.Allocate(4000);
                Assert.All(table.Resolve(ptr, 4000, "test").ToArray(), b => Assert.Equal(0, b));
                table.Resolve(ptr, 4000, "test").Fill(0xAB);
                table.Free(ptr);
            }
        }
        finally
        {
            table.FreeAll();
        }
    }

    [Fact]
    public void Resolve_rejects_a_pointer_outside_every_allocation()
    {
        var table = new AllocationTable();
        try
        {
            var ptr = table.Allocate(100);
            var before = Assert.Throws<DeviceException>(() => table.Resolve(ptr - 1, 1, "copy source"));
            var after = Assert.Throws<DeviceException>(() => table.Resolve(ptr + 100, 1, "copy source"));
            var wild = Assert.Throws<DeviceException>(() => table.Resolve(0x1000, 1, "copy source"));

            Assert.All([before, after, wild], e => Assert.Equal(DeviceErrorCode.InvalidAddress, e.Code));
            Assert.Contains("copy source", wild.Message);
            Assert.Contains("not inside any allocation", wild.Message);
        }
        finally
        {
            table.FreeAll();
        }
    }

    [Fact]
    public void Resolve_of_a_range_past_the_end_says_by_how_many_bytes()
    {
        var table = new AllocationTable();
        try
        {
            var ptr = table.Allocate(100);
            var e = Assert.Throws<DeviceException>(() => table.Resolve(ptr + 40, 72, "memset destination"));

            Assert.Equal(DeviceErrorCode.InvalidAddress, e.Code);
            Assert.Contains("memset destination", e.Message);
            Assert.Contains("by 12 bytes", e.Message);
        }
        finally
        {
            table.FreeAll();
        }
    }

    [Fact]
    public void Resolve_accepts_a_range_that_ends_exactly_at_the_end_of_the_allocation()
    {
        var table = new AllocationTable();
        try
        {
            var ptr = table.Allocate(100);
            Assert.Equal(60, table.Resolve(ptr + 40, 60, "test").Length);
        }
        finally
        {
            table.FreeAll();
        }
    }

    [Fact]
    public void Typed_resolve_rejects_a_misaligned_pointer()
    {
        var table = new AllocationTable();
        try
        {
            var ptr = table.Allocate(64);
            var e = Assert.Throws<DeviceException>(() => table.Resolve<float>(ptr + 2, 1, "kernel x parameter y"));

            Assert.Equal(DeviceErrorCode.InvalidAddress, e.Code);
            Assert.Contains("not aligned to 4 bytes", e.Message);
        }
        finally
        {
            table.FreeAll();
        }
    }

    [Fact]
    public void Free_of_an_interior_pointer_fails_with_InvalidAddress()
    {
        var table = new AllocationTable();
        try
        {
            var ptr = table.Allocate(512);
            var e = Assert.Throws<DeviceException>(() => table.Free(ptr + 256));

            Assert.Equal(DeviceErrorCode.InvalidAddress, e.Code);
            Assert.Contains("inside the allocation", e.Message);
            Assert.Equal(512UL, table.BytesInUse);
        }
        finally
        {
            table.FreeAll();
        }
    }

    [Fact]
    public void Free_of_an_unknown_pointer_fails_with_InvalidAddress()
    {
        var table = new AllocationTable();
        var ptr = table.Allocate(512);
        table.Free(ptr);

        var e = Assert.Throws<DeviceException>(() => table.Free(ptr));

        Assert.Equal(DeviceErrorCode.InvalidAddress, e.Code);
        Assert.Contains("not an allocation of this lease", e.Message);
    }

    [Fact]
    public void Random_alloc_and_free_sequences_keep_the_table_consistent_with_a_model()
    {
        // An op is an allocation of `size` bytes (free == false) or a free of the live allocation picked by `size`.
        var op = Gen.Select(Gen.Bool, Gen.Int[1, 5000]);
        op.Array[1, 60].Sample(ops =>
        {
            var table = new AllocationTable();
            var live = new Dictionary<ulong, ulong>();
            var freed = new List<ulong>();
            try
            {
                foreach (var (free, size) in ops)
                {
                    if (free && live.Count > 0)
                    {
                        var ptr = live.Keys.OrderBy(p => p).ElementAt(size % live.Count);
                        Assert.Equal(live[ptr], table.Free(ptr));
                        live.Remove(ptr);
                        freed.Add(ptr);
                    }
                    else
                    {
                        var ptr = table.Allocate((ulong)size);
                        Assert.All(table.Resolve(ptr, (ulong)size, "test").ToArray(), b => Assert.Equal(0, b));
                        table.Resolve(ptr, (ulong)size, "test").Fill(0xCD);
                        live[ptr] = (ulong)size;
                    }

                    Assert.Equal(live.Values.Aggregate(0UL, (a, b) => a + b), table.BytesInUse);
                    Assert.Equal(live.Count, table.Count);
                    foreach (var (ptr, bytes) in live)
                    {
                        Assert.Equal((int)bytes, table.Resolve(ptr, bytes, "test").Length);
                        Assert.Throws<DeviceException>(() => table.Resolve(ptr, bytes + 1, "test"));
                    }

                    // The allocator may hand a freed address out again; only a freed address that is not live now must fail.
                    foreach (var ptr in freed.Where(p => !live.Keys.Any(b => p >= b && p < b + live[b])))
                    {
                        Assert.Equal(DeviceErrorCode.InvalidAddress, Assert.Throws<DeviceException>(() => table.Resolve(ptr, 1, "test")).Code);
                    }
                }
            }
            finally
            {
                table.FreeAll();
            }
        }, iter: 200);
    }

    [Fact]
    public async Task Allocation_past_the_lease_limit_fails_with_OutOfMemory_naming_the_limit()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device, limit: 10_000);
        context.Allocate(6_000);

        var e = Assert.Throws<DeviceException>(() => context.Allocate(4_001));

        Assert.Equal(DeviceErrorCode.OutOfMemory, e.Code);
        Assert.Contains("10000", e.Message);
        Assert.Equal(6_000UL, context.MemoryUsed);
    }

    [Fact]
    public async Task Allocation_up_to_exactly_the_lease_limit_succeeds()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device, limit: 10_000);
        context.Allocate(6_000);
        context.Allocate(4_000);

        Assert.Equal(10_000UL, context.MemoryUsed);
    }

    [Fact]
    public async Task Freed_memory_can_be_allocated_again_within_the_limit()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device, limit: 10_000);
        var ptr = context.Allocate(8_000);
        await context.FreeAsync(ptr);

        context.Allocate(8_000);

        Assert.Equal(8_000UL, context.MemoryUsed);
    }

    [Fact]
    public async Task CreateContext_fails_with_OutOfMemory_when_the_leases_would_pass_the_device_memory()
    {
        var device = Dev.Device(memory: 100 * Dev.MiB);
        await using var first = Dev.Context(device, limit: 60 * Dev.MiB);

        var e = Assert.Throws<DeviceException>(() => device.CreateContext(new ContextOptions("lease-b", 41 * Dev.MiB, 500)));

        Assert.Equal(DeviceErrorCode.OutOfMemory, e.Code);
        Assert.Equal(60 * Dev.MiB, device.MemoryReserved);
        Assert.Equal(1, device.ContextCount);
    }

    [Fact]
    public async Task Disposing_a_context_gives_its_reservation_back()
    {
        var device = Dev.Device(memory: 100 * Dev.MiB);
        var first = Dev.Context(device, limit: 60 * Dev.MiB);
        await first.DisposeAsync();

        await using var second = Dev.Context(device, limit: 100 * Dev.MiB, lease: "lease-b");

        Assert.Equal(100 * Dev.MiB, device.MemoryReserved);
    }

    [Fact]
    public async Task MemoryUsed_of_device_and_context_tracks_allocate_free_and_dispose()
    {
        var device = Dev.Device();
        var a = Dev.Context(device, lease: "lease-a");
        await using var b = Dev.Context(device, lease: "lease-b");

        var a1 = a.Allocate(1000);
        a.Allocate(3000);
        b.Allocate(500);
        Assert.Equal((4000UL, 500UL, 4500UL), (a.MemoryUsed, b.MemoryUsed, device.MemoryUsed));

        await a.FreeAsync(a1);
        Assert.Equal((3000UL, 3500UL), (a.MemoryUsed, device.MemoryUsed));

        await a.DisposeAsync();
        Assert.Equal((0UL, 500UL), (a.MemoryUsed, device.MemoryUsed));
    }

    [Fact]
    public async Task A_failed_free_changes_no_accounting()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var ptr = context.Allocate(1024);

        var e = await Assert.ThrowsAsync<DeviceException>(async () => await context.FreeAsync(ptr + 256));

        Assert.Equal(DeviceErrorCode.InvalidAddress, e.Code);
        Assert.Equal((1024UL, 1024UL), (context.MemoryUsed, device.MemoryUsed));
    }

    [Fact]
    public async Task A_context_cannot_resolve_another_contexts_pointer()
    {
        var device = Dev.Device();
        await using var a = Dev.Context(device, lease: "lease-a");
        await using var b = Dev.Context(device, lease: "lease-b");
        var ptr = a.Allocate(1024);

        var e = Assert.Throws<DeviceException>(() => b.Memory.Resolve(ptr, 4, "copy source"));

        Assert.Equal(DeviceErrorCode.InvalidAddress, e.Code);
    }

    [Fact]
    public async Task A_context_cannot_free_another_contexts_pointer()
    {
        var device = Dev.Device();
        await using var a = Dev.Context(device, lease: "lease-a");
        await using var b = Dev.Context(device, lease: "lease-b");
        var ptr = a.Allocate(1024);

        var e = await Assert.ThrowsAsync<DeviceException>(async () => await b.FreeAsync(ptr));

        Assert.Equal(DeviceErrorCode.InvalidAddress, e.Code);
        Assert.Equal(1024UL, a.MemoryUsed);
    }

    [Fact]
    public async Task A_copy_from_another_contexts_pointer_fails_with_InvalidAddress()
    {
        var device = Dev.Device();
        await using var a = Dev.Context(device, lease: "lease-a");
        await using var b = Dev.Context(device, lease: "lease-b");
        var secret = Dev.Upload(a, new float[] { 1, 2, 3, 4 });
        await a.SynchronizeAsync();

        var sink = new CopySink();
        b.EnqueueCopyToHost(0, secret, 16, sink, Dev.Tag("memcpy_dtoh"));
        var (data, error) = await Dev.Within(sink.Result);

        Assert.Null(data);
        Assert.Equal(DeviceErrorCode.InvalidAddress, error!.Error.Code);
    }

    [Fact]
    public async Task Allocate_after_dispose_fails_with_ContextClosed()
    {
        var device = Dev.Device();
        var context = Dev.Context(device);
        await context.DisposeAsync();

        Assert.Equal(DeviceErrorCode.ContextClosed, Assert.Throws<DeviceException>(() => context.Allocate(16)).Code);
    }
}
