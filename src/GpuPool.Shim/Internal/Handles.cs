using GpuPool.Client;
using GpuPool.Modules;
using GpuPool.Modules.Ptx;

namespace GpuPool.Shim.Internal;

/// <summary>The kinds of opaque handle the shim hands out; the kind is part of the handle's value.</summary>
internal enum HandleKind
{
    Context = 1,
    Module = 2,
    Function = 3,
    Stream = 4,
    Event = 5,
    MemPool = 6,
    Link = 7,
}

/// <summary>
/// Opaque handles (CUcontext, CUstream, ...) as numbers: a tag, the kind, and an id that is never reused, so a
/// destroyed object's handle stays invalid and a handle of one kind is never taken for another. Values never
/// collide with the implicit streams 0x1 and 0x2.
/// </summary>
internal sealed class HandleTable<T>(HandleKind kind)
    where T : class
{
    private const ulong Tag = 0x6770UL << 48;
    private readonly Dictionary<ulong, T> _items = [];
    private ulong _next;

    public nint Add(T item)
    {
        lock (_items)
        {
            var handle = Tag | ((ulong)kind << 40) | ++_next;
            _items[handle] = item;
            return (nint)handle;
        }
    }

    public bool TryGet(nint handle, out T item)
    {
        lock (_items)
        {
            return _items.TryGetValue((ulong)handle, out item!);
        }
    }

    public bool Remove(nint handle)
    {
        lock (_items)
        {
            return _items.Remove((ulong)handle);
        }
    }
}

/// <summary>
/// A CUDA context. Every context of the process shares the one device session of the lease; a context owns the
/// memory, modules, streams and events created while it was current, and frees them when destroyed.
/// </summary>
internal sealed class Context(bool primary, uint flags)
{
    public nint Handle { get; set; }

    public bool IsPrimary { get; } = primary;

    public uint Flags { get; set; } = flags;

    /// <summary>Destroyed explicitly, or a primary context released to zero or reset.</summary>
    public bool Destroyed { get; set; }

    public HashSet<ulong> Allocations { get; } = [];

    public HashSet<ModuleObject> Modules { get; } = [];

    public HashSet<StreamObject> Streams { get; } = [];

    public HashSet<EventObject> Events { get; } = [];

    /// <summary>cuCtxAttach's count beyond the creator's: cuCtxDetach destroys the context once it is back to 0.</summary>
    public int Attachments { get; set; }

    /// <summary>What the CUDA runtime stored on this context through its private table (Runtime/ContextLocalStorage).</summary>
    public Dictionary<nint, Runtime.StoredValue> LocalStorage { get; } = [];

    /// <summary>cuCtxSetLimit's values by CUlimit; a limit never set reads its default (<see cref="ContextLimits"/>). Guarded by Driver.Gate.</summary>
    public Dictionary<int, ulong> Limits { get; } = [];

    /// <summary>cuCtxSetCacheConfig's preference (CU_FUNC_CACHE_PREFER_NONE until set): remembered, a hint with no effect.</summary>
    public int CacheConfig { get; set; }

    /// <summary>A number of this context's own, for cuCtxGetId: the handle's id, never reused.</summary>
    public ulong Id => (ulong)Handle & ((1UL << 40) - 1);
}

internal sealed class StreamObject(Context context, DeviceStream remote, uint flags, int priority)
{
    public nint Handle { get; set; }

    public Context Context { get; } = context;

    public DeviceStream Remote { get; } = remote;

    public uint Flags { get; } = flags;

    public int Priority { get; } = priority;
}

internal sealed class EventObject(Context context, DeviceEvent remote, uint flags)
{
    public const uint DisableTiming = 0x2;

    public nint Handle { get; set; }

    public Context Context { get; } = context;

    public DeviceEvent Remote { get; } = remote;

    public uint Flags { get; } = flags;

    public bool Recorded { get; set; }
}

internal sealed class ModuleObject(Context context, DeviceModule remote, IReadOnlyDictionary<string, KernelSignature> kernels, int ptxVersion)
{
    public nint Handle { get; set; }

    public Context Context { get; } = context;

    public DeviceModule Remote { get; } = remote;

    /// <summary>
    /// Its kernels' parameter layouts, as read here; not the image itself, which the broker has: a library's modules
    /// (cuBLAS registers hundreds, some with tens of MB of PTX) would keep gigabytes alive in the program.
    /// </summary>
    public IReadOnlyDictionary<string, KernelSignature> Kernels { get; } = kernels;

    public int PtxVersion { get; } = ptxVersion;

    /// <summary>Functions looked up so far by name: one handle per kernel, as the driver gives.</summary>
    public Dictionary<string, FunctionObject> Functions { get; } = new(StringComparer.Ordinal);

    /// <summary>Variables looked up so far by name, whose ranges are in the allocation map while the module is loaded.</summary>
    public Dictionary<string, (ulong Address, ulong Size)> Globals { get; } = new(StringComparer.Ordinal);

    /// <summary>Unloaded (or its context destroyed): a variable looked up in the meantime is not mapped.</summary>
    public bool Unloaded { get; set; }
}

internal sealed class FunctionObject(ModuleObject module, KernelFunction remote, KernelSignature signature)
{
    public nint Handle { get; set; }

    public ModuleObject Module { get; } = module;

    public KernelFunction Remote { get; } = remote;

    public KernelSignature Signature { get; } = signature;

    /// <summary>The kernel's name as a C string (cuKernelGetName), made once and kept for the life of the process.</summary>
    public nint NativeName => _nativeName != 0 ? _nativeName : _nativeName = Utf8.Allocate(Signature.Name);

    private nint _nativeName;

    /// <summary>The pre-4.0 launch API's state (cuFuncSetBlockShape, cuFuncSetSharedSize, cuParamSet*), for cuLaunchGrid.</summary>
    public (uint X, uint Y, uint Z) LegacyBlock { get; set; } = (1, 1, 1);

    public uint LegacyShared { get; set; }

    /// <summary>The parameter bytes cuParamSetSize sized and cuParamSet* filled. A field: cuParamSetSize resizes it in place.</summary>
    public byte[] LegacyParams = [];

    /// <summary>CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES as cuFuncSetAttribute set it; -1: the device's default per-block limit.</summary>
    public int MaxDynamicSharedBytes { get; set; } = -1;

    /// <summary>CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT: -1 (no preference) or a percentage.</summary>
    public int PreferredCarveout { get; set; } = -1;

    /// <summary>cuFuncSetCacheConfig's preference: remembered, a hint with no effect.</summary>
    public int CacheConfig { get; set; }

    /// <summary>cuFuncSetSharedMemConfig's bank size: remembered, a hint with no effect.</summary>
    public int SharedMemConfig { get; set; }

    /// <summary>The most dynamic shared memory a launch of this function may ask for.</summary>
    public long DynamicSharedLimit(DeviceProperties device) => MaxDynamicSharedBytes >= 0 ? MaxDynamicSharedBytes : device.MaxSharedPerBlock;

    /// <summary>
    /// cuFuncGetAttribute's answer, with what cuFuncSetAttribute remembered: the register and static memory use
    /// of a kernel are not known to the shim (32 registers, no static shared, constant or local memory).
    /// </summary>
    public int Attribute(int attribute, DeviceProperties d) => attribute switch
    {
        0 => d.MaxThreadsPerBlock,                      // MAX_THREADS_PER_BLOCK
        1 or 2 or 3 => 0,                               // static shared, constant and local bytes
        4 => 32,                                        // NUM_REGS
        5 => Module.PtxVersion,                         // PTX_VERSION
        6 => (d.ComputeMajor * 10) + d.ComputeMinor,    // BINARY_VERSION
        7 => 0,                                         // CACHE_MODE_CA
        8 => (int)DynamicSharedLimit(d),                // MAX_DYNAMIC_SHARED_SIZE_BYTES
        9 => PreferredCarveout,                         // PREFERRED_SHARED_MEMORY_CARVEOUT
        _ => throw new CudaException(CuResult.InvalidValue, $"{attribute} is not a function attribute the shim answers"),
    };
}

/// <summary>
/// A stream-ordered memory pool (CUmemoryPool). The device has one, its default pool: allocations from it are
/// ordinary allocations of the lease, made at once and given back to the lease as soon as their free has run,
/// so nothing is held in reserve whatever the release threshold says. The attributes are remembered and the
/// usage counted as the driver reports them.
/// </summary>
internal sealed class MemPoolObject
{
    public nint Handle { get; set; }

    /// <summary>Guards the attributes and the counters.</summary>
    public object Gate { get; } = new();

    public int ReuseFollowEventDependencies { get; set; } = 1;

    public int ReuseAllowOpportunistic { get; set; } = 1;

    public int ReuseAllowInternalDependencies { get; set; } = 1;

    public ulong ReleaseThreshold { get; set; }

    public ulong Used { get; set; }

    public ulong UsedHigh { get; set; }

    public ulong ReservedHigh { get; set; }

    public void Allocated(ulong bytes)
    {
        lock (Gate)
        {
            Used += bytes;
            UsedHigh = Math.Max(UsedHigh, Used);
            ReservedHigh = Math.Max(ReservedHigh, Used);
        }
    }

    public void Freed(ulong bytes)
    {
        lock (Gate)
        {
            Used -= Math.Min(Used, bytes);
        }
    }
}
