using GpuPool.Devices.Contexts;
using GpuPool.Devices.Cuda.Native;
using GpuPool.Devices.Streams;

namespace GpuPool.Devices.Cuda;

/// <summary>
/// The CUDA side of one lease's context: its CUcontext, its own address space (a kernel of another lease cannot reach
/// its memory), and the driver calls made on it. <see cref="Open"/> puts a lease's context together from it and the
/// parts that use it: <see cref="CudaMemory"/>, <see cref="CudaCopies"/> and <see cref="CudaKernels"/>.
/// </summary>
/// <remarks>
/// Threads: each stream has a dedicated thread with the context current for the thread's life (<see cref="CudaStream"/>),
/// which runs the stream's work one item at a time: submit to the CUDA stream, then cuStreamSynchronize. Waiting there
/// makes every failure belong to the op that caused it (the sticky error names it), lets a fair-share slot be held
/// exactly while the device runs the work, and keeps the ordering rules those of the cpu backend. Calls made for the
/// session (allocate, free, load a module, look a function up, read an event) run on the caller's thread inside
/// cuCtxPushCurrent/cuCtxPopCurrent, and under a lock that the context's destruction takes too, so no call ever reaches
/// a destroyed context.
/// </remarks>
internal sealed class CudaContext : IContextRuntime
{
    private readonly CudaDevice _device;
    private readonly Lock _lifecycle = new();
    private readonly nint _defaultStream;
    private readonly string _leaseId;
    private string? _fault;
    private bool _destroyed;

    private CudaContext(CudaDevice device, string leaseId, nint handle, nint housekeeping, nint defaultStream)
    {
        _device = device;
        _leaseId = leaseId;
        Handle = handle;
        Housekeeping = housekeeping;
        _defaultStream = defaultStream;
    }

    /// <summary>The CUcontext.</summary>
    public nint Handle { get; }

    /// <summary>A stream of the context's own, for work the session waits on (zeroing new memory).</summary>
    public nint Housekeeping { get; }

    public TimeSpan CloseGrace => _device.Options.CloseGrace;

    /// <summary>
    /// Creates the lease's CUDA context and checks that the device, with the context's own overhead now taken, still
    /// has room for the lease's limit beside what the other leases may yet allocate: the device is never oversubscribed.
    /// </summary>
    internal static DeviceContext Open(CudaDevice device, DeviceLeases leases, ContextOptions options, ulong promisedToOthers)
    {
        var flags = device.Options.BlockingSync ? CuApi.CtxSchedBlockingSync : CuApi.CtxSchedAuto;
        CudaErrors.Check(CuApi.cuCtxCreate_v2(out var handle, flags, device.Ordinal), "cuCtxCreate_v2", $"device {device.Index}");

        // cuCtxCreate made the new context current to this (pool) thread: leave the thread as it was.
        _ = CuApi.cuCtxPopCurrent_v2(out _);
        CudaContext context;
        try
        {
            nint housekeeping, defaultStream;
            using (new ContextScope(handle))
            {
                CudaErrors.Check(CuApi.cuMemGetInfo_v2(out var free, out _), "cuMemGetInfo_v2");
                if (options.MemoryLimit + promisedToOthers > (ulong)free)
                {
                    throw new DeviceException(DeviceErrorCode.OutOfMemory,
                        $"device {device.Index} cannot take a {options.MemoryLimit}-byte lease: with the new context made it has {(ulong)free} bytes free, and {promisedToOthers} of them are promised to other leases");
                }

                CudaErrors.Check(CuApi.cuStreamCreate(out housekeeping, CuApi.StreamNonBlocking), "cuStreamCreate");
                CudaErrors.Check(CuApi.cuStreamCreate(out defaultStream, CuApi.StreamNonBlocking), "cuStreamCreate");
            }

            context = new CudaContext(device, options.LeaseId, handle, housekeeping, defaultStream);
        }
        catch
        {
            _ = CuApi.cuCtxDestroy_v2(handle);
            throw;
        }

        var allocations = new AllocationTable();
        var parts = new ContextBackend(allocations, new CudaMemory(context), new CudaCopies(context, device.Staging), new CudaKernels(context, allocations), context);
        return new DeviceContext(device, leases, options, parts);
    }

    /// <summary>The default stream (0) is the one made with the context; another gets a CUstream of its own.</summary>
    public WorkStream CreateStream(ulong id, DeviceContext owner)
    {
        var handle = id == 0 ? _defaultStream : OnLiveContext(() =>
        {
            Check(CuApi.cuStreamCreate(out var h, CuApi.StreamNonBlocking), "cuStreamCreate");
            return h;
        });
        return new CudaStream(owner, Handle, $"gpupool-cuda {_leaseId} s{id}", id, handle);
    }

    public nint CreateEvent() => OnLiveContext(() =>
    {
        Check(CuApi.cuEventCreate(out var h, CuApi.EventDefault), "cuEventCreate");
        return h;
    });

    public void DestroyEvent(nint evt) => TryOnLiveContext(() => CuApi.cuEventDestroy_v2(evt));

    public void RecordEvent(nint evt, WorkStream stream)
    {
        Check(CuApi.cuEventRecord(evt, stream.Handle), "cuEventRecord");
        Check(CuApi.cuEventSynchronize(evt), "cuEventSynchronize");
    }

    public float ElapsedMilliseconds(ContextEvent start, ContextEvent end) => OnLiveContext(() =>
    {
        Check(CuApi.cuEventElapsedTime(out var ms, start.Handle, end.Handle), "cuEventElapsedTime");
        return ms;
    });

    public void ThrowIfUnusable()
    {
        if (Volatile.Read(ref _fault) is { } fault)
        {
            throw new DeviceException(DeviceErrorCode.LaunchFailed,
                $"the lease's CUDA context cannot run anything more after a fault ({fault}), as with any CUDA context; release the lease and take a new one");
        }
    }

    /// <summary>Frees everything of the lease on the device at once: memory, modules, streams and events.</summary>
    public void Destroy()
    {
        lock (_lifecycle)
        {
            _destroyed = true;
            _ = CuApi.cuCtxDestroy_v2(Handle);
        }
    }

    /// <summary>Checks a driver call's result; an error that leaves the context unusable is remembered, so later calls say so.</summary>
    internal void Check(int result, string call, string? context = null)
    {
        if (result == CudaErrors.Success)
        {
            return;
        }

        if (CudaErrors.IsContextFatal(result))
        {
            Interlocked.CompareExchange(ref _fault, $"{call}{(context is null ? "" : $" ({context})")}: {CudaErrors.Describe(result)}", null);
        }

        throw CudaErrors.Error(result, call, context);
    }

    /// <summary>Waits for the stream's work so far, and checks how it went; <paramref name="name"/> follows what it names (a kernel's).</summary>
    internal void Synchronize(WorkStream stream, string what, string? name = null)
    {
        // The words only when it failed: every op of a stream synchronizes.
        var result = CuApi.cuStreamSynchronize(stream.Handle);
        if (result != CudaErrors.Success)
        {
            Check(result, "cuStreamSynchronize", name is null ? $"after {what}" : $"after {what} {name}");
        }
    }

    /// <summary>Runs a session's call with the context current, unless the context is gone.</summary>
    internal T OnLiveContext<T>(Func<T> call)
    {
        lock (_lifecycle)
        {
            if (_destroyed)
            {
                throw ContextErrors.Closed();
            }

            using (new ContextScope(Handle))
            {
                return call();
            }
        }
    }

    internal void OnLiveContext(Action call) => OnLiveContext(() =>
    {
        call();
        return 0;
    });

    /// <summary>Runs a clean-up call unless the context is gone (destroying it freed the object already).</summary>
    internal void TryOnLiveContext(Func<int> call)
    {
        lock (_lifecycle)
        {
            if (_destroyed)
            {
                return;
            }

            using (new ContextScope(Handle))
            {
                _ = call();
            }
        }
    }
}
