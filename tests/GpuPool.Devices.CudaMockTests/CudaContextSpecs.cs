using GpuPool.Devices.Scheduling;
using GpuPool.Devices.Tests.Contexts;

namespace GpuPool.Devices.CudaMockTests;

/// <summary>The shared context core's sticky-error specifications on the cuda backend (the mock driver's device).</summary>
public sealed class CudaStickyErrorSpecs() : StickyErrorSpecs(MockSpecDevice.Value);

/// <summary>The shared context core's stream and event specifications on the cuda backend (the mock driver's device).</summary>
public sealed class CudaStreamAndEventSpecs() : StreamAndEventSpecs(MockSpecDevice.Value);

internal static class MockSpecDevice
{
    /// <summary>The one device of the process's backend; the tests of this project run one at a time, so holding its slots holds no other test up.</summary>
    public static (IDevice, FairShareDispatcher) Value => (MockDriver.Device, MockDriver.Device.Dispatcher);
}
