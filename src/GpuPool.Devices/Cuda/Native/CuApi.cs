using System.Runtime.InteropServices;

namespace GpuPool.Devices.Cuda.Native;

/// <summary>
/// The CUDA driver API entry points the cuda backend calls, declared as in cuda.h. The <c>_v2</c> names are the
/// ABI that cuda.h's macros resolve to on 64-bit Linux; the driver keeps exporting them for programs built with
/// any toolkit since CUDA 4. Every function returns a CUresult (0 = CUDA_SUCCESS): check it with <see cref="CudaErrors"/>.
/// </summary>
/// <remarks>
/// CUdevice is <c>int</c>, CUdeviceptr <c>unsigned long long</c>, handles (CUcontext, CUstream, ...) are pointers.
/// Bound lazily to <see cref="Library"/> through <see cref="NativeLibraries"/>, so nothing here is touched before
/// <see cref="CudaBackend.TryCreate(CudaOptions, out CudaBackend?, out string)"/> has loaded the driver.
/// </remarks>
internal static unsafe partial class CuApi
{
    public const string Library = "libcuda.so.1";

    public const uint CtxSchedAuto = 0;
    public const uint CtxSchedBlockingSync = 0x4;
    public const uint StreamNonBlocking = 0x1;
    public const uint EventDefault = 0;
    public const uint MemHostAllocPortable = 0x1;

    // CUjit_option
    public const int JitInfoLogBuffer = 3;
    public const int JitInfoLogBufferSizeBytes = 4;
    public const int JitErrorLogBuffer = 5;
    public const int JitErrorLogBufferSizeBytes = 6;

    // cuLaunchKernel's "extra" keys
    public const nint LaunchParamEnd = 0;
    public const nint LaunchParamBufferPointer = 1;
    public const nint LaunchParamBufferSize = 2;

    [LibraryImport(Library)]
    public static partial int cuInit(uint flags);

    [LibraryImport(Library)]
    public static partial int cuDriverGetVersion(out int version);

    [LibraryImport(Library)]
    public static partial int cuGetErrorName(int error, out byte* name);

    [LibraryImport(Library)]
    public static partial int cuGetErrorString(int error, out byte* text);

    [LibraryImport(Library)]
    public static partial int cuDeviceGetCount(out int count);

    [LibraryImport(Library)]
    public static partial int cuDeviceGet(out int device, int ordinal);

    [LibraryImport(Library)]
    public static partial int cuDeviceGetName(byte* name, int length, int device);

    /// <summary>Writes the device's 16-byte UUID (CUuuid).</summary>
    [LibraryImport(Library)]
    public static partial int cuDeviceGetUuid(byte* uuid, int device);

    [LibraryImport(Library)]
    public static partial int cuDeviceTotalMem_v2(out nuint bytes, int device);

    [LibraryImport(Library)]
    public static partial int cuDeviceGetAttribute(out int value, int attribute, int device);

    [LibraryImport(Library)]
    public static partial int cuDevicePrimaryCtxRetain(out nint context, int device);

    [LibraryImport(Library)]
    public static partial int cuDevicePrimaryCtxRelease_v2(int device);

    /// <summary>Creates a context and makes it current to the calling thread (pushes it): pop it when done there.</summary>
    [LibraryImport(Library)]
    public static partial int cuCtxCreate_v2(out nint context, uint flags, int device);

    [LibraryImport(Library)]
    public static partial int cuCtxDestroy_v2(nint context);

    [LibraryImport(Library)]
    public static partial int cuCtxPushCurrent_v2(nint context);

    [LibraryImport(Library)]
    public static partial int cuCtxPopCurrent_v2(out nint context);

    [LibraryImport(Library)]
    public static partial int cuCtxSetCurrent(nint context);

    [LibraryImport(Library)]
    public static partial int cuMemGetInfo_v2(out nuint free, out nuint total);

    [LibraryImport(Library)]
    public static partial int cuMemAlloc_v2(out ulong pointer, nuint bytes);

    [LibraryImport(Library)]
    public static partial int cuMemFree_v2(ulong pointer);

    [LibraryImport(Library)]
    public static partial int cuMemHostAlloc(out nint pointer, nuint bytes, uint flags);

    [LibraryImport(Library)]
    public static partial int cuMemFreeHost(nint pointer);

    [LibraryImport(Library)]
    public static partial int cuMemcpyHtoDAsync_v2(ulong destination, void* source, nuint bytes, nint stream);

    [LibraryImport(Library)]
    public static partial int cuMemcpyDtoHAsync_v2(void* destination, ulong source, nuint bytes, nint stream);

    [LibraryImport(Library)]
    public static partial int cuMemcpyDtoDAsync_v2(ulong destination, ulong source, nuint bytes, nint stream);

    [LibraryImport(Library)]
    public static partial int cuMemsetD8Async(ulong destination, byte value, nuint count, nint stream);

    [LibraryImport(Library)]
    public static partial int cuMemsetD16Async(ulong destination, ushort value, nuint count, nint stream);

    [LibraryImport(Library)]
    public static partial int cuMemsetD32Async(ulong destination, uint value, nuint count, nint stream);

    [LibraryImport(Library)]
    public static partial int cuModuleLoadDataEx(out nint module, void* image, uint optionCount, int* options, void** optionValues);

    [LibraryImport(Library)]
    public static partial int cuModuleUnload(nint module);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int cuModuleGetFunction(out nint function, nint module, string name);

    /// <summary>The device address and size of a module-scope variable; CUDA_ERROR_NOT_FOUND when the module has none of that name.</summary>
    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int cuModuleGetGlobal_v2(out ulong pointer, out nuint bytes, nint module, string name);

    /// <summary>Offset and size of a kernel parameter (CUDA 12.4 and later); CUDA_ERROR_INVALID_VALUE past the last one.</summary>
    [LibraryImport(Library)]
    public static partial int cuFuncGetParamInfo(nint function, nuint index, out nuint offset, out nuint size);

    [LibraryImport(Library)]
    public static partial int cuLaunchKernel(
        nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ, uint sharedMemBytes, nint stream, void** kernelParams, void** extra);

    [LibraryImport(Library)]
    public static partial int cuStreamCreate(out nint stream, uint flags);

    [LibraryImport(Library)]
    public static partial int cuStreamDestroy_v2(nint stream);

    [LibraryImport(Library)]
    public static partial int cuStreamSynchronize(nint stream);

    [LibraryImport(Library)]
    public static partial int cuEventCreate(out nint evt, uint flags);

    [LibraryImport(Library)]
    public static partial int cuEventDestroy_v2(nint evt);

    [LibraryImport(Library)]
    public static partial int cuEventRecord(nint evt, nint stream);

    [LibraryImport(Library)]
    public static partial int cuEventSynchronize(nint evt);

    [LibraryImport(Library)]
    public static partial int cuEventElapsedTime(out float milliseconds, nint start, nint end);
}
