using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Tests;

/// <summary>The host ranges the shim knows (allocated or registered): what counts as page-locked, and overlaps refused.</summary>
public sealed class HostMemoryTests
{
    private static readonly Context Owner = new(primary: false, flags: 0);

    [Fact]
    public void A_copy_inside_a_registered_range_counts_as_pinned_and_one_past_it_does_not()
    {
        var memory = new HostMemory();
        memory.Register(0x10000, 0x1000, flags: 0, Owner);

        Assert.True(memory.IsPinned(0x10000, 0x1000));
        Assert.True(memory.IsPinned(0x10800, 0x800));
        Assert.False(memory.IsPinned(0x10800, 0x801));
        Assert.False(memory.IsPinned(0xF000, 0x10));
    }

    [Fact]
    public void Registering_over_a_known_range_is_already_registered()
    {
        var memory = new HostMemory();
        memory.Add(0x20000, 0x1000, flags: 0, registered: false, Owner);

        var refused = Assert.Throws<CudaException>(() => memory.Register(0x20FFF, 0x10, flags: 0, Owner));

        Assert.Equal(CuResult.HostMemoryAlreadyRegistered, refused.Result);
        memory.Register(0x21000, 0x10, flags: 0, Owner);
    }

    [Fact]
    public void Unregistering_needs_the_start_of_a_registration_not_an_allocation()
    {
        var memory = new HostMemory();
        memory.Add(0x30000, 0x1000, flags: 0, registered: false, Owner);
        memory.Register(0x40000, 0x1000, flags: 8, Owner);

        Assert.Null(memory.Remove(0x30000, registered: true));
        Assert.Null(memory.Remove(0x40010, registered: true));
        Assert.Equal(8u, memory.Remove(0x40000, registered: true)!.Flags);
        Assert.Null(memory.Find(0x40000));
    }

    [Fact]
    public void Each_range_gets_its_own_buffer_id()
    {
        var memory = new HostMemory();
        memory.Add(0x50000, 0x100, flags: 0, registered: false, Owner);
        memory.Register(0x60000, 0x100, flags: 0, Owner);

        Assert.NotEqual(memory.Find(0x50000)!.BufferId, memory.Find(0x60000)!.BufferId);
    }
}
