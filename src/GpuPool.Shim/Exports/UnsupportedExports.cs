using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// Driver calls with no meaning across the network: managed (unified) memory, interprocess handles, graphics
/// interop. They exist so that a program linked against them starts, and each fails with
/// CUDA_ERROR_NOT_SUPPORTED and one line on stderr naming the call (once per call, whatever GPUPOOL_SHIM_LOG says),
/// so that a program that gives up on the error says why.
/// </summary>
internal static unsafe partial class Cuda
{
    /// <summary>CUipcMemHandle and CUipcEventHandle: 64 opaque bytes, passed by value.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct IpcHandle
    {
        public fixed byte Reserved[64];
    }

    /// <summary>CUmemLocation, passed by value to the CUDA 12.2 forms of cuMemAdvise and cuMemPrefetchAsync.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct MemLocation
    {
        public int Type;
        public int Id;
    }

    private const string NoManagedMemory = "managed memory: the device's memory is on another machine, it cannot be mapped into this process";
    private const string NoIpc = "interprocess handles: a lease's memory and events belong to its one session";
    private const string NoGraphics = "graphics interop: there is no graphics API on the remote device";

    /// <summary>The answer of every call without a meaning here: one line naming it (once), then CUDA_ERROR_NOT_SUPPORTED.</summary>
    private static CuResult Unsupported(string call, string what)
    {
        try
        {
            _ = Driver.Instance;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }

        ShimLog.OnceAlways("unsupported:" + call, $"{call}: not supported by GpuPool ({what}); it returns CUDA_ERROR_NOT_SUPPORTED");
        return CuResult.NotSupported;
    }

    // ---- Managed memory ----

    [UnmanagedCallersOnly(EntryPoint = "cuMemAllocManaged")]
    internal static CuResult MemAllocManaged(ulong* pointer, nuint bytes, uint flags)
    {
        if (pointer is not null)
        {
            *pointer = 0;
        }

        return Unsupported("cuMemAllocManaged", NoManagedMemory);
    }

    [UnmanagedCallersOnly(EntryPoint = "cuMemAdvise")]
    internal static CuResult MemAdvise(ulong pointer, nuint count, int advice, int device)
        => Unsupported("cuMemAdvise", NoManagedMemory);

    [UnmanagedCallersOnly(EntryPoint = "cuMemAdvise_v2")]
    internal static CuResult MemAdviseV2(ulong pointer, nuint count, int advice, MemLocation location)
        => Unsupported("cuMemAdvise", NoManagedMemory);

    [UnmanagedCallersOnly(EntryPoint = "cuMemPrefetchAsync")]
    internal static CuResult MemPrefetchAsync(ulong pointer, nuint count, int device, nint stream)
        => Unsupported("cuMemPrefetchAsync", NoManagedMemory);

    [UnmanagedCallersOnly(EntryPoint = "cuMemPrefetchAsync_v2")]
    internal static CuResult MemPrefetchAsyncV2(ulong pointer, nuint count, MemLocation location, uint flags, nint stream)
        => Unsupported("cuMemPrefetchAsync", NoManagedMemory);

    [UnmanagedCallersOnly(EntryPoint = "cuMemRangeGetAttribute")]
    internal static CuResult MemRangeGetAttribute(void* data, nuint dataSize, int attribute, ulong pointer, nuint count)
        => Unsupported("cuMemRangeGetAttribute", NoManagedMemory);

    [UnmanagedCallersOnly(EntryPoint = "cuMemRangeGetAttributes")]
    internal static CuResult MemRangeGetAttributes(void** data, nuint* dataSizes, int* attributes, nuint count, ulong pointer, nuint bytes)
        => Unsupported("cuMemRangeGetAttributes", NoManagedMemory);

    // ---- Interprocess handles ----

    [UnmanagedCallersOnly(EntryPoint = "cuIpcGetMemHandle")]
    internal static CuResult IpcGetMemHandle(IpcHandle* handle, ulong pointer)
        => Unsupported("cuIpcGetMemHandle", NoIpc);

    [UnmanagedCallersOnly(EntryPoint = "cuIpcOpenMemHandle")]
    internal static CuResult IpcOpenMemHandleV1(ulong* pointer, IpcHandle handle, uint flags) => IpcOpenMemHandle(pointer, flags);

    [UnmanagedCallersOnly(EntryPoint = "cuIpcOpenMemHandle_v2")]
    internal static CuResult IpcOpenMemHandleV2(ulong* pointer, IpcHandle handle, uint flags) => IpcOpenMemHandle(pointer, flags);

    private static CuResult IpcOpenMemHandle(ulong* pointer, uint flags)
    {
        if (pointer is not null)
        {
            *pointer = 0;
        }

        return Unsupported("cuIpcOpenMemHandle", NoIpc);
    }

    [UnmanagedCallersOnly(EntryPoint = "cuIpcCloseMemHandle")]
    internal static CuResult IpcCloseMemHandle(ulong pointer)
        => Unsupported("cuIpcCloseMemHandle", NoIpc);

    [UnmanagedCallersOnly(EntryPoint = "cuIpcGetEventHandle")]
    internal static CuResult IpcGetEventHandle(IpcHandle* handle, nint evt)
        => Unsupported("cuIpcGetEventHandle", NoIpc);

    [UnmanagedCallersOnly(EntryPoint = "cuIpcOpenEventHandle")]
    internal static CuResult IpcOpenEventHandle(nint* evt, IpcHandle handle)
    {
        if (evt is not null)
        {
            *evt = 0;
        }

        return Unsupported("cuIpcOpenEventHandle", NoIpc);
    }

    // ---- Graphics interop ----

    [UnmanagedCallersOnly(EntryPoint = "cuGraphicsUnregisterResource")]
    internal static CuResult GraphicsUnregisterResource(nint resource)
        => Unsupported("cuGraphicsUnregisterResource", NoGraphics);

    [UnmanagedCallersOnly(EntryPoint = "cuGraphicsMapResources")]
    internal static CuResult GraphicsMapResources(uint count, nint* resources, nint stream)
        => Unsupported("cuGraphicsMapResources", NoGraphics);

    [UnmanagedCallersOnly(EntryPoint = "cuGraphicsUnmapResources")]
    internal static CuResult GraphicsUnmapResources(uint count, nint* resources, nint stream)
        => Unsupported("cuGraphicsUnmapResources", NoGraphics);

    [UnmanagedCallersOnly(EntryPoint = "cuGraphicsResourceGetMappedPointer")]
    internal static CuResult GraphicsResourceGetMappedPointerV1(uint* pointer, nuint* size, nint resource)
        => Unsupported("cuGraphicsResourceGetMappedPointer", NoGraphics);

    [UnmanagedCallersOnly(EntryPoint = "cuGraphicsResourceGetMappedPointer_v2")]
    internal static CuResult GraphicsResourceGetMappedPointer(ulong* pointer, nuint* size, nint resource)
        => Unsupported("cuGraphicsResourceGetMappedPointer", NoGraphics);

    [UnmanagedCallersOnly(EntryPoint = "cuGraphicsSubResourceGetMappedArray")]
    internal static CuResult GraphicsSubResourceGetMappedArray(nint* array, nint resource, uint arrayIndex, uint mipLevel)
        => Unsupported("cuGraphicsSubResourceGetMappedArray", NoGraphics);

    [UnmanagedCallersOnly(EntryPoint = "cuGraphicsResourceSetMapFlags")]
    internal static CuResult GraphicsResourceSetMapFlagsV1(nint resource, uint flags)
        => Unsupported("cuGraphicsResourceSetMapFlags", NoGraphics);

    [UnmanagedCallersOnly(EntryPoint = "cuGraphicsResourceSetMapFlags_v2")]
    internal static CuResult GraphicsResourceSetMapFlags(nint resource, uint flags)
        => Unsupported("cuGraphicsResourceSetMapFlags", NoGraphics);
}
