using System.Collections.Frozen;
using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// cuGetProcAddress: the shim's own entry points by base name and CUDA version. A name may have several ABI
/// versions (cuCtxCreate: _v2 since 3.2, _v3 since 11.4, _v4 since 12.5); the caller gets the newest one not
/// newer than the version it asks for. Names the shim does not serve get no pointer and are logged once each
/// when GPUPOOL_SHIM_LOG is set (the CUDA runtime probes hundreds of them at start, so not by default).
/// </summary>
internal static unsafe partial class Cuda
{
    private const int ProcFound = 0;
    private const int ProcSymbolNotFound = 1;
    private const int ProcVersionNotSufficient = 2;

    /// <summary>Base name → (CUDA version that introduced the ABI, exported symbol), oldest first.</summary>
    internal static readonly FrozenDictionary<string, (int Version, string Symbol)[]> ProcTable = BuildProcTable();

    private static readonly object ProcGate = new();
    private static nint s_self;

    private static FrozenDictionary<string, (int, string)[]> BuildProcTable()
    {
        var table = new Dictionary<string, List<(int, string)>>(StringComparer.Ordinal);
        void Add(string name, int version, string? symbol = null)
        {
            if (!table.TryGetValue(name, out var list))
            {
                table[name] = list = [];
            }

            list.Add((version, symbol ?? name));
        }

        Add("cuInit", 2000);
        Add("cuDriverGetVersion", 2020);
        Add("cuGetErrorName", 6000);
        Add("cuGetErrorString", 6000);
        Add("cuGetExportTable", 3000);
        Add("cuGetProcAddress", 11030);
        Add("cuGetProcAddress", 12000, "cuGetProcAddress_v2");

        Add("cuDeviceGet", 2000);
        Add("cuDeviceGetCount", 2000);
        Add("cuDeviceGetName", 2000);
        Add("cuDeviceGetUuid", 9020);
        Add("cuDeviceGetUuid", 11040, "cuDeviceGetUuid_v2");
        Add("cuDeviceTotalMem", 3020, "cuDeviceTotalMem_v2");
        Add("cuDeviceGetAttribute", 2000);
        Add("cuDeviceComputeCapability", 2000);

        Add("cuDevicePrimaryCtxRetain", 7000);
        Add("cuDevicePrimaryCtxRelease", 7000);
        Add("cuDevicePrimaryCtxRelease", 11000, "cuDevicePrimaryCtxRelease_v2");
        Add("cuDevicePrimaryCtxReset", 7000);
        Add("cuDevicePrimaryCtxReset", 11000, "cuDevicePrimaryCtxReset_v2");
        Add("cuDevicePrimaryCtxSetFlags", 7000);
        Add("cuDevicePrimaryCtxSetFlags", 11000, "cuDevicePrimaryCtxSetFlags_v2");
        Add("cuDevicePrimaryCtxGetState", 7000);

        Add("cuCtxCreate", 3020, "cuCtxCreate_v2");
        Add("cuCtxCreate", 11040, "cuCtxCreate_v3");
        Add("cuCtxCreate", 12050, "cuCtxCreate_v4");
        Add("cuCtxDestroy", 4000, "cuCtxDestroy_v2");
        Add("cuCtxSetCurrent", 4000);
        Add("cuCtxGetCurrent", 4000);
        Add("cuCtxPushCurrent", 4000, "cuCtxPushCurrent_v2");
        Add("cuCtxPopCurrent", 4000, "cuCtxPopCurrent_v2");
        Add("cuCtxSynchronize", 2000);
        Add("cuCtxGetDevice", 2000);
        Add("cuCtxGetFlags", 7000);
        Add("cuCtxGetApiVersion", 3020);
        Add("cuCtxAttach", 2000);
        Add("cuCtxDetach", 2000);
        Add("cuCtxGetStreamPriorityRange", 5050);

        Add("cuMemGetInfo", 3020, "cuMemGetInfo_v2");
        Add("cuMemAlloc", 3020, "cuMemAlloc_v2");
        Add("cuMemFree", 3020, "cuMemFree_v2");
        Add("cuMemGetAddressRange", 3020, "cuMemGetAddressRange_v2");
        Add("cuMemAllocHost", 3020, "cuMemAllocHost_v2");
        Add("cuMemHostAlloc", 2020);
        Add("cuMemFreeHost", 2000);
        Add("cuMemcpy", 4000);
        Add("cuMemcpyAsync", 4000);
        Add("cuMemcpyHtoD", 3020, "cuMemcpyHtoD_v2");
        Add("cuMemcpyDtoH", 3020, "cuMemcpyDtoH_v2");
        Add("cuMemcpyDtoD", 3020, "cuMemcpyDtoD_v2");
        Add("cuMemcpyHtoDAsync", 3020, "cuMemcpyHtoDAsync_v2");
        Add("cuMemcpyDtoHAsync", 3020, "cuMemcpyDtoHAsync_v2");
        Add("cuMemcpyDtoDAsync", 3020, "cuMemcpyDtoDAsync_v2");
        Add("cuMemsetD8", 3020, "cuMemsetD8_v2");
        Add("cuMemsetD16", 3020, "cuMemsetD16_v2");
        Add("cuMemsetD32", 3020, "cuMemsetD32_v2");
        Add("cuMemsetD8Async", 3020);
        Add("cuMemsetD16Async", 3020);
        Add("cuMemsetD32Async", 3020);

        Add("cuModuleLoad", 2000);
        Add("cuModuleLoadData", 2000);
        Add("cuModuleLoadDataEx", 2010);
        Add("cuModuleUnload", 2000);
        Add("cuModuleGetFunction", 2000);
        Add("cuModuleGetGlobal", 3020, "cuModuleGetGlobal_v2");
        Add("cuFuncGetAttribute", 2020);
        Add("cuLaunchKernel", 4000);
        Add("cuOccupancyMaxActiveBlocksPerMultiprocessor", 6050);
        Add("cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags", 7000);
        Add("cuOccupancyMaxPotentialBlockSize", 6050);
        Add("cuOccupancyMaxPotentialBlockSizeWithFlags", 7000);

        Add("cuStreamCreate", 2000);
        Add("cuStreamCreateWithPriority", 5050);
        Add("cuStreamDestroy", 4000, "cuStreamDestroy_v2");
        Add("cuStreamSynchronize", 2000);
        Add("cuStreamQuery", 2000);
        Add("cuStreamWaitEvent", 3020);
        Add("cuStreamGetPriority", 5050);
        Add("cuStreamGetFlags", 5050);
        Add("cuEventCreate", 2000);
        Add("cuEventDestroy", 4000, "cuEventDestroy_v2");
        Add("cuEventRecord", 2000);
        Add("cuEventRecordWithFlags", 11010);
        Add("cuEventSynchronize", 2000);
        Add("cuEventQuery", 2000);
        Add("cuEventElapsedTime", 2000);
        Add("cuEventElapsedTime", 12080, "cuEventElapsedTime_v2");

        // Module formats beyond PTX: fat binaries by pointer, run-time linking of one input, the CUDA 12 library API.
        Add("cuModuleLoadFatBinary", 2000);
        Add("cuLinkCreate", 6050, "cuLinkCreate_v2");
        Add("cuLinkAddData", 6050, "cuLinkAddData_v2");
        Add("cuLinkAddFile", 6050, "cuLinkAddFile_v2");
        Add("cuLinkComplete", 5050);
        Add("cuLinkDestroy", 5050);
        Add("cuLibraryLoadData", 12000);
        Add("cuLibraryLoadFromFile", 12000);
        Add("cuLibraryUnload", 12000);
        Add("cuLibraryGetKernel", 12000);
        Add("cuLibraryGetModule", 12000);
        Add("cuKernelGetFunction", 12000);
        Add("cuKernelGetAttribute", 12000);
        Add("cuKernelGetName", 12030);
        // Linked by programs that may never call them (LegacyExports): each is CUDA_ERROR_NOT_SUPPORTED when called.
        Add("cuArrayCreate", 3020, "cuArrayCreate_v2");
        Add("cuArray3DCreate", 3020, "cuArray3DCreate_v2");
        Add("cuArrayGetDescriptor", 3020, "cuArrayGetDescriptor_v2");
        Add("cuArray3DGetDescriptor", 3020, "cuArray3DGetDescriptor_v2");
        Add("cuArrayDestroy", 2000);
        Add("cuMemcpyAtoA", 3020, "cuMemcpyAtoA_v2");
        Add("cuMemcpyAtoD", 3020, "cuMemcpyAtoD_v2");
        Add("cuMemcpyAtoH", 3020, "cuMemcpyAtoH_v2");
        Add("cuMemcpyDtoA", 3020, "cuMemcpyDtoA_v2");
        Add("cuMemcpyHtoA", 3020, "cuMemcpyHtoA_v2");
        Add("cuModuleGetTexRef", 2000);
        Add("cuModuleGetSurfRef", 2000);
        Add("cuSurfRefGetArray", 2000);
        Add("cuSurfRefSetArray", 2000);
        Add("cuParamSetTexRef", 2000);
        Add("cuTexRefCreate", 2000);
        Add("cuTexRefDestroy", 2000);
        Add("cuTexRefGetAddressMode", 2000);
        Add("cuTexRefGetAddress", 3020, "cuTexRefGetAddress_v2");
        Add("cuTexRefGetArray", 2000);
        Add("cuTexRefGetFilterMode", 2000);
        Add("cuTexRefGetFlags", 2000);
        Add("cuTexRefGetFormat", 2000);
        Add("cuTexRefSetAddress2D", 4010, "cuTexRefSetAddress2D_v3");
        Add("cuTexRefSetAddressMode", 2000);
        Add("cuTexRefSetAddress", 3020, "cuTexRefSetAddress_v2");
        Add("cuTexRefSetArray", 2000);
        Add("cuTexRefSetFilterMode", 2000);
        Add("cuTexRefSetFlags", 2000);
        Add("cuTexRefSetFormat", 2000);
        Add("cuFuncSetBlockShape", 2000);
        Add("cuFuncSetSharedSize", 2000);
        Add("cuParamSetSize", 2000);
        Add("cuParamSeti", 2000);
        Add("cuParamSetf", 2000);
        Add("cuParamSetv", 2000);
        Add("cuLaunch", 2000);
        Add("cuLaunchGrid", 2000);
        Add("cuLaunchGridAsync", 2000);
        Add("cuMemcpyPeer", 4000);
        Add("cuMemcpyPeerAsync", 4000);
        Add("cuMemcpy3DPeer", 4000);
        Add("cuMemcpy3DPeerAsync", 4000);
        Add("cuStreamAttachMemAsync", 6000);
        Add("cuGLInit", 2000);
        Add("cuGLCtxCreate", 3020, "cuGLCtxCreate_v2");
        Add("cuGLRegisterBufferObject", 2000);
        Add("cuGLMapBufferObject", 3020, "cuGLMapBufferObject_v2");
        Add("cuGLUnmapBufferObject", 2000);
        Add("cuGLUnregisterBufferObject", 2000);
        Add("cuGraphicsGLRegisterBuffer", 3000);
        Add("cuGraphicsGLRegisterImage", 3000);
        Add("cuProfilerInitialize", 4000);
        Add("cuProfilerStart", 4000);
        Add("cuProfilerStop", 4000);

        // ---- The rest of the driver API nvcc-built programs reach for (contexts, pitched memory, host memory,
        // pointers, launches, host functions, memory pools, peers, and the calls with no meaning remotely).
        // Versions: the CUDA release that introduced each ABI, as cudaTypedefs.h names them. ----
        Add("cuCtxSetLimit", 3010);
        Add("cuCtxGetLimit", 3010);
        Add("cuCtxGetCacheConfig", 3020);
        Add("cuCtxSetCacheConfig", 3020);
        Add("cuCtxGetSharedMemConfig", 4020);
        Add("cuCtxSetSharedMemConfig", 4020);
        Add("cuCtxGetId", 12000);
        Add("cuCtxResetPersistingL2Cache", 11000);
        Add("cuFuncSetCacheConfig", 3000);
        Add("cuFuncSetSharedMemConfig", 4020);
        Add("cuFuncSetAttribute", 9000);

        Add("cuMemAllocPitch", 3020, "cuMemAllocPitch_v2");
        Add("cuMemcpy2D", 3020, "cuMemcpy2D_v2");
        Add("cuMemcpy2DUnaligned", 3020, "cuMemcpy2DUnaligned_v2");
        Add("cuMemcpy2DAsync", 3020, "cuMemcpy2DAsync_v2");
        Add("cuMemcpy3D", 3020, "cuMemcpy3D_v2");
        Add("cuMemcpy3DAsync", 3020, "cuMemcpy3DAsync_v2");
        Add("cuMemsetD2D8", 3020, "cuMemsetD2D8_v2");
        Add("cuMemsetD2D16", 3020, "cuMemsetD2D16_v2");
        Add("cuMemsetD2D32", 3020, "cuMemsetD2D32_v2");
        Add("cuMemsetD2D8Async", 3020);
        Add("cuMemsetD2D16Async", 3020);
        Add("cuMemsetD2D32Async", 3020);

        Add("cuMemHostRegister", 4000);
        Add("cuMemHostRegister", 6050, "cuMemHostRegister_v2");
        Add("cuMemHostUnregister", 4000);
        Add("cuMemHostGetFlags", 2030);
        Add("cuMemHostGetDevicePointer", 3020, "cuMemHostGetDevicePointer_v2");
        Add("cuPointerGetAttribute", 4000);
        Add("cuPointerGetAttributes", 7000);

        Add("cuLaunchKernelEx", 11060);
        Add("cuLaunchCooperativeKernel", 9000);
        Add("cuLaunchHostFunc", 10000);
        Add("cuStreamAddCallback", 5000);

        Add("cuMemAllocAsync", 11020);
        Add("cuMemFreeAsync", 11020);
        Add("cuMemAllocFromPoolAsync", 11020);
        Add("cuDeviceGetDefaultMemPool", 11020);
        Add("cuDeviceGetMemPool", 11020);
        Add("cuDeviceSetMemPool", 11020);
        Add("cuMemPoolGetAttribute", 11020);
        Add("cuMemPoolSetAttribute", 11020);
        Add("cuMemPoolTrimTo", 11020);

        Add("cuDeviceGetPCIBusId", 4010);
        Add("cuDeviceGetByPCIBusId", 4010);
        Add("cuDeviceGetLuid", 10000);
        Add("cuDeviceCanAccessPeer", 4000);
        Add("cuDeviceGetP2PAttribute", 8000);
        Add("cuCtxEnablePeerAccess", 4000);
        Add("cuCtxDisablePeerAccess", 4000);

        Add("cuMemAllocManaged", 6000);
        Add("cuMemAdvise", 8000);
        Add("cuMemAdvise", 12020, "cuMemAdvise_v2");
        Add("cuMemPrefetchAsync", 8000);
        Add("cuMemPrefetchAsync", 12020, "cuMemPrefetchAsync_v2");
        Add("cuMemRangeGetAttribute", 8000);
        Add("cuMemRangeGetAttributes", 8000);
        Add("cuIpcGetMemHandle", 4010);
        Add("cuIpcOpenMemHandle", 4010);
        Add("cuIpcOpenMemHandle", 11000, "cuIpcOpenMemHandle_v2");
        Add("cuIpcCloseMemHandle", 4010);
        Add("cuIpcGetEventHandle", 4010);
        Add("cuIpcOpenEventHandle", 4010);
        Add("cuGraphicsUnregisterResource", 3000);
        Add("cuGraphicsMapResources", 3000);
        Add("cuGraphicsUnmapResources", 3000);
        Add("cuGraphicsResourceGetMappedPointer", 3000);
        Add("cuGraphicsResourceGetMappedPointer", 3020, "cuGraphicsResourceGetMappedPointer_v2");
        Add("cuGraphicsSubResourceGetMappedArray", 3000);
        Add("cuGraphicsResourceSetMapFlags", 3000);
        Add("cuGraphicsResourceSetMapFlags", 6050, "cuGraphicsResourceSetMapFlags_v2");

        return table.ToFrozenDictionary(kv => kv.Key, kv => kv.Value.OrderBy(e => e.Item1).ToArray(), StringComparer.Ordinal);
    }

    /// <summary>The CUDA 11.3 form: no status; a name not served is CUDA_ERROR_NOT_FOUND.</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuGetProcAddress")]
    internal static CuResult GetProcAddressV1(byte* symbol, void** function, int cudaVersion, ulong flags)
    {
        var result = GetProcAddress(symbol, function, cudaVersion, flags, out var status);
        return result == CuResult.Success && status != ProcFound ? CuResult.NotFound : result;
    }

    /// <summary>The CUDA 12.0 form: a name not served is CUDA_SUCCESS with a null pointer and the reason in symbolStatus.</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuGetProcAddress_v2")]
    internal static CuResult GetProcAddressV2(byte* symbol, void** function, int cudaVersion, ulong flags, int* symbolStatus)
    {
        var result = GetProcAddress(symbol, function, cudaVersion, flags, out var status);
        if (symbolStatus is not null)
        {
            *symbolStatus = status;
        }

        return result;
    }

    /// <summary>
    /// Per-thread default stream variants (CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) get the same functions:
    /// the shim treats the per-thread and legacy default streams alike.
    /// </summary>
    private static CuResult GetProcAddress(byte* symbol, void** function, int cudaVersion, ulong flags, out int status)
    {
        status = ProcSymbolNotFound;
        try
        {
            NotNull(symbol, "symbol");
            NotNull(function, "pfn");
            *function = null;
            if (flags > 3)
            {
                throw new CudaException(CuResult.InvalidValue, $"0x{flags:x} is not a set of cuGetProcAddress flags");
            }

            if (cudaVersion > Driver.Version)
            {
                throw new CudaException(CuResult.InvalidValue, $"CUDA version {cudaVersion} is newer than the driver's {Driver.Version}");
            }

            var name = Utf8.Read(symbol, 256);
            if (!ProcTable.TryGetValue(name, out var versions))
            {
                ShimLog.Once("proc:" + name, $"cuGetProcAddress: {name} is not served by the shim");
                return CuResult.Success;
            }

            var chosen = versions.LastOrDefault(v => v.Version <= cudaVersion);
            if (chosen.Symbol is null)
            {
                status = ProcVersionNotSufficient;
                return CuResult.Success;
            }

            *function = (void*)OwnExport(chosen.Symbol);
            status = *function is null ? ProcSymbolNotFound : ProcFound;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuGetProcAddress", ex);
        }
    }

    /// <summary>The address of one of this library's exports, looked up in the library itself (found once through dladdr).</summary>
    private static nint OwnExport(string symbol)
    {
        lock (ProcGate)
        {
            if (s_self == 0)
            {
                var dladdr = (delegate* unmanaged<void*, DlInfo*, int>)Libc.Function("dladdr");
                DlInfo info;
                if (dladdr is null || dladdr((void*)(delegate* unmanaged<uint, CuResult>)&Init, &info) == 0 || info.FileName is null)
                {
                    throw new CudaException(CuResult.Unknown, "cannot find the shim's own file (dladdr failed)");
                }

                s_self = NativeLibrary.Load(Utf8.Read(info.FileName));
            }

            return NativeLibrary.TryGetExport(s_self, symbol, out var address) ? address : 0;
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct DlInfo
    {
        public byte* FileName;
        public void* FileBase;
        public byte* SymbolName;
        public void* SymbolAddress;
    }
}
