using System.Runtime.InteropServices;
using GpuPool.Shim.Exports;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Runtime;

/// <summary>
/// The tables the CUDA runtime asks for, and their functions. Each function catches everything and answers a
/// CUresult (or nothing, where the slot returns nothing): cudart calls them before any public call, and an
/// exception crossing into it would end the program.
/// </summary>
internal static unsafe class RuntimeTables
{
    /// <summary>Every table the shim serves, for every runtime generation it knows (UUIDs do not collide between them).</summary>
    public static List<TableLayout> Layouts()
    {
        var layouts = new List<TableLayout>();
        // The runtime's own interface: modules from the fat binaries nvcc embeds, and the primary context.
        layouts.Add(new("{6BD5FB6C-5BF4-E74A-8987-D93912FD9DF9}", "cudart interface", 13, SizeInSlotZero: true,
        [
            (1, (nint)(delegate* unmanaged<nint*, void*, CuResult>)&ModuleFromFatbinWrapper),
            (2, (nint)(delegate* unmanaged<nint*, int, CuResult>)&PrimaryContext),
            (6, (nint)(delegate* unmanaged<nint*, void*, void*, void*, uint, CuResult>)&ModuleFromFatbinWrapperEx),
            (7, (nint)(delegate* unmanaged<nuint, void>)&Ignore),
            (8, (nint)(delegate* unmanaged<void*, nint*, void*, void*, uint, CuResult>)&ModuleFromFatbinHeaderEx),
            (12, (nint)(delegate* unmanaged<CuResult>)&LoadCompilers),
        ]));

        // Thread-local storage for profiling tools. cuBLASLt asks slot 2 for the calling thread's tools state before
        // it picks a GEMM algorithm; driver 535 answers success and null (no tool attached), in a table of 3 slots.
        layouts.Add(new("{42D85A81-23F6-CB47-8298-F6E78A3AECDC}", "tools TLS", 3, SizeInSlotZero: true,
        [
            (2, (nint)(delegate* unmanaged<void**, CuResult>)&ToolsThreadState),
        ]));

        // Buffers the runtime writes its callback state into, for profiling tools to read.
        layouts.Add(new("{A094798C-2E74-2E74-93F2-0800200C0A66}", "tools runtime callback hooks", 7, SizeInSlotZero: true,
        [
            (2, (nint)(delegate* unmanaged<void**, nuint*, void>)&HookBufferLarge),
            (6, (nint)(delegate* unmanaged<void**, nuint*, void>)&HookBufferSmall),
        ]));

        // Per-context storage: where the runtime keeps its state for each context.
        layouts.Add(new("{C693336E-1121-DF11-A8C3-68F355D89593}", "context-local storage", 4, SizeInSlotZero: false,
        [
            (0, (nint)(delegate* unmanaged<nint, nint, nint, nint, CuResult>)&ContextLocalStorage.Put),
            (1, (nint)(delegate* unmanaged<nint, nint, CuResult>)&ContextLocalStorage.Delete),
            (2, (nint)(delegate* unmanaged<nint*, nint, nint, CuResult>)&ContextLocalStorage.Get),
        ]));

        layouts.Add(new("{0CA50B8C-1004-929A-89A7-D0DF10E77286}", "context create bypass", 2, SizeInSlotZero: true,
        [
            (1, (nint)(delegate* unmanaged<nint*, uint, int, CuResult>)&ContextCreateBypass),
        ]));

        layouts.Add(new("{195BCBF4-D67D-024A-ACC5-1D29CEA631AE}", "heap access", 3, SizeInSlotZero: true,
        [
            (1, (nint)(delegate* unmanaged<void**, nuint, nuint, CuResult>)&HeapAlloc),
            (2, (nint)(delegate* unmanaged<void*, nuint*, CuResult>)&HeapFree),
        ]));

        layouts.Add(new("{B10541E1-F7C7-C74A-9F64-F223BE99F1E2}", "device extended", 26, SizeInSlotZero: true,
        [
            (5, (nint)(delegate* unmanaged<int, uint, int, nuint*, CuResult>)&DeviceAttributeExtended),
            (13, (nint)(delegate* unmanaged<byte*, int, CuResult>)&DeviceFlag13),
        ]));

        layouts.Add(new("{D4082055-BDE6-704B-8D34-BA123C66E1F2}", "integrity check", 3, SizeInSlotZero: true,
        [
            (1, (nint)(delegate* unmanaged<uint, ulong, ulong*, CuResult>)&IntegrityCheck.Answer),
        ]));

        // Asked for by cuBLAS 11.8 (cublasLt) before its first GEMM. Nobody has described a slot of it; it is served
        // at driver 535's length so that each slot the library calls is named in the log (UnknownSlots) rather than
        // the whole table refused.
        layouts.Add(new("{21318C60-9714-3248-8CA6-41FF7324C8F2}", "tools context", 77, SizeInSlotZero: true, []));

        layouts.Add(new("{263E8860-7CD2-6143-92F6-BBD5006DFA7E}", "context checks", 4, SizeInSlotZero: true,
        [
            (2, (nint)(delegate* unmanaged<nint, uint*, void**, CuResult>)&ContextCheck),
            (3, (nint)(delegate* unmanaged<uint>)&ContextCheckFlags),
        ]));
        return layouts;
    }

    private const uint FatbinWrapperMagic = 0x466243B1;

    /// <summary>Slot 1: the module of a registered fat binary (the wrapper nvcc emits in .nvFatBinSegment).</summary>
    [UnmanagedCallersOnly]
    private static CuResult ModuleFromFatbinWrapper(nint* module, void* wrapper) => LoadWrapper("cudart interface: module from fat binary", module, wrapper);

    /// <summary>Slot 6: as slot 1 with three more arguments, which cudart 11.8 passes as null and zero.</summary>
    [UnmanagedCallersOnly]
    private static CuResult ModuleFromFatbinWrapperEx(nint* module, void* wrapper, void* arg3, void* arg4, uint arg5)
        => arg3 is null && arg4 is null && arg5 == 0
            ? LoadWrapper("cudart interface: module from fat binary (ex)", module, wrapper)
            : Unsupported("cudart interface: module from fat binary with options", $"arguments 0x{(nuint)arg3:x}, 0x{(nuint)arg4:x}, {arg5}");

    /// <summary>Slot 8: a module from a fat binary container given directly (newer runtimes).</summary>
    [UnmanagedCallersOnly]
    private static CuResult ModuleFromFatbinHeaderEx(void* header, nint* module, void* arg3, void* arg4, uint arg5)
    {
        if (arg3 is not null || arg4 is not null || arg5 != 0)
        {
            return Unsupported("cudart interface: module from fat binary header with options", $"arguments 0x{(nuint)arg3:x}, 0x{(nuint)arg4:x}, {arg5}");
        }

        const string call = "cudart interface: module from fat binary header";
        try
        {
            Trace(call);
            if (module is null || header is null)
            {
                throw new CudaException(CuResult.InvalidValue, "null module or fat binary");
            }

            *module = Cuda.LoadFatBinaryAt((byte*)header, "the runtime's fat binary");
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }

    private static CuResult LoadWrapper(string call, nint* module, void* wrapper)
    {
        try
        {
            Trace(call);
            if (module is null || wrapper is null)
            {
                throw new CudaException(CuResult.InvalidValue, "null module or fat binary wrapper");
            }

            var w = (FatbinWrapper*)wrapper;
            if (w->Magic != FatbinWrapperMagic)
            {
                throw new CudaException(CuResult.InvalidImage, $"the fat binary wrapper's magic is 0x{w->Magic:x8}, not 0x{FatbinWrapperMagic:x8}");
            }

            if (w->Version != 1)
            {
                // Version 2 lists prelinked fat binaries (relocatable device code, nvcc -rdc): linking them is cuLink's job.
                throw new CudaException(CuResult.NotSupported, $"fat binary wrapper version {w->Version} (relocatable device code, nvcc -rdc=true) is not supported: build without -rdc");
            }

            if (w->Data is null)
            {
                throw new CudaException(CuResult.InvalidImage, "the fat binary wrapper has no data");
            }

            *module = Cuda.LoadFatBinaryAt((byte*)w->Data, "the runtime's fat binary");
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }

    [UnmanagedCallersOnly]
    private static CuResult PrimaryContext(nint* context, int device)
    {
        try
        {
            Trace("cudart interface: primary context");
            if (context is null)
            {
                throw new CudaException(CuResult.InvalidValue, "pctx is null");
            }

            if (device != 0)
            {
                throw new CudaException(CuResult.InvalidDevice, $"device {device} does not exist: a lease has one device, ordinal 0");
            }

            *context = Driver.Instance.Primary.Handle;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cudart interface: primary context", ex);
        }
    }

    [UnmanagedCallersOnly]
    private static void Ignore(nuint argument)
    {
    }

    /// <summary>Slot 12: the driver would load its PTX compiler here; the broker's backend compiles, so nothing to load.</summary>
    [UnmanagedCallersOnly]
    private static CuResult LoadCompilers() => CuResult.Success;

    // The tools' buffers: cudart fills them with callback state that no tool reads here. Zeroed, never freed.
    private static readonly nint LargeHookBuffer = (nint)NativeMemory.AllocZeroed(1024 * sizeof(uint));
    private static readonly nint SmallHookBuffer = (nint)NativeMemory.AllocZeroed(14 * sizeof(uint));

    /// <summary>Tools TLS slot 2: the calling thread's state for a profiling tool; none is ever attached.</summary>
    [UnmanagedCallersOnly]
    private static CuResult ToolsThreadState(void** state)
    {
        Trace("tools TLS: thread state");
        if (state is null)
        {
            return CuResult.InvalidValue;
        }

        *state = null;
        return CuResult.Success;
    }

    [UnmanagedCallersOnly]
    private static void HookBufferLarge(void** buffer, nuint* size) => HookBuffer(buffer, size, LargeHookBuffer, 1024);

    [UnmanagedCallersOnly]
    private static void HookBufferSmall(void** buffer, nuint* size) => HookBuffer(buffer, size, SmallHookBuffer, 14);

    private static void HookBuffer(void** buffer, nuint* size, nint address, nuint length)
    {
        if (buffer is not null)
        {
            *buffer = (void*)address;
        }

        if (size is not null)
        {
            *size = length;
        }
    }

    /// <summary>Creates a context as cuCtxCreate_v2 does (the "bypass" skips checks the shim does not make).</summary>
    [UnmanagedCallersOnly]
    private static CuResult ContextCreateBypass(nint* context, uint flags, int device) => Cuda.CreateContext("context create bypass", context, flags, device);

    [UnmanagedCallersOnly]
    private static CuResult HeapAlloc(void** record, nuint a, nuint b) => Unsupported("heap access: allocate", $"sizes {a}, {b}");

    [UnmanagedCallersOnly]
    private static CuResult HeapFree(void* record, nuint* a) => Unsupported("heap access: free", "");

    [UnmanagedCallersOnly]
    private static CuResult DeviceAttributeExtended(int device, uint attribute, int unknown, nuint* result)
        => Unsupported("device extended: attribute", $"attribute {attribute}");

    /// <summary>Slot 13: one byte per device that a GTX 1060 answers 0 for (per ZLUDA's notes); 0 here too.</summary>
    [UnmanagedCallersOnly]
    private static CuResult DeviceFlag13(byte* result, int device)
    {
        if (result is null || device != 0)
        {
            return CuResult.InvalidValue;
        }

        *result = 0;
        return CuResult.Success;
    }

    /// <summary>Slot 2: a context's check bits, never set on NVIDIA's driver either.</summary>
    [UnmanagedCallersOnly]
    private static CuResult ContextCheck(nint context, uint* result, void** detail)
    {
        if (result is not null)
        {
            *result = 0;
        }

        return CuResult.Success;
    }

    [UnmanagedCallersOnly]
    private static uint ContextCheckFlags() => 0;

    /// <summary>A slot whose meaning nobody has described, called anyway: refused, logged once, never a crash.</summary>
    private static CuResult Unsupported(string what, string detail)
    {
        ShimLog.OnceAlways("runtime-slot:" + what, $"the CUDA runtime called its private function '{what}' ({detail}), which the shim does not serve: CUDA_ERROR_NOT_SUPPORTED");
        return CuResult.NotSupported;
    }

    private static void Trace(string call) => ShimLog.Once("runtime-call:" + call, $"the CUDA runtime calls {call}");

    [StructLayout(LayoutKind.Sequential)]
    private struct FatbinWrapper
    {
        public uint Magic;
        public uint Version;
        public void* Data;
        public void* FilenameOrFatbins;
    }
}
