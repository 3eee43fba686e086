using GpuPool.Client;
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

internal sealed class ModuleObject(Context context, DeviceModule remote, PtxModule ptx)
{
    public nint Handle { get; set; }

    public Context Context { get; } = context;

    public DeviceModule Remote { get; } = remote;

    public PtxModule Ptx { get; } = ptx;

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
}
