using GpuPool.Devices.Streams;
using GpuPool.Modules;

namespace GpuPool.Devices.Contexts;

/// <summary>
/// What a backend supplies to a lease's <see cref="DeviceContext"/>: the device side of its memory, copies and kernels, and
/// its own context (streams, events, end). <paramref name="Allocations"/> is the lease's table, which the parts share.
/// </summary>
internal readonly record struct ContextBackend(AllocationTable Allocations, IDeviceMemory Memory, ICopyEngine Copies, IKernelRunner Kernels, IContextRuntime Runtime);

/// <summary>A backend's device memory: allocate and free, and a host view where device memory is host memory.</summary>
internal interface IDeviceMemory
{
    /// <summary>Whether device memory is host memory, which the session may then write directly (<see cref="HostView"/>).</summary>
    bool IsHostMemory { get; }

    /// <summary>Allocates <paramref name="bytes"/> of zeroed memory; the lease's limit (<paramref name="used"/> of <paramref name="limit"/>) was checked.</summary>
    Allocation Allocate(ulong bytes, ulong used, ulong limit);

    /// <summary>Frees an allocation the table has let go of.</summary>
    void Free(Allocation allocation);

    /// <summary>Frees what is left when the context has ended (after <see cref="IContextRuntime.Destroy"/>).</summary>
    void FreeAtClose(Allocation[] allocations);

    /// <summary>The host bytes of a range, bounds-checked; only where <see cref="IsHostMemory"/>.</summary>
    Span<byte> HostView(ulong pointer, ulong length, RangeName what);
}

/// <summary>
/// A backend's copies and memsets, run in order on a stream (its thread, for a backend whose streams have their own),
/// after the context has checked their ranges against the lease's allocations.
/// </summary>
internal interface ICopyEngine
{
    /// <summary>
    /// Whether a copy takes an execution slot, and so is timed and charged to its lease: false on a GPU, whose copy engines
    /// run beside its kernels.
    /// </summary>
    bool CopiesTakeSlots { get; }

    void CopyToDevice(WorkStream stream, ulong dst, ReadOnlySpan<byte> data);

    /// <summary>Hands the bytes to the sink (whole, in chunks, or as memory, as it accepts them).</summary>
    ValueTask CopyToHostAsync(WorkStream stream, ulong src, ulong bytes, ICopyToHostSink sink);

    /// <summary>Copies as memmove does: overlapping ranges come out as if through a buffer.</summary>
    void CopyDeviceToDevice(WorkStream stream, ulong dst, ulong src, ulong bytes);

    /// <summary>Sets <paramref name="count"/> elements of 1, 2 or 4 bytes (at least one).</summary>
    void Memset(WorkStream stream, ulong dst, uint value, int elementSize, ulong count);
}

/// <summary>A backend's modules and kernels: loading, looking a kernel up, and running a launch on a stream.</summary>
internal interface IKernelRunner
{
    IKernelModule LoadBuiltinModule();

    /// <summary>
    /// Loads a module image (PTX, cubin or fatbin), which the context has <paramref name="read"/> once already; what the
    /// backend cannot run fails with NotSupported.
    /// </summary>
    IKernelModule LoadModule(ReadOnlySpan<byte> image, ModuleRead read);

    /// <summary>
    /// Gives a module just loaded its variables' device memory, initialized from their initializers (zeros otherwise):
    /// allocated here (cpu), or where the driver put them when it loaded the image (cuda). The context checked the lease's
    /// limit and keeps the ranges in its allocation table, so the memory goes with the module (<see cref="UnloadModule"/>)
    /// or with the context (<see cref="IDeviceMemory.FreeAtClose"/>), whichever takes it from the table. A variable the backend has no memory for (one the driver's JIT left out) is not placed.
    /// </summary>
    IReadOnlyList<PlacedVariable> PlaceVariables(IKernelModule module, IReadOnlyList<ModuleVariable> variables);

    /// <summary>
    /// Frees a module that <see cref="IKernelModule.NeedsUnload"/> or has <paramref name="variables"/> (the memory
    /// <see cref="PlaceVariables"/> gave it that the context still held), once the work queued before its unload has run.
    /// </summary>
    void UnloadModule(IKernelModule module, IReadOnlyList<Allocation> variables);

    /// <summary>The kernel <paramref name="name"/> of a module (handle <paramref name="moduleId"/>); NotFound when it has none.</summary>
    IKernelFunction GetFunction(IKernelModule module, ulong moduleId, string name);

    /// <summary>Runs a launch whose function, shape and parameter block size the context checked when it was enqueued.</summary>
    void Launch(WorkStream stream, IKernelFunction function, LaunchDims dims, ReadOnlySpan<byte> parameters);

    /// <summary>What kernels have printed since last taken (<see cref="IDeviceContext.TakeDeviceOutput"/>); null when nothing.</summary>
    string? TakeOutput() => null;
}

/// <summary>A module variable with the device memory a backend gave it.</summary>
internal readonly record struct PlacedVariable(string Name, Allocation Memory);

/// <summary>A module as its backend holds it.</summary>
internal interface IKernelModule
{
    /// <summary>Whether unloading frees something of the backend's (not so for a context's one shared built-in library).</summary>
    bool NeedsUnload { get; }
}

/// <summary>A kernel of a loaded module, with what the context checks and charges a launch of it by.</summary>
internal interface IKernelFunction
{
    /// <summary>The handle of the module it came from.</summary>
    ulong Module { get; }

    string Name { get; }

    /// <summary>The size of the parameter block it takes; null when the backend cannot say (the block then goes as it is).</summary>
    int? ParamBytes { get; }

    /// <summary>Its parameter list, for errors.</summary>
    string Signature { get; }
}

/// <summary>A backend's own side of a context: its streams and events, and its end.</summary>
internal interface IContextRuntime
{
    /// <summary>How long closing waits for the streams' queued work before it ends the context under it.</summary>
    TimeSpan CloseGrace { get; }

    /// <summary>Makes a stream whose work <paramref name="owner"/> runs (stream 0, the default, comes with the context).</summary>
    WorkStream CreateStream(ulong id, DeviceContext owner);

    /// <summary>Makes the backend's event (a CUevent); 0 where it has none.</summary>
    nint CreateEvent();

    void DestroyEvent(nint evt);

    /// <summary>Records the event on the stream and waits until the device has reached it; throws when that fails.</summary>
    void RecordEvent(nint evt, WorkStream stream);

    /// <summary>The time between two events whose latest records reached the device.</summary>
    float ElapsedMilliseconds(ContextEvent start, ContextEvent end);

    /// <summary>Throws when the backend's context can run nothing more (a CUDA context after a kernel fault).</summary>
    void ThrowIfUnusable();

    /// <summary>Ends the backend's context once the streams have stopped (or the grace ran out): what it held goes with it.</summary>
    void Destroy();
}
