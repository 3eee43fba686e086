using GpuPool.Devices.Cuda;

namespace GpuPool.Devices.Tests.Cuda;

/// <summary>A lease's device allocations as ranges: the checks every pointer of every op goes through on the cuda backend.</summary>
public sealed class DeviceAllocationsTests
{
    [Fact]
    public void A_range_inside_one_allocation_passes_and_one_past_its_end_says_by_how_many_bytes()
    {
        var memory = new DeviceAllocations();
        memory.Add(0x1000, 256);
        memory.Add(0x2000, 256);

        memory.Check(0x1000, 256, "copy");
        memory.Check(0x10ff, 1, "copy");
        var error = Assert.Throws<DeviceException>(() => memory.Check(0x1080, 200, "copy to host source"));

        Assert.Equal(DeviceErrorCode.InvalidAddress, error.Code);
        Assert.Equal("copy to host source: 0x1080 + 200 bytes runs past the end of its allocation (0x1000, 256 bytes) by 72 bytes", error.Message);
    }

    [Fact]
    public void A_range_that_spans_two_neighbouring_allocations_fails()
    {
        var memory = new DeviceAllocations();
        memory.Add(0x1000, 0x100);
        memory.Add(0x1100, 0x100);

        Assert.Equal(DeviceErrorCode.InvalidAddress, Assert.Throws<DeviceException>(() => memory.Check(0x10f0, 0x20, "memset destination")).Code);
    }

    [Fact]
    public void A_huge_length_does_not_wrap_around_into_a_pass()
    {
        var memory = new DeviceAllocations();
        memory.Add(0x1000, 0x100);

        Assert.Equal(DeviceErrorCode.InvalidAddress, Assert.Throws<DeviceException>(() => memory.Check(0x1010, ulong.MaxValue - 8, "copy")).Code);
    }

    [Fact]
    public void A_zero_byte_range_must_still_start_inside_an_allocation()
    {
        var memory = new DeviceAllocations();
        memory.Add(0x1000, 0x100);

        memory.Check(0x1000, 0, "copy");
        Assert.Equal(DeviceErrorCode.InvalidAddress, Assert.Throws<DeviceException>(() => memory.Check(0x5000, 0, "copy")).Code);
    }

    [Fact]
    public void Free_takes_only_the_start_of_an_allocation_and_gives_its_size_back()
    {
        var memory = new DeviceAllocations();
        memory.Add(0x1000, 0x100);
        memory.Add(0x3000, 0x40);

        var inside = Assert.Throws<DeviceException>(() => memory.Remove(0x1010));
        var unknown = Assert.Throws<DeviceException>(() => memory.Remove(0x9000));
        var size = memory.Remove(0x1000);

        Assert.Equal("cannot free 0x1010: it points inside the allocation at 0x1000, not at its start", inside.Message);
        Assert.Equal("cannot free 0x9000: it is not an allocation of this lease", unknown.Message);
        Assert.Equal(0x100UL, size);
        Assert.Equal(0x40UL, memory.BytesInUse);
        Assert.Equal(DeviceErrorCode.InvalidAddress, Assert.Throws<DeviceException>(() => memory.Check(0x1000, 4, "copy")).Code);
    }

    [Fact]
    public void Taking_everything_empties_the_table()
    {
        var memory = new DeviceAllocations();
        memory.Add(0x1000, 0x100);
        memory.Add(0x3000, 0x40);

        var all = memory.TakeAll();

        Assert.Equal([0x1000UL, 0x3000UL], all.Select(a => a.Base));
        Assert.Equal(0UL, memory.BytesInUse);
        Assert.Equal(0, memory.Count);
    }
}
