using System.Runtime.InteropServices;

namespace GpuPool.Devices.Cuda.Native;

/// <summary>
/// The NVML entry points the cuda backend reads inventory and telemetry with, declared as in nvml.h. Every
/// function returns an nvmlReturn_t (0 = NVML_SUCCESS). nvmlDevice_t is a pointer.
/// </summary>
internal static unsafe partial class Nvml
{
    public const string Library = "libnvidia-ml.so.1";

    public const int TemperatureGpu = 0;

    /// <summary>NVML_DEVICE_UUID_V2_BUFFER_SIZE and NVML_DEVICE_NAME_V2_BUFFER_SIZE.</summary>
    public const int StringBufferSize = 96;

    [StructLayout(LayoutKind.Sequential)]
    public struct Memory
    {
        public ulong Total;
        public ulong Free;
        public ulong Used;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Utilization
    {
        public uint Gpu;
        public uint Memory;
    }

    [LibraryImport(Library)]
    public static partial int nvmlInit_v2();

    [LibraryImport(Library)]
    public static partial int nvmlShutdown();

    [LibraryImport(Library)]
    public static partial byte* nvmlErrorString(int result);

    [LibraryImport(Library)]
    public static partial int nvmlDeviceGetCount_v2(out uint count);

    [LibraryImport(Library)]
    public static partial int nvmlDeviceGetHandleByIndex_v2(uint index, out nint device);

    [LibraryImport(Library)]
    public static partial int nvmlDeviceGetName(nint device, byte* name, uint length);

    [LibraryImport(Library)]
    public static partial int nvmlDeviceGetUUID(nint device, byte* uuid, uint length);

    [LibraryImport(Library)]
    public static partial int nvmlDeviceGetMemoryInfo(nint device, out Memory memory);

    [LibraryImport(Library)]
    public static partial int nvmlDeviceGetUtilizationRates(nint device, out Utilization utilization);

    [LibraryImport(Library)]
    public static partial int nvmlDeviceGetTemperature(nint device, int sensor, out uint celsius);
}
