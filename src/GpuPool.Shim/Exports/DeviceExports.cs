using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>Devices: one per lease, ordinal 0, described from the session's cache (no round trip).</summary>
internal static unsafe partial class Cuda
{
    [UnmanagedCallersOnly(EntryPoint = "cuDeviceGet")]
    internal static CuResult DeviceGet(int* device, int ordinal)
    {
        try
        {
            NotNull(device, "device");
            _ = Driver.Instance;
            CheckDevice(ordinal);
            *device = 0;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuDeviceGet", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuDeviceGetCount")]
    internal static CuResult DeviceGetCount(int* count)
    {
        try
        {
            NotNull(count, "count");
            _ = Driver.Instance;
            *count = 1;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuDeviceGetCount", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuDeviceGetName")]
    internal static CuResult DeviceGetName(byte* name, int length, int device)
    {
        try
        {
            NotNull(name, "name");
            if (length <= 0)
            {
                throw new CudaException(CuResult.InvalidValue, $"len must be positive, not {length}");
            }

            var driver = Driver.Instance;
            CheckDevice(device);
            Utf8.Write(driver.Device.Name, name, length);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuDeviceGetName", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuDeviceGetUuid")]
    internal static CuResult DeviceGetUuid(byte* uuid, int device) => Uuid("cuDeviceGetUuid", uuid, device);

    [UnmanagedCallersOnly(EntryPoint = "cuDeviceGetUuid_v2")]
    internal static CuResult DeviceGetUuidV2(byte* uuid, int device) => Uuid("cuDeviceGetUuid_v2", uuid, device);

    private static CuResult Uuid(string call, byte* uuid, int device)
    {
        try
        {
            NotNull(uuid, "uuid");
            var driver = Driver.Instance;
            CheckDevice(device);
            driver.Device.Uuid.CopyTo(new Span<byte>(uuid, 16));
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuDeviceTotalMem_v2")]
    internal static CuResult DeviceTotalMem(nuint* bytes, int device)
    {
        try
        {
            NotNull(bytes, "bytes");
            var driver = Driver.Instance;
            CheckDevice(device);
            *bytes = (nuint)driver.Device.TotalMemory;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuDeviceTotalMem", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuDeviceGetAttribute")]
    internal static CuResult DeviceGetAttribute(int* value, int attribute, int device)
    {
        try
        {
            NotNull(value, "pi");
            var driver = Driver.Instance;
            CheckDevice(device);
            *value = (int)Math.Clamp(driver.Device.Attribute(attribute), int.MinValue, int.MaxValue);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuDeviceGetAttribute", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuDeviceComputeCapability")]
    internal static CuResult DeviceComputeCapability(int* major, int* minor, int device)
    {
        try
        {
            NotNull(major, "major");
            NotNull(minor, "minor");
            var driver = Driver.Instance;
            CheckDevice(device);
            *major = driver.Device.ComputeMajor;
            *minor = driver.Device.ComputeMinor;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuDeviceComputeCapability", ex);
        }
    }
}
