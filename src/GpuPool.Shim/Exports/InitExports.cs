using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// The CUDA driver API, exported by the NativeAOT library. Every entry point catches everything its body throws
/// and returns a CUresult: nothing crosses the native boundary as an exception.
/// </summary>
internal static unsafe partial class Cuda
{
    [UnmanagedCallersOnly(EntryPoint = "cuInit")]
    internal static CuResult Init(uint flags)
    {
        try
        {
            if (flags != 0)
            {
                throw new CudaException(CuResult.InvalidValue, $"flags must be 0, not {flags}");
            }

            Driver.Init();
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuInit", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuDriverGetVersion")]
    internal static CuResult DriverGetVersion(int* version)
    {
        if (version is null)
        {
            return CuResult.InvalidValue;
        }

        *version = Driver.Version;
        return CuResult.Success;
    }

    [UnmanagedCallersOnly(EntryPoint = "cuGetErrorName")]
    internal static CuResult GetErrorName(int error, byte** text) => ErrorText(error, text, name: true);

    [UnmanagedCallersOnly(EntryPoint = "cuGetErrorString")]
    internal static CuResult GetErrorString(int error, byte** text) => ErrorText(error, text, name: false);

    private static CuResult ErrorText(int error, byte** text, bool name)
    {
        try
        {
            if (text is null)
            {
                return CuResult.InvalidValue;
            }

            *text = CuResultText.NativeText(error, name);
            return *text is null ? CuResult.InvalidValue : CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(name ? "cuGetErrorName" : "cuGetErrorString", ex);
        }
    }

    /// <summary>NVIDIA's private tables, which the CUDA runtime asks for before anything else (Runtime/ExportTables).</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuGetExportTable")]
    internal static CuResult GetExportTable(void** table, byte* tableId) => Runtime.ExportTables.Get(table, tableId);

    // ---- Argument checks shared by the exports ----

    private static void NotNull(void* pointer, string name)
    {
        if (pointer is null)
        {
            throw new CudaException(CuResult.InvalidValue, $"{name} is null");
        }
    }

    private static void CheckDevice(int device)
    {
        if (device != 0)
        {
            throw new CudaException(CuResult.InvalidDevice, $"device {device} does not exist: a lease has one device, ordinal 0");
        }
    }
}
