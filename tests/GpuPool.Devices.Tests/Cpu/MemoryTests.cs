using CsCheck;
using GpuPool.Devices.Contexts;
using GpuPool.Devices.Cpu;
using GpuPool.Devices.Tests.Contexts;

namespace GpuPool.Devices.Tests.Cpu;

/// <summary>Host memory and a context's memory accounting: what keeps a lease inside its own memory on the cpu backend.</summary>
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
        using var memory = new Host();
        for (var i = 0; i < 8; i++)
        {
            Assert.Equal(0UL, memory.Allocate(bytes) % 256);
        }
    }

    [Fact]
    public void Allocations_are_zeroed_even_when_the_memory_was_used_before()
    {
        using var memory = new Host();
        for (var round = 0; round < 20; round++)
        {
            var ptr = memory.Allocate(4000);
            Assert.All(memory.View(ptr, 4000).ToArray(), b => Assert.Equal(0, b));
            memory.View(ptr, 4000).Fill(0xAB);
            memory.Free(ptr);
        }
    }

    [Fact]
    public void A_host_view_of_a_range_past_its_allocation_fails_naming_the_range()
    {
        using var memory = new Host();
        var ptr = memory.Allocate(100);

        var e = Assert.Throws<DeviceException>(() => memory.Memory.HostView(ptr + 40, 72, "memset destination"));

        Assert.Equal(DeviceErrorCode.InvalidAddress, e.Code);
        Assert.Equal($"memset destination: 0x{ptr + 40:x} + 72 bytes runs past the end of its allocation (0x{ptr:x}, 100 bytes) by 12 bytes", e.Message);
        Assert.Equal(60, memory.Memory.HostView(ptr + 40, 60, "test").Length);
    }

    [Fact]
    public void A_host_view_larger_than_one_span_fails_with_InvalidArgument()
    {
        using var memory = new Host();
        var ptr = memory.Allocate(100);

        var e = Assert.Throws<DeviceException>(() => memory.Memory.HostView(ptr, 1UL << 31, "copy to host source"));

        Assert.Equal(DeviceErrorCode.InvalidArgument, e.Code);
        Assert.Equal("copy to host source: a range of 2147483648 bytes is larger than one operation can address (2 GiB)", e.Message);
    }

    [Fact]
    public void Typed_resolve_rejects_a_misaligned_pointer()
    {
        using var memory = new Host();
        var ptr = memory.Allocate(64);

        var e = Assert.Throws<DeviceException>(() => memory.Memory.Resolve<float>(ptr + 2, 1, "kernel x parameter y"));

        Assert.Equal(DeviceErrorCode.InvalidAddress, e.Code);
        Assert.Contains("not aligned to 4 bytes", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Random_alloc_and_free_sequences_hand_out_zeroed_memory_inside_its_bounds()
    {
        // An op is an allocation of `size` bytes (free == false) or a free of the live allocation picked by `size`.
        var op = Gen.Select(Gen.Bool, Gen.Int[1, 5000]);
        op.Array[1, 60].Sample(ops =>
        {
            using var memory = new Host();
            var live = new Dictionary<ulong, ulong>();
            foreach (var (free, size) in ops)
            {
                if (free && live.Count > 0)
                {
                    var ptr = live.Keys.OrderBy(p => p).ElementAt(size % live.Count);
                    memory.Free(ptr);
                    live.Remove(ptr);
                }
                else
                {
                    var ptr = memory.Allocate((ulong)size);
                    Assert.All(memory.View(ptr, (ulong)size).ToArray(), b => Assert.Equal(0, b));
                    memory.View(ptr, (ulong)size).Fill(0xCD);
                    live[ptr] = (ulong)size;
                }

                Assert.Equal(live.Values.Aggregate(0UL, (a, b) => a + b), memory.Table.BytesInUse);
                foreach (var (ptr, bytes) in live)
                {
                    Assert.Equal((int)bytes, memory.View(ptr, bytes).Length);
                    Assert.Throws<DeviceException>(() => memory.View(ptr, bytes + 1));
                }
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

    [Theory]
    [InlineData(0, ShareMode.WorkConserving, "compute share must be 1..1000 milli-GPU, not 0")]
    [InlineData(1001, ShareMode.WorkConserving, "compute share must be 1..1000 milli-GPU, not 1001")]
    [InlineData(500, (ShareMode)5, "share mode 5 is not one this broker knows: work-conserving (0) or capped (1)")]
    public void CreateContext_refuses_a_share_or_share_mode_out_of_range_and_reserves_nothing(int share, ShareMode mode, string message)
    {
        var device = Dev.Device(memory: 100 * Dev.MiB);

        var e = Assert.Throws<DeviceException>(() => device.CreateContext(new ContextOptions("lease-b", Dev.MiB, share, mode)));

        Assert.Equal((DeviceErrorCode.InvalidArgument, message), (e.Code, e.Message));
        Assert.Equal(0UL, device.MemoryReserved);
        Assert.Equal(0, device.ContextCount);
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
    public async Task A_context_cannot_reach_another_contexts_pointer()
    {
        var device = Dev.Device();
        await using var a = Dev.Context(device, lease: "lease-a");
        await using var b = Dev.Context(device, lease: "lease-b");
        var ptr = a.Allocate(1024);

        var e = Assert.Throws<DeviceException>(() => b.Allocations.Check(ptr, 4, "copy source"));

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

    /// <summary>Host memory with its allocation table, used as a context uses them.</summary>
    private sealed class Host : IDisposable
    {
        public Host() => Memory = new HostMemory(Table);

        public AllocationTable Table { get; } = new();

        public HostMemory Memory { get; }

        public ulong Allocate(ulong bytes)
        {
            var allocation = Memory.Allocate(bytes, Table.BytesInUse, ulong.MaxValue);
            Table.Add(allocation);
            return allocation.Base;
        }

        public void Free(ulong ptr) => Memory.Free(Table.Remove(ptr));

        public Span<byte> View(ulong ptr, ulong bytes) => Memory.HostView(ptr, bytes, "test");

        public void Dispose() => Memory.FreeAtClose(Table.TakeAll());
    }
}
