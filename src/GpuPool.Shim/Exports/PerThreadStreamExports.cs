using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// The per-thread default stream ABI names (_ptds for calls on the default stream, _ptsz for calls that take one),
/// which cuda.h links to when a program is built with CUDA_API_PER_THREAD_DEFAULT_STREAM (nvcc
/// --default-stream per-thread). The shim treats the per-thread and the legacy default stream alike, so each is the
/// function without the suffix. cuGetProcAddress hands out the unsuffixed names for either stream flag; these are
/// for programs linked against the suffixed symbols.
/// </summary>
internal static unsafe partial class Cuda
{
    // ---- Copies and memsets ----

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpy_ptds")]
    internal static CuResult MemcpyPtds(ulong dst, ulong src, nuint bytes) => CopyUnified("cuMemcpy", dst, src, bytes, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyAsync_ptsz")]
    internal static CuResult MemcpyAsyncPtsz(ulong dst, ulong src, nuint bytes, nint stream) => CopyUnified("cuMemcpyAsync", dst, src, bytes, stream);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyHtoD_v2_ptds")]
    internal static CuResult MemcpyHtoDPtds(ulong dst, byte* src, nuint bytes) => CopyToDevice("cuMemcpyHtoD", dst, src, bytes, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyHtoDAsync_v2_ptsz")]
    internal static CuResult MemcpyHtoDAsyncPtsz(ulong dst, byte* src, nuint bytes, nint stream) => CopyToDevice("cuMemcpyHtoDAsync", dst, src, bytes, stream);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyDtoH_v2_ptds")]
    internal static CuResult MemcpyDtoHPtds(byte* dst, ulong src, nuint bytes) => CopyToHost("cuMemcpyDtoH", dst, src, bytes, 0, async: false);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyDtoHAsync_v2_ptsz")]
    internal static CuResult MemcpyDtoHAsyncPtsz(byte* dst, ulong src, nuint bytes, nint stream) => CopyToHost("cuMemcpyDtoHAsync", dst, src, bytes, stream, async: true);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyDtoD_v2_ptds")]
    internal static CuResult MemcpyDtoDPtds(ulong dst, ulong src, nuint bytes) => CopyDeviceToDevice("cuMemcpyDtoD", dst, src, bytes, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyDtoDAsync_v2_ptsz")]
    internal static CuResult MemcpyDtoDAsyncPtsz(ulong dst, ulong src, nuint bytes, nint stream) => CopyDeviceToDevice("cuMemcpyDtoDAsync", dst, src, bytes, stream);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpy2D_v2_ptds")]
    internal static CuResult Memcpy2DPtds(Memcpy2DParams* copy) => Copy2D("cuMemcpy2D", copy, 0, async: false);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpy2DUnaligned_v2_ptds")]
    internal static CuResult Memcpy2DUnalignedPtds(Memcpy2DParams* copy) => Copy2D("cuMemcpy2DUnaligned", copy, 0, async: false);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpy2DAsync_v2_ptsz")]
    internal static CuResult Memcpy2DAsyncPtsz(Memcpy2DParams* copy, nint stream) => Copy2D("cuMemcpy2DAsync", copy, stream, async: true);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpy3D_v2_ptds")]
    internal static CuResult Memcpy3DPtds(Memcpy3DParams* copy) => Copy3D("cuMemcpy3D", copy, 0, async: false);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpy3DAsync_v2_ptsz")]
    internal static CuResult Memcpy3DAsyncPtsz(Memcpy3DParams* copy, nint stream) => Copy3D("cuMemcpy3DAsync", copy, stream, async: true);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD8_v2_ptds")]
    internal static CuResult MemsetD8Ptds(ulong dst, byte value, nuint count) => Memset("cuMemsetD8", dst, value, count, 1, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD16_v2_ptds")]
    internal static CuResult MemsetD16Ptds(ulong dst, ushort value, nuint count) => Memset("cuMemsetD16", dst, value, count, 2, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD32_v2_ptds")]
    internal static CuResult MemsetD32Ptds(ulong dst, uint value, nuint count) => Memset("cuMemsetD32", dst, value, count, 4, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD8Async_ptsz")]
    internal static CuResult MemsetD8AsyncPtsz(ulong dst, byte value, nuint count, nint stream) => Memset("cuMemsetD8Async", dst, value, count, 1, stream);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD16Async_ptsz")]
    internal static CuResult MemsetD16AsyncPtsz(ulong dst, ushort value, nuint count, nint stream) => Memset("cuMemsetD16Async", dst, value, count, 2, stream);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD32Async_ptsz")]
    internal static CuResult MemsetD32AsyncPtsz(ulong dst, uint value, nuint count, nint stream) => Memset("cuMemsetD32Async", dst, value, count, 4, stream);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD2D8_v2_ptds")]
    internal static CuResult MemsetD2D8Ptds(ulong dst, nuint pitch, byte value, nuint width, nuint height) => Memset2D("cuMemsetD2D8", dst, pitch, value, width, height, 1, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD2D16_v2_ptds")]
    internal static CuResult MemsetD2D16Ptds(ulong dst, nuint pitch, ushort value, nuint width, nuint height) => Memset2D("cuMemsetD2D16", dst, pitch, value, width, height, 2, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD2D32_v2_ptds")]
    internal static CuResult MemsetD2D32Ptds(ulong dst, nuint pitch, uint value, nuint width, nuint height) => Memset2D("cuMemsetD2D32", dst, pitch, value, width, height, 4, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD2D8Async_ptsz")]
    internal static CuResult MemsetD2D8AsyncPtsz(ulong dst, nuint pitch, byte value, nuint width, nuint height, nint stream) => Memset2D("cuMemsetD2D8Async", dst, pitch, value, width, height, 1, stream);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD2D16Async_ptsz")]
    internal static CuResult MemsetD2D16AsyncPtsz(ulong dst, nuint pitch, ushort value, nuint width, nuint height, nint stream) => Memset2D("cuMemsetD2D16Async", dst, pitch, value, width, height, 2, stream);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD2D32Async_ptsz")]
    internal static CuResult MemsetD2D32AsyncPtsz(ulong dst, nuint pitch, uint value, nuint width, nuint height, nint stream) => Memset2D("cuMemsetD2D32Async", dst, pitch, value, width, height, 4, stream);

    // ---- Stream-ordered memory ----

    [UnmanagedCallersOnly(EntryPoint = "cuMemAllocAsync_ptsz")]
    internal static CuResult MemAllocAsyncPtsz(ulong* pointer, nuint bytes, nint stream) => AllocAsync("cuMemAllocAsync", pointer, bytes, null, stream);

    [UnmanagedCallersOnly(EntryPoint = "cuMemAllocFromPoolAsync_ptsz")]
    internal static CuResult MemAllocFromPoolAsyncPtsz(ulong* pointer, nuint bytes, nint pool, nint stream) => AllocAsync("cuMemAllocFromPoolAsync", pointer, bytes, pool, stream);

    [UnmanagedCallersOnly(EntryPoint = "cuMemFreeAsync_ptsz")]
    internal static CuResult MemFreeAsyncPtsz(ulong pointer, nint stream) => FreeAsync(pointer, stream);

    [UnmanagedCallersOnly(EntryPoint = "cuMemPrefetchAsync_ptsz")]
    internal static CuResult MemPrefetchAsyncPtsz(ulong pointer, nuint count, int device, nint stream) => Unsupported("cuMemPrefetchAsync", NoManagedMemory);

    [UnmanagedCallersOnly(EntryPoint = "cuMemPrefetchAsync_v2_ptsz")]
    internal static CuResult MemPrefetchAsyncV2Ptsz(ulong pointer, nuint count, MemLocation location, uint flags, nint stream) => Unsupported("cuMemPrefetchAsync", NoManagedMemory);

    // ---- Streams, events, launches ----

    [UnmanagedCallersOnly(EntryPoint = "cuStreamSynchronize_ptsz")]
    internal static CuResult StreamSynchronizePtsz(nint stream) => SynchronizeStream(stream);

    [UnmanagedCallersOnly(EntryPoint = "cuStreamQuery_ptsz")]
    internal static CuResult StreamQueryPtsz(nint stream) => QueryStream(stream);

    [UnmanagedCallersOnly(EntryPoint = "cuStreamWaitEvent_ptsz")]
    internal static CuResult StreamWaitEventPtsz(nint stream, nint evt, uint flags) => WaitEvent(stream, evt, flags);

    [UnmanagedCallersOnly(EntryPoint = "cuStreamGetPriority_ptsz")]
    internal static CuResult StreamGetPriorityPtsz(nint stream, int* priority) => GetStreamPriority(stream, priority);

    [UnmanagedCallersOnly(EntryPoint = "cuStreamGetFlags_ptsz")]
    internal static CuResult StreamGetFlagsPtsz(nint stream, uint* flags) => GetStreamFlags(stream, flags);

    [UnmanagedCallersOnly(EntryPoint = "cuStreamAddCallback_ptsz")]
    internal static CuResult StreamAddCallbackPtsz(nint stream, nint callback, nint userData, uint flags) => QueueHostCall("cuStreamAddCallback", stream, callback, userData, flags, isStreamCallback: true);

    [UnmanagedCallersOnly(EntryPoint = "cuLaunchHostFunc_ptsz")]
    internal static CuResult LaunchHostFuncPtsz(nint stream, nint function, nint userData) => QueueHostCall("cuLaunchHostFunc", stream, function, userData, 0, isStreamCallback: false);

    [UnmanagedCallersOnly(EntryPoint = "cuEventRecord_ptsz")]
    internal static CuResult EventRecordPtsz(nint evt, nint stream) => Record("cuEventRecord", evt, stream, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuEventRecordWithFlags_ptsz")]
    internal static CuResult EventRecordWithFlagsPtsz(nint evt, nint stream, uint flags) => Record("cuEventRecordWithFlags", evt, stream, flags);

    [UnmanagedCallersOnly(EntryPoint = "cuLaunchKernel_ptsz")]
    internal static CuResult LaunchKernelPtsz(
        nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
        uint sharedMemBytes, nint stream, void** kernelParams, nint* extra)
        => Launch("cuLaunchKernel", function, (gridX, gridY, gridZ), (blockX, blockY, blockZ), sharedMemBytes, stream, kernelParams, extra);

    [UnmanagedCallersOnly(EntryPoint = "cuLaunchKernelEx_ptsz")]
    internal static CuResult LaunchKernelExPtsz(LaunchConfig* config, nint function, void** kernelParams, nint* extra) => LaunchEx(config, function, kernelParams, extra);

    [UnmanagedCallersOnly(EntryPoint = "cuLaunchCooperativeKernel_ptsz")]
    internal static CuResult LaunchCooperativeKernelPtsz(
        nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ, uint sharedMemBytes, nint stream, void** kernelParams)
        => CooperativeUnsupported();

    [UnmanagedCallersOnly(EntryPoint = "cuGraphicsMapResources_ptsz")]
    internal static CuResult GraphicsMapResourcesPtsz(uint count, nint* resources, nint stream) => Unsupported("cuGraphicsMapResources", NoGraphics);

    [UnmanagedCallersOnly(EntryPoint = "cuGraphicsUnmapResources_ptsz")]
    internal static CuResult GraphicsUnmapResourcesPtsz(uint count, nint* resources, nint stream) => Unsupported("cuGraphicsUnmapResources", NoGraphics);
}
