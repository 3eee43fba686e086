using System.Globalization;
using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// Where the device sits: its PCI bus id from the PCI attributes the session reports (all 0 on a backend without a
/// PCI device), in the driver's spelling. There is no Windows adapter LUID on Linux, as with the driver.
/// </summary>
internal static unsafe partial class Cuda
{
    [UnmanagedCallersOnly(EntryPoint = "cuDeviceGetPCIBusId")]
    internal static CuResult DeviceGetPciBusId(byte* busId, int length, int device)
    {
        try
        {
            NotNull(busId, "pciBusId");
            if (length <= 0)
            {
                throw new CudaException(CuResult.InvalidValue, $"len must be positive, not {length}");
            }

            var driver = Driver.Instance;
            CheckDevice(device);
            Utf8.Write(driver.Device.PciBusId, busId, length);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuDeviceGetPCIBusId", ex);
        }
    }

    /// <summary>
    /// Accepts the driver's forms, hex digits each: domain:bus:device.function, domain:bus:device and
    /// bus:device.function. A bus id that is not the lease's device is CUDA_ERROR_INVALID_DEVICE.
    /// </summary>
    [UnmanagedCallersOnly(EntryPoint = "cuDeviceGetByPCIBusId")]
    internal static CuResult DeviceGetByPciBusId(int* device, byte* busId)
    {
        try
        {
            NotNull(device, "dev");
            NotNull(busId, "pciBusId");
            var driver = Driver.Instance;
            var text = Utf8.Read(busId, 64);
            var (domain, bus, slot) = ParsePciBusId(text) ?? throw new CudaException(CuResult.InvalidValue, $"'{text}' is not a PCI bus id (domain:bus:device.function in hex)");
            if ((domain, bus, slot) != driver.Device.Pci)
            {
                throw new CudaException(CuResult.InvalidDevice, $"no device at PCI bus id {text}: the lease's device is at {driver.Device.PciBusId}");
            }

            *device = 0;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuDeviceGetByPCIBusId", ex);
        }
    }

    internal static (int Domain, int Bus, int Device)? ParsePciBusId(string text)
    {
        var parts = text.Trim().Split(':');
        if (parts.Length is not (2 or 3))
        {
            return null;
        }

        var last = parts[^1].Split('.');
        if (last.Length > 2 || (parts.Length == 2 && last.Length != 2))
        {
            return null;
        }

        int domain = 0, bus = 0, slot = 0;
        var ok = (parts.Length == 2 || Hex(parts[0], out domain))
            && Hex(parts[^2], out bus)
            && Hex(last[0], out slot)
            && (last.Length == 1 || Hex(last[1], out _));
        return ok ? (domain, bus, slot) : null;

        static bool Hex(string s, out int value)
            => int.TryParse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value) && s.Length > 0;
    }

    /// <summary>A Windows adapter's LUID: the driver on Linux has none either.</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuDeviceGetLuid")]
    internal static CuResult DeviceGetLuid(byte* luid, uint* deviceNodeMask, int device)
    {
        try
        {
            _ = Driver.Instance;
            CheckDevice(device);
            throw new CudaException(CuResult.NotSupported, "a device LUID exists on Windows only");
        }
        catch (Exception ex)
        {
            return Errors.Report("cuDeviceGetLuid", ex);
        }
    }
}
