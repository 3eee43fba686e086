using GpuPool.Protocol.V1;
using GpuPool.Shim.Exports;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Tests;

/// <summary>What the session's device description answers beyond its attributes: PCI bus id, pitch alignment, limits.</summary>
public sealed class DevicePlacementTests
{
    private static DeviceProperties Device(params (int Id, long Value)[] attributes)
    {
        var info = new SessionInfo { DeviceName = "test", LeaseId = "lease" };
        foreach (var (id, value) in attributes)
        {
            info.Attributes[id] = value;
        }

        return new DeviceProperties(info);
    }

    [Fact]
    public void The_pci_bus_id_is_spelled_as_the_driver_spells_it()
        => Assert.Equal("0001:3b:1f.0", Device((50, 1), (33, 0x3b), (34, 0x1f)).PciBusId);

    [Fact]
    public void A_backend_without_pci_attributes_is_at_zero()
        => Assert.Equal("0000:00:00.0", Device().PciBusId);

    [Theory]
    [InlineData("0001:3b:1f.0", 1, 0x3b, 0x1f)]
    [InlineData("0001:3B:1F", 1, 0x3b, 0x1f)]
    [InlineData("3b:1f.0", 0, 0x3b, 0x1f)]
    [InlineData("00000000:65:00.0", 0, 0x65, 0)]
    public void Every_form_the_driver_accepts_is_read(string text, int domain, int bus, int device)
        => Assert.Equal((domain, bus, device), Cuda.ParsePciBusId(text));

    [Theory]
    [InlineData("")]
    [InlineData("not a bus id")]
    [InlineData("3b:1f")]
    [InlineData("0000:3b:1f.0.1")]
    [InlineData("0000:xx:1f.0")]
    [InlineData("1:2:3:4")]
    public void Anything_else_is_not_a_bus_id(string text)
        => Assert.Null(Cuda.ParsePciBusId(text));

    [Fact]
    public void Pitches_round_to_the_reported_texture_pitch_alignment_else_512()
    {
        Assert.Equal(512UL, Device().PitchAlignment);
        Assert.Equal(32UL, Device((51, 32)).PitchAlignment);
    }

    [Fact]
    public void The_shim_serves_host_registration_and_memory_pools_whatever_the_backend_says()
    {
        Assert.Equal(1L, Device((99, 0), (115, 0)).Attribute(99));
        Assert.Equal(1L, Device().Attribute(115));
    }

    [Fact]
    public void Limits_read_the_drivers_defaults()
    {
        var d = Device();

        Assert.Equal(1024UL, ContextLimits.Default(d, ContextLimits.StackSize));
        Assert.Equal(1UL << 20, ContextLimits.Default(d, ContextLimits.PrintfFifoSize));
        Assert.Equal(8UL << 20, ContextLimits.Default(d, ContextLimits.MallocHeapSize));
        Assert.Equal(0UL, ContextLimits.Default(d, ContextLimits.PersistingL2CacheSize));
    }

    [Theory]
    [InlineData(7, (int)CuResult.UnsupportedLimit)]
    [InlineData(9, (int)CuResult.UnsupportedLimit)]
    [InlineData(11, (int)CuResult.InvalidValue)]
    [InlineData(-1, (int)CuResult.InvalidValue)]
    public void Limits_the_shim_has_not_are_refused_as_the_driver_refuses_them(int limit, int result)
        => Assert.Equal((CuResult)result, Assert.Throws<CudaException>(() => ContextLimits.Default(Device(), limit)).Result);

    [Fact]
    public void The_sync_depth_limit_is_gone_from_compute_capability_9()
        => Assert.Equal(CuResult.UnsupportedLimit, Assert.Throws<CudaException>(() => ContextLimits.Default(Device((75, 9)), ContextLimits.DevRuntimeSyncDepth)).Result);

    [Fact]
    public void A_persisting_l2_size_is_clamped_to_the_device_and_refused_without_one()
    {
        Assert.Equal(CuResult.UnsupportedLimit, Assert.Throws<CudaException>(() => ContextLimits.Check(Device(), ContextLimits.PersistingL2CacheSize, 1024)).Result);
        Assert.Equal(4096UL, ContextLimits.Check(Device((108, 4096)), ContextLimits.PersistingL2CacheSize, 1 << 20));
    }
}
