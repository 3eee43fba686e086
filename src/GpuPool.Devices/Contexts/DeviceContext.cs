using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using GpuPool.Devices.Scheduling;
using GpuPool.Devices.Streams;
using GpuPool.Modules;

namespace GpuPool.Devices.Contexts;

/// <summary>
/// One lease's context on a device, the same on every backend: its handles (allocations, modules, functions, streams,
/// events), the order of its streams' work, its sticky error and its memory accounting. The backend's parts
/// (<see cref="ContextBackend"/>) do the device's side: memory, copies, kernels, and its own streams and events.
/// </summary>
/// <remarks>
/// Work enqueued on a stream runs in order on that stream; streams run concurrently. Errors found when an op is enqueued
/// are queued as failures, so they surface in stream order. The first failure is kept (sticky); device work of the whole
/// context is skipped until the next synchronizing call takes it, except that a copy to the host, which the client waits
/// on, reports it itself (and so takes it). Files: this one (handles, memory, modules, closing), .Streams (streams,
/// events, enqueueing, synchronizing, direct copies) and .Execution (running one item of a stream's work).
/// </remarks>
internal sealed partial class DeviceContext : IDeviceContext
{
    private readonly DeviceLeases _leases;
    private readonly IReadOnlyDictionary<int, long> _deviceAttributes;
    private readonly FairShareDispatcher.Account _account;
    private readonly IDeviceMemory _memory;
    private readonly Lock _allocGate = new();
    private readonly ConcurrentDictionary<ulong, WorkStream> _streams = new();
    private readonly ConcurrentDictionary<ulong, DrainingStream> _destroyedStreamsDraining = new();
    private readonly ConcurrentDictionary<ulong, ContextEvent> _events = new();
    private readonly ConcurrentDictionary<ulong, IKernelModule> _modules = new();
    private readonly ConcurrentDictionary<ulong, IKernelFunction> _functions = new();
    private readonly ConcurrentDictionary<(ulong Module, string Name), ulong> _functionHandles = new();
    private readonly ConcurrentDictionary<ulong, Dictionary<string, Allocation>> _variables = new();
    private readonly WorkStream _defaultStream;
    private StickyError? _sticky;
    private long _nextHandle;
    private int _closed;

    public DeviceContext(IDevice device, DeviceLeases leases, ContextOptions options, ContextBackend backend)
    {
        _leases = leases;
        _deviceAttributes = device.Attributes;
        LeaseId = options.LeaseId;
        MemoryLimit = options.MemoryLimit;
        ComputeShare = options.ComputeShare;
        _account = leases.Dispatcher.Open(options.ComputeShare, options.ShareMode);
        ShareMode = options.ShareMode;
        Allocations = backend.Allocations;
        _memory = backend.Memory;
        Copies = backend.Copies;
        Kernels = backend.Kernels;
        Runtime = backend.Runtime;
        _defaultStream = Runtime.CreateStream(0, this);
        AddStream(0, _defaultStream);
    }

    public string LeaseId { get; }

    public ulong MemoryLimit { get; }

    public ulong MemoryUsed => Allocations.BytesInUse;

    public int ComputeShare { get; }

    public ShareMode ShareMode { get; }

    public LeaseUsage Usage => new(_account.DeviceTime, _account.RecentShare, MemoryUsed);

    internal AllocationTable Allocations { get; }

    internal ICopyEngine Copies { get; }

    internal IKernelRunner Kernels { get; }

    internal IContextRuntime Runtime { get; }

    internal ContextPools Pools { get; } = new();

    internal bool IsClosed => Volatile.Read(ref _closed) != 0;

    public ulong Allocate(ulong bytes)
    {
        ThrowIfClosed();
        if (bytes == 0)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, "cannot allocate 0 bytes");
        }

        lock (_allocGate)
        {
            var used = Allocations.BytesInUse;
            if (bytes > MemoryLimit - used)
            {
                throw new DeviceException(DeviceErrorCode.OutOfMemory,
                    $"cannot allocate {bytes} bytes: the lease's memory limit is {MemoryLimit} bytes and {used} are in use ({MemoryLimit - used} free)");
            }

            var allocation = _memory.Allocate(bytes, used, MemoryLimit);
            Allocations.Add(allocation);
            _leases.AddUsed((long)bytes);
            return allocation.Base;
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask FreeAsync(ulong ptr)
    {
        ThrowIfClosed();

        // Like cuMemFree: work already queued may still use the memory, so it finishes first.
        await SynchronizeAsync().ConfigureAwait(false);
        lock (_allocGate)
        {
            var allocation = Allocations.Remove(ptr);
            _leases.AddUsed(-(long)allocation.Size);
            _memory.Free(allocation);
        }
    }

    public ulong LoadBuiltinModule()
    {
        ThrowIfClosed();
        return Add(_modules, Kernels.LoadBuiltinModule());
    }

    /// <remarks>
    /// The module's variables are allocations of the lease, charged against its limit like any: a module whose variables
    /// do not fit is not loaded, and leaves nothing behind.
    /// </remarks>
    public ulong LoadModule(ReadOnlySpan<byte> image)
    {
        ThrowIfClosed();
        var read = ModuleVariables.Read(image);
        var variables = read.Variables;
        if (variables.Count > 0)
        {
            // Before the backend loads anything, so a module that cannot fit costs no JIT.
            CheckRoomForVariables(variables.Count, ModuleVariables.Bytes(variables));
        }

        var module = Kernels.LoadModule(image, read);
        var id = (ulong)Interlocked.Increment(ref _nextHandle);
        if (variables.Count > 0)
        {
            PlaceVariables(id, module, variables);
        }

        _modules[id] = module;
        return id;
    }

    /// <remarks>
    /// Its variables leave the lease's allocations at once, so later work cannot name them; their memory is freed with
    /// the module once the work queued so far has run, as a kernel of it may still be using them.
    /// </remarks>
    public void UnloadModule(ulong module)
    {
        if (!_modules.TryRemove(module, out var found))
        {
            throw ContextErrors.NoModule(module);
        }

        foreach (var (id, f) in _functions)
        {
            if (f.Module == module)
            {
                _functions.TryRemove(id, out _);
                _functionHandles.TryRemove((module, f.Name), out _);
            }
        }

        // Whichever of this and the context's close takes the variables from the table frees them.
        Allocation[] variables = [];
        if (_variables.TryRemove(module, out _))
        {
            lock (_allocGate)
            {
                variables = Allocations.RemoveModule(module);
                _leases.AddUsed(-(long)variables.Aggregate(0UL, static (sum, a) => sum + a.Size));
            }
        }

        if (found.NeedsUnload || variables.Length > 0)
        {
            // Launches of its functions may still be queued: unload once the work queued so far has run.
            _ = SynchronizeAsync().AsTask().ContinueWith(
                _ => Kernels.UnloadModule(found, variables), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
        }
    }

    public (ulong Address, ulong Size) GetGlobal(ulong module, string name)
    {
        if (!_modules.ContainsKey(module))
        {
            throw ContextErrors.NoModule(module);
        }

        return _variables.TryGetValue(module, out var variables) && variables.TryGetValue(name, out var v)
            ? (v.Base, v.Size)
            : throw ContextErrors.NoVariable(module, name);
    }

    private void CheckRoomForVariables(int count, ulong bytes)
    {
        var used = Allocations.BytesInUse;
        if (bytes > MemoryLimit - used)
        {
            throw new DeviceException(DeviceErrorCode.OutOfMemory,
                $"cannot load the module: its {count} variable(s) take {bytes} bytes, and the lease's memory limit is {MemoryLimit} bytes with {used} in use ({MemoryLimit - used} free)");
        }
    }

    /// <summary>
    /// Has the backend give the variables memory, and adds it to the lease's allocations as module <paramref name="id"/>'s;
    /// when that fails, unloads the module and frees what was placed.
    /// </summary>
    private void PlaceVariables(ulong id, IKernelModule module, IReadOnlyList<ModuleVariable> variables)
    {
        lock (_allocGate)
        {
            IReadOnlyList<PlacedVariable> placed = [];
            try
            {
                // Under the gate the close takes everything through, so nothing is added after it.
                ThrowIfClosed();
                CheckRoomForVariables(variables.Count, ModuleVariables.Bytes(variables));
                placed = Kernels.PlaceVariables(module, variables);

                // The driver's sizes are the ones charged (the same as the PTX's, unless its JIT left a variable out).
                CheckRoomForVariables(placed.Count, placed.Aggregate(0UL, static (sum, p) => sum + p.Memory.Size));
            }
            catch
            {
                Kernels.UnloadModule(module, [.. placed.Select(p => p.Memory)]);
                throw;
            }

            var byName = new Dictionary<string, Allocation>(placed.Count, StringComparer.Ordinal);
            var all = new List<Allocation>(placed.Count);
            foreach (var (name, memory) in placed)
            {
                var allocation = memory with { Module = id };
                _leases.AddUsed((long)allocation.Size);
                byName[name] = allocation;
                all.Add(allocation);
            }

            Allocations.AddRange(all);

            _variables[id] = byName;
        }
    }

    public ulong GetFunction(ulong module, string name)
    {
        if (!_modules.TryGetValue(module, out var found))
        {
            throw ContextErrors.NoModule(module);
        }

        // One handle per (module, kernel): looking a function up again must not grow the table (a library looks up
        // thousands, so by name rather than by a walk of the table).
        if (_functionHandles.TryGetValue((module, name), out var existing))
        {
            return existing;
        }

        var handle = Add(_functions, Kernels.GetFunction(found, module, name));
        _functionHandles[(module, name)] = handle;
        return handle;
    }

    public StickyError? TakeError() => Interlocked.Exchange(ref _sticky, null);

    public string? TakeDeviceOutput() => Kernels.TakeOutput();

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0)
        {
            return;
        }

        // A direct write that counted itself in before it could see the flag finishes first; one that counts itself in
        // after sees it.
        await WaitForDirectWritesAsync().ConfigureAwait(false);

        // Queued device work is skipped now that the context is closed; the streams finish their queues and end.
        var streams = _streams.Values.ToArray();
        try
        {
            await Task.WhenAll(streams.Select(s => s.Drain(destroyed: false)).Concat(_destroyedStreamsDraining.Values.Select(d => d.Drained)))
                .WaitAsync(Runtime.CloseGrace).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // A kernel that does not end (a GPU has no watchdog): ending the backend's context ends it.
        }

        Runtime.Destroy();
        lock (_allocGate)
        {
            _leases.AddUsed(-(long)Allocations.BytesInUse);
            _memory.FreeAtClose(Allocations.TakeAll());
        }

        _streams.Clear();
        _liveStreams = [];
        _events.Clear();
        _modules.Clear();
        _functions.Clear();
        _functionHandles.Clear();
        _variables.Clear();
        _leases.Release(this);
    }

    private ulong Add<T>(ConcurrentDictionary<ulong, T> table, T value)
    {
        var id = (ulong)Interlocked.Increment(ref _nextHandle);
        table[id] = value;
        return id;
    }

    private void ThrowIfClosed()
    {
        if (IsClosed)
        {
            throw ContextErrors.Closed();
        }

        Runtime.ThrowIfUnusable();
    }
}
