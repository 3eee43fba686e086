using System.Runtime.InteropServices;
using GpuPool.Devices.Cuda.Native;

namespace GpuPool.Devices.Cuda;

/// <summary>
/// NVML, opened for the backend's life: finds each CUDA device's NVML handle by UUID (NVML numbers devices by PCI
/// order, CUDA by speed unless CUDA_DEVICE_ORDER says otherwise) and reads its telemetry. Optional: without NVML
/// the devices still work and report no telemetry.
/// </summary>
internal sealed unsafe class NvmlSession : IDisposable
{
    private int _disposed;

    private NvmlSession()
    {
    }

    /// <summary>An open NVML, or null with a sentence saying why not.</summary>
    public static NvmlSession? TryOpen(string library, out string note)
    {
        if (!NativeLibraries.TryLoad(Nvml.Library, library, out var error))
        {
            note = $"no NVML ({library} could not be loaded: {error}), so devices report no utilization or temperature";
            return null;
        }

        try
        {
            var result = Nvml.nvmlInit_v2();
            if (result != 0)
            {
                note = $"nvmlInit_v2 failed ({Describe(result)}), so devices report no utilization or temperature";
                return null;
            }
        }
        catch (EntryPointNotFoundException ex)
        {
            note = $"NVML is too old ({ex.Message}), so devices report no utilization or temperature";
            return null;
        }

        note = "";
        return new NvmlSession();
    }

    /// <summary>The NVML handle of the device whose UUID NVML spells <paramref name="uuid"/> ("GPU-…"); null when none matches.</summary>
    public nint? FindByUuid(string uuid)
    {
        if (Nvml.nvmlDeviceGetCount_v2(out var count) != 0)
        {
            return null;
        }

        var buffer = stackalloc byte[Nvml.StringBufferSize];
        for (uint i = 0; i < count; i++)
        {
            if (Nvml.nvmlDeviceGetHandleByIndex_v2(i, out var device) == 0
                && Nvml.nvmlDeviceGetUUID(device, buffer, Nvml.StringBufferSize) == 0
                && string.Equals(Marshal.PtrToStringUTF8((nint)buffer), uuid, StringComparison.OrdinalIgnoreCase))
            {
                return device;
            }
        }

        return null;
    }

    /// <summary>The device's readings now; a reading NVML refuses (not supported, lost) is left null.</summary>
    public static DeviceTelemetry Read(nint device)
    {
        ulong? total = null, used = null;
        uint? utilization = null;
        int? temperature = null;
        if (Nvml.nvmlDeviceGetMemoryInfo(device, out var memory) == 0)
        {
            (total, used) = (memory.Total, memory.Used);
        }

        if (Nvml.nvmlDeviceGetUtilizationRates(device, out var rates) == 0)
        {
            utilization = rates.Gpu;
        }

        if (Nvml.nvmlDeviceGetTemperature(device, Nvml.TemperatureGpu, out var celsius) == 0)
        {
            temperature = (int)celsius;
        }

        return new DeviceTelemetry(total, used, utilization, temperature);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _ = Nvml.nvmlShutdown();
        }
    }

    private static string Describe(int result)
    {
        try
        {
            return Marshal.PtrToStringUTF8((nint)Nvml.nvmlErrorString(result)) ?? $"nvmlReturn_t {result}";
        }
        catch (EntryPointNotFoundException)
        {
            return $"nvmlReturn_t {result}";
        }
    }
}
