using GpuPool.Devices.Scheduling;
using GpuPool.Devices.Tests.Contexts;

namespace GpuPool.Devices.Tests.Cpu;

/// <summary>The shared context core's sticky-error specifications, each test on a cpu device of its own.</summary>
public sealed class CpuStickyErrorSpecs() : StickyErrorSpecs(CpuSpecDevice.New());

/// <summary>The shared context core's stream and event specifications, each test on a cpu device of its own.</summary>
public sealed class CpuStreamAndEventSpecs() : StreamAndEventSpecs(CpuSpecDevice.New());

internal static class CpuSpecDevice
{
    /// <summary>xunit makes a test class instance per test, so a test that holds the slots holds only its own device's.</summary>
    public static (IDevice, FairShareDispatcher) New()
    {
        var device = Dev.Device();
        return (device, device.Dispatcher);
    }
}
