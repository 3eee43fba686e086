using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using GpuPool.Devices.Cpu.Kernels;
using GpuPool.Devices.Cuda.Native;
using GpuPool.Devices.Scheduling;

namespace GpuPool.Devices.Cuda;

/// <summary>
/// One lease's CUDA context on a device: its own address space (a kernel of another lease cannot reach its memory),
/// its allocations, modules, streams and events.
/// </summary>
/// <remarks>
/// Threads: each stream has a dedicated thread with the context current for the thread's life (<see cref="CudaStream"/>),
/// which runs the stream's work one item at a time: submit to the CUDA stream, then cuStreamSynchronize. Waiting there
/// makes every failure belong to the op that caused it (the sticky error names it), lets a fair-share slot be held
/// exactly while the device runs the work, and keeps the ordering rules those of the cpu backend. Calls made for
/// the session (allocate, free, load a module, look a function up, read an event) run on the caller's thread
/// inside cuCtxPushCurrent/cuCtxPopCurrent, and under a lock that the context's destruction takes too, so no call
/// ever reaches a destroyed context.
/// </remarks>
internal sealed class CudaContext : IDeviceContext
{
    private readonly CudaDevice _device;
    private readonly FairShareDispatcher.Account _account;
    private readonly Lock _lifecycle = new();
    private readonly Lock _allocGate = new();
    private readonly nint _housekeeping;
    private readonly ConcurrentDictionary<ulong, CudaStream> _streams = new();
    private readonly ConcurrentDictionary<ulong, Task> _destroyedStreamsDraining = new();
    private readonly ConcurrentDictionary<ulong, CudaEvent> _events = new();
    private readonly ConcurrentDictionary<ulong, CudaModule> _modules = new();
    private readonly ConcurrentDictionary<ulong, CudaFunction> _functions = new();
    private nint _builtinModule;
    private StickyError? _sticky;
    private string? _fault;
    private long _nextHandle;
    private volatile bool _closed;
    private bool _destroyed;

    private CudaContext(CudaDevice device, ContextOptions options, nint handle, nint housekeeping, nint defaultStream)
    {
        _device = device;
        Handle = handle;
        _housekeeping = housekeeping;
        LeaseId = options.LeaseId;
        MemoryLimit = options.MemoryLimit;
        ComputeShare = options.ComputeShare;
        _account = new FairShareDispatcher.Account(options.ComputeShare);
        _streams[0] = new CudaStream(this, 0, defaultStream);
    }

    public string LeaseId { get; }

    public ulong MemoryLimit { get; }

    public ulong MemoryUsed => Memory.BytesInUse;

    public int ComputeShare { get; }

    /// <summary>The CUcontext.</summary>
    internal nint Handle { get; }

    internal DeviceAllocations Memory { get; } = new();

    /// <summary>
    /// Creates the lease's CUDA context and checks that the device, with the context's own overhead now taken, still
    /// has room for the lease's limit beside what the other leases may yet allocate: the device is never oversubscribed.
    /// </summary>
    internal static CudaContext Create(CudaDevice device, ContextOptions options, ulong promisedToOthers)
    {
        var flags = device.Options.BlockingSync ? CuApi.CtxSchedBlockingSync : CuApi.CtxSchedAuto;
        CudaErrors.Check(CuApi.cuCtxCreate_v2(out var handle, flags, device.Ordinal), "cuCtxCreate_v2", $"device {device.Index}");

        // cuCtxCreate made the new context current to this (pool) thread: leave the thread as it was.
        _ = CuApi.cuCtxPopCurrent_v2(out _);
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

            return new CudaContext(device, options, handle, housekeeping, defaultStream);
        }
        catch
        {
            _ = CuApi.cuCtxDestroy_v2(handle);
            throw;
        }
    }

    public ulong Allocate(ulong bytes)
    {
        ThrowIfClosed();
        if (bytes == 0)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, "cannot allocate 0 bytes");
        }

        lock (_allocGate)
        {
            var used = Memory.BytesInUse;
            if (bytes > MemoryLimit - used)
            {
                throw new DeviceException(DeviceErrorCode.OutOfMemory,
                    $"cannot allocate {bytes} bytes: the lease's memory limit is {MemoryLimit} bytes and {used} are in use ({MemoryLimit - used} free)");
            }

            var pointer = OnLiveContext(() =>
            {
                var result = CuApi.cuMemAlloc_v2(out var p, (nuint)bytes);
                if (result == CudaErrors.OutOfMemory)
                {
                    throw new DeviceException(DeviceErrorCode.OutOfMemory,
                        $"cannot allocate {bytes} bytes: the lease is within its limit ({used} of {MemoryLimit} bytes in use), but the device itself is out of memory (cuMemAlloc_v2: {CudaErrors.Describe(result)})");
                }

                Check(result, "cuMemAlloc_v2");

                // New memory is zeroed, so no lease reads what another left behind.
                result = CuApi.cuMemsetD8Async(p, 0, (nuint)bytes, _housekeeping);
                if (result == CudaErrors.Success)
                {
                    result = CuApi.cuStreamSynchronize(_housekeeping);
                }

                if (result != CudaErrors.Success)
                {
                    _ = CuApi.cuMemFree_v2(p);
                    Check(result, "cuMemsetD8Async", "zeroing a new allocation");
                }

                return p;
            });
            Memory.Add(pointer, bytes);
            _device.AddUsed((long)bytes);
            return pointer;
        }
    }

    public async ValueTask FreeAsync(ulong ptr)
    {
        ThrowIfClosed();

        // Like cuMemFree: work already queued may still use the memory, so it finishes first.
        await SynchronizeAsync().ConfigureAwait(false);
        lock (_allocGate)
        {
            var size = Memory.Remove(ptr);
            _device.AddUsed(-(long)size);
            OnLiveContext(() => Check(CuApi.cuMemFree_v2(ptr), "cuMemFree_v2"));
        }
    }

    public ulong LoadBuiltinModule()
    {
        ThrowIfClosed();
        var module = OnLiveContext(() =>
        {
            // One JIT of the library per context, shared by every handle to it; it lives as long as the context.
            if (_builtinModule == 0)
            {
                _builtinModule = LoadImage(BuiltinModule.Image.Span);
            }

            return _builtinModule;
        });
        var id = NextHandle();
        _modules[id] = new CudaModule(module, Builtin: true, Shared: true);
        return id;
    }

    public ulong LoadModule(ReadOnlySpan<byte> image)
    {
        ThrowIfClosed();
        var trimmed = image.TrimEnd((byte)0);
        if (trimmed.IsEmpty)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, "the module image is empty");
        }

        var elf = trimmed.Length >= 4 && trimmed[0] == 0x7F && trimmed[1] == (byte)'E' && trimmed[2] == (byte)'L' && trimmed[3] == (byte)'F';
        var fatbin = trimmed.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(trimmed) == 0xBA55ED50;
        if (!elf && !fatbin && trimmed.IndexOf(".entry"u8) < 0 && trimmed.IndexOf(".version"u8) < 0)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, "the module image is neither PTX (text with .version and .entry functions) nor a cubin or fatbin");
        }

        var builtin = BuiltinModule.IsBuiltinImage(trimmed);
        var copy = image.ToArray();
        var module = OnLiveContext(() => LoadImage(copy));
        var id = NextHandle();
        _modules[id] = new CudaModule(module, builtin, Shared: false);
        return id;
    }

    public void UnloadModule(ulong module)
    {
        if (!_modules.TryRemove(module, out var found))
        {
            throw new DeviceException(DeviceErrorCode.NotFound, $"module {module} is not loaded in this lease");
        }

        foreach (var (id, f) in _functions)
        {
            if (f.Module == module)
            {
                _functions.TryRemove(id, out _);
            }
        }

        if (!found.Shared)
        {
            // Launches of its functions may still be queued: unload once the work queued so far has run.
            _ = SynchronizeAsync().ContinueWith(
                _ => TryOnLiveContext(() => CuApi.cuModuleUnload(found.Handle)), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
        }
    }

    public ulong GetFunction(ulong module, string name)
    {
        if (!_modules.TryGetValue(module, out var found))
        {
            throw new DeviceException(DeviceErrorCode.NotFound, $"module {module} is not loaded in this lease");
        }

        // One handle per (module, kernel): looking a function up again must not grow the table.
        foreach (var (existing, f) in _functions)
        {
            if (f.Module == module && f.Name == name)
            {
                return existing;
            }
        }

        var function = OnLiveContext(() =>
        {
            var result = CuApi.cuModuleGetFunction(out var handle, found.Handle, name);
            if (result == 500)
            {
                throw new DeviceException(DeviceErrorCode.NotFound, $"no kernel named '{name}' in module {module}");
            }

            Check(result, "cuModuleGetFunction", name);
            var kernel = found.Builtin ? BuiltinKernels.All.GetValueOrDefault(name) : null;
            return new CudaFunction(module, name, handle, kernel, kernel is not null ? ParamLayout.Of(kernel) : QueryLayout(handle));
        });
        var id = NextHandle();
        _functions[id] = function;
        return id;
    }

    public ulong CreateStream()
    {
        ThrowIfClosed();
        var handle = OnLiveContext(() =>
        {
            Check(CuApi.cuStreamCreate(out var h, CuApi.StreamNonBlocking), "cuStreamCreate");
            return h;
        });
        var id = NextHandle();
        _streams[id] = new CudaStream(this, id, handle);
        return id;
    }

    public void DestroyStream(ulong stream)
    {
        if (stream == 0 || !_streams.TryRemove(stream, out var s))
        {
            throw new DeviceException(DeviceErrorCode.NotFound, stream == 0 ? "the default stream cannot be destroyed" : $"stream {stream} does not exist in this lease");
        }

        // Work already queued on the stream still runs, as with cuStreamDestroy; until it has, synchronize (and so
        // free and close) must wait for it too. The stream's thread destroys the CUDA stream when it is done.
        s.Stop(destroyHandle: true);
        _destroyedStreamsDraining[stream] = s.Exited;
        _ = s.Exited.ContinueWith(
            done => _destroyedStreamsDraining.TryRemove(stream, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    public ulong CreateEvent()
    {
        ThrowIfClosed();
        var handle = OnLiveContext(() =>
        {
            Check(CuApi.cuEventCreate(out var h, CuApi.EventDefault), "cuEventCreate");
            return h;
        });
        var id = NextHandle();
        _events[id] = new CudaEvent(handle);
        return id;
    }

    public void DestroyEvent(ulong evt)
    {
        if (!_events.TryRemove(evt, out var e))
        {
            throw new DeviceException(DeviceErrorCode.NotFound, $"event {evt} does not exist in this lease");
        }

        // A record still queued must not reach a destroyed CUevent: the last one destroys it instead.
        lock (e.Gate)
        {
            e.DestroyRequested = true;
            if (e.PendingRecords == 0)
            {
                DestroyEventHandle(e);
            }
        }
    }

    public void EnqueueCopyToDevice(ulong stream, ulong dst, ReadOnlyMemory<byte> data, OpTag tag, IDisposable? dataOwner = null)
    {
        if (!Enqueue(stream, tag, () => new CudaCopyToDeviceWork(tag, dst, data, dataOwner)))
        {
            dataOwner?.Dispose();
        }
    }

    /// <summary>
    /// Always false: a copy to a GPU goes through pinned staging and waits for the copy engine, which would hold up the
    /// connection's reader; queued, it overlaps with receiving the next bytes.
    /// </summary>
    public bool TryCopyToDeviceNow(ulong stream, ulong dst, in ReadOnlySequence<byte> data) => false;

    /// <summary>Device memory is not host memory: bytes for it are received into pinned staging and copied by DMA.</summary>
    public nint TryBeginDirectWrite(ulong stream, ulong dst, int length) => 0;

    public void EndDirectWrite() => throw new InvalidOperationException("the cuda backend begins no direct writes");

    public void EnqueueCopyToHost(ulong stream, ulong src, ulong bytes, ICopyToHostSink sink, OpTag tag)
    {
        if (_closed)
        {
            sink.OnError(new StickyError(tag, Closed()));
            return;
        }

        if (!_streams.TryGetValue(stream, out var s))
        {
            sink.OnError(new StickyError(tag, NoStream(stream)));
            return;
        }

        s.Enqueue(new CudaCopyToHostWork(tag, src, bytes, sink));
    }

    public void EnqueueCopyDeviceToDevice(ulong stream, ulong dst, ulong src, ulong bytes, OpTag tag)
        => Enqueue(stream, tag, () => new CudaCopyDeviceToDeviceWork(tag, dst, src, bytes));

    public void EnqueueFailure(ulong stream, OpTag tag, DeviceException error)
        => Enqueue(stream, tag, () => new CudaFailedWork(tag, error));

    public void EnqueueMemset(ulong stream, ulong dst, uint value, int elementSize, ulong count, OpTag tag)
        => Enqueue(stream, tag, () => elementSize is 1 or 2 or 4
            ? new CudaMemsetWork(tag, dst, value, elementSize, count)
            : throw new DeviceException(DeviceErrorCode.InvalidArgument, $"memset element size must be 1, 2 or 4 bytes, not {elementSize}"));

    public void EnqueueLaunch(ulong stream, ulong function, LaunchDims dims, ReadOnlyMemory<byte> parameters, OpTag tag)
        => Enqueue(stream, tag, () =>
        {
            if (!_functions.TryGetValue(function, out var f))
            {
                throw new DeviceException(DeviceErrorCode.NotFound, $"function {function} does not exist in this lease (get it from a loaded module first)");
            }

            _device.CheckGeometry(f.Name, dims);
            if (f.Layout is { } layout && parameters.Length != layout.Bytes)
            {
                var signature = f.Builtin?.Signature ?? $"{f.Name} with {layout.Count} parameters";
                throw new DeviceException(DeviceErrorCode.InvalidArgument,
                    $"kernel {f.Name} takes {layout.Bytes} bytes of parameters ({signature}), but the launch passed {parameters.Length}");
            }

            return new CudaLaunchWork(tag, f, dims, parameters);
        });

    public void EnqueueEventRecord(ulong stream, ulong evt, OpTag tag)
        => Enqueue(stream, tag, () =>
        {
            var e = _events.TryGetValue(evt, out var found) ? found : throw NoEvent(evt);
            var completion = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (e.Gate)
            {
                e.PendingRecords++;
            }

            e.Recorded = completion.Task;
            return new CudaRecordWork(tag, this, e, completion);
        });

    public void EnqueueStreamWaitEvent(ulong stream, ulong evt, OpTag tag)
        => Enqueue(stream, tag, () =>
        {
            var e = _events.TryGetValue(evt, out var found) ? found : throw NoEvent(evt);

            // Records complete on the host only once the device has reached them, so waiting on the host keeps the
            // device's order too. An event never recorded counts as complete, as in CUDA.
            return new CudaWaitEventWork(tag, e.Recorded ?? Task.CompletedTask);
        });

    public Task SynchronizeStreamAsync(ulong stream, CancellationToken cancellationToken = default)
        => _streams.TryGetValue(stream, out var s) ? s.Marker().WaitAsync(cancellationToken) : throw NoStream(stream);

    public Task SynchronizeEventAsync(ulong evt, CancellationToken cancellationToken = default)
        => _events.TryGetValue(evt, out var e) ? (e.Recorded ?? Task.CompletedTask).WaitAsync(cancellationToken) : throw NoEvent(evt);

    public Task SynchronizeAsync(CancellationToken cancellationToken = default)
        => Task.WhenAll(_streams.Values.Select(s => s.Marker()).Concat(_destroyedStreamsDraining.Values)).WaitAsync(cancellationToken);

    public bool QueryEvent(ulong evt)
        => _events.TryGetValue(evt, out var e) ? e.Recorded?.IsCompleted ?? true : throw NoEvent(evt);

    public float EventElapsedMilliseconds(ulong start, ulong end)
    {
        var a = _events.TryGetValue(start, out var s) ? s! : throw NoEvent(start);
        var b = _events.TryGetValue(end, out var e) ? e! : throw NoEvent(end);
        if (a.Recorded is null || b.Recorded is null)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, "both events must have been recorded before their elapsed time can be read");
        }

        if (!a.Recorded.IsCompleted || !b.Recorded.IsCompleted)
        {
            throw new DeviceException(DeviceErrorCode.NotReady, "an event has not completed yet");
        }

        if (!a.OnDevice || !b.OnDevice)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, "an event's last record did not reach the device (an earlier operation failed), so it holds no time");
        }

        return OnLiveContext(() =>
        {
            Check(CuApi.cuEventElapsedTime(out var ms, a.Handle, b.Handle), "cuEventElapsedTime");
            return ms;
        });
    }

    public StickyError? TakeError() => Interlocked.Exchange(ref _sticky, null);

    public async ValueTask DisposeAsync()
    {
        lock (_lifecycle)
        {
            if (_closed)
            {
                return;
            }

            _closed = true;
        }

        // Queued device work is skipped now that the context is closed; the stream threads finish their queues and end.
        var streams = _streams.Values.ToArray();
        foreach (var s in streams)
        {
            s.Stop(destroyHandle: false);
        }

        try
        {
            await Task.WhenAll(streams.Select(s => s.Exited).Concat(_destroyedStreamsDraining.Values)).WaitAsync(_device.Options.CloseGrace).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // A kernel that does not end (the device has no watchdog): destroying the context ends it, and the stream's
            // wait then returns with an error.
        }

        lock (_lifecycle)
        {
            _destroyed = true;

            // Frees everything of the lease on the device at once: memory, modules, streams and events.
            _ = CuApi.cuCtxDestroy_v2(Handle);
        }

        lock (_allocGate)
        {
            _device.AddUsed(-(long)Memory.BytesInUse);
            Memory.TakeAll();
        }

        _streams.Clear();
        _events.Clear();
        _modules.Clear();
        _functions.Clear();
        _device.Release(this);
    }

    /// <summary>Runs one item of stream work on the stream's thread: waits, takes a fair-share slot for kernels, records failures. Never throws.</summary>
    internal void Execute(CudaWork work, CudaStream stream)
    {
        try
        {
            work.WaitBefore?.GetAwaiter().GetResult();
            if (!work.IsDeviceWork)
            {
                work.Run(this, stream);
                return;
            }

            var pending = Volatile.Read(ref _sticky);
            if (pending is not null || _closed)
            {
                // Device work after a failure is skipped until the failure is reported; a copy to the host reports
                // it itself, since the client is waiting on it.
                if (work is CudaCopyToHostWork)
                {
                    work.Fail(TakeError() ?? pending ?? new StickyError(work.Tag, Closed()), ownFailure: false);
                }

                return;
            }

            var cost = work.SlotCost;
            if (cost > 0)
            {
                var slot = _device.Dispatcher.AcquireAsync(_account, cost);
                if (!slot.IsCompleted)
                {
                    slot.AsTask().GetAwaiter().GetResult();
                }
            }

            try
            {
                work.Run(this, stream);
            }
            finally
            {
                if (cost > 0)
                {
                    _device.Dispatcher.Release();
                }
            }
        }
        catch (DeviceException ex)
        {
            Failed(work, ex);
        }
        catch (Exception ex)
        {
            // Whatever went wrong, the stream must go on and the client must hear of it: an escaping exception would
            // leave the stream's thread dead and every later sync hanging.
            Failed(work, new DeviceException(DeviceErrorCode.LaunchFailed, $"{work.Tag.Op} failed: {ex.Message}", ex));
        }
        finally
        {
            work.Finish();
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

    internal unsafe void CopyToDevice(CudaStream stream, ulong dst, ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            return;
        }

        var pool = _device.Staging;
        var first = pool.Rent();
        var two = pool.TryRent(out var second);
        try
        {
            long chunk = pool.BufferBytes;
            var count = (int)((data.Length + chunk - 1) / chunk);
            for (var i = 0; i < count; i++)
            {
                // With two buffers the next chunk is filled while the previous one is on its way to the device.
                var buffer = two && i % 2 == 1 ? second : first;
                if (i > 0 && !two)
                {
                    Synchronize(stream, "copy to device");
                }

                var offset = i * chunk;
                var n = (int)Math.Min(chunk, data.Length - offset);
                data.Slice((int)offset, n).CopyTo(buffer.Span);
                if (i > 0 && two)
                {
                    Synchronize(stream, "copy to device");
                }

                Check(CuApi.cuMemcpyHtoDAsync_v2(dst + (ulong)offset, (void*)buffer.Pointer, (nuint)n, stream.Handle), "cuMemcpyHtoDAsync_v2");
            }

            Synchronize(stream, "copy to device");
        }
        finally
        {
            // After a failure a copy may still be reading a buffer: let the stream settle before the buffers go back.
            _ = CuApi.cuStreamSynchronize(stream.Handle);
            pool.Return(first);
            if (two)
            {
                pool.Return(second);
            }
        }
    }

    internal unsafe void CopyToHost(CudaStream stream, ulong src, ulong bytes, ICopyToHostSink sink)
    {
        if (bytes == 0)
        {
            if (sink.AcceptsChunks)
            {
                sink.OnChunk(0, [], last: true);
            }
            else
            {
                sink.OnData([]);
            }

            return;
        }

        byte[]? gathered = null;
        if (!sink.AcceptsChunks)
        {
            // A sink that wants the copy whole gets it from managed memory; the device still only sees the staging buffers.
            gathered = bytes <= int.MaxValue
                ? ArrayPool<byte>.Shared.Rent((int)bytes)
                : throw new DeviceException(DeviceErrorCode.InvalidArgument, $"a copy of {bytes} bytes to the host is larger than one buffer can hold (2 GiB)");
        }

        var pool = _device.Staging;
        var first = pool.Rent();
        var two = pool.TryRent(out var second);
        try
        {
            ulong chunk = (ulong)pool.BufferBytes;
            var count = (bytes + chunk - 1) / chunk;
            PinnedBuffer BufferOf(ulong i) => two && i % 2 == 1 ? second : first;
            void Submit(ulong i)
            {
                var n = Math.Min(chunk, bytes - (i * chunk));
                Check(CuApi.cuMemcpyDtoHAsync_v2((void*)BufferOf(i).Pointer, src + (i * chunk), (nuint)n, stream.Handle), "cuMemcpyDtoHAsync_v2");
            }

            Submit(0);
            for (ulong i = 0; i < count; i++)
            {
                Synchronize(stream, "copy to host");

                // With two buffers the next chunk comes from the device while this one goes to the sink.
                if (two && i + 1 < count)
                {
                    Submit(i + 1);
                }

                var offset = i * chunk;
                var n = (int)Math.Min(chunk, bytes - offset);
                var piece = BufferOf(i).Span[..n];
                if (gathered is not null)
                {
                    piece.CopyTo(gathered.AsSpan((int)offset));
                }
                else
                {
                    sink.OnChunk(offset, piece, last: i + 1 == count);
                }

                if (!two && i + 1 < count)
                {
                    Submit(i + 1);
                }
            }

            if (gathered is not null)
            {
                sink.OnData(gathered.AsSpan(0, (int)bytes));
            }
        }
        finally
        {
            _ = CuApi.cuStreamSynchronize(stream.Handle);
            pool.Return(first);
            if (two)
            {
                pool.Return(second);
            }

            if (gathered is not null)
            {
                ArrayPool<byte>.Shared.Return(gathered);
            }
        }
    }

    internal unsafe void CopyDeviceToDevice(CudaStream stream, ulong dst, ulong src, ulong bytes)
    {
        if (bytes == 0 || dst == src)
        {
            return;
        }

        if (dst >= src + bytes || src >= dst + bytes)
        {
            Check(CuApi.cuMemcpyDtoDAsync_v2(dst, src, (nuint)bytes, stream.Handle), "cuMemcpyDtoDAsync_v2");
            Synchronize(stream, "device copy");
            return;
        }

        // Overlapping ranges, which the driver's copy leaves undefined: through the host, chunk by chunk, in the order
        // that reads every byte before it is overwritten (as memmove, and as the cpu backend does).
        var pool = _device.Staging;
        var buffer = pool.Rent();
        try
        {
            ulong chunk = (ulong)buffer.Length;
            var backward = dst > src;
            for (ulong done = 0; done < bytes; done += chunk)
            {
                var n = Math.Min(chunk, bytes - done);
                var offset = backward ? bytes - done - n : done;
                Check(CuApi.cuMemcpyDtoHAsync_v2((void*)buffer.Pointer, src + offset, (nuint)n, stream.Handle), "cuMemcpyDtoHAsync_v2", "overlapping device copy");
                Synchronize(stream, "overlapping device copy");
                Check(CuApi.cuMemcpyHtoDAsync_v2(dst + offset, (void*)buffer.Pointer, (nuint)n, stream.Handle), "cuMemcpyHtoDAsync_v2", "overlapping device copy");
                Synchronize(stream, "overlapping device copy");
            }
        }
        finally
        {
            _ = CuApi.cuStreamSynchronize(stream.Handle);
            pool.Return(buffer);
        }
    }

    /// <summary>Checks a built-in kernel's pointers, launches through the void** of the parameter block, and waits for the kernel.</summary>
    internal unsafe void Launch(CudaStream stream, CudaFunction f, LaunchDims d, ReadOnlySpan<byte> parameters)
    {
        if (f.Builtin is { } kernel)
        {
            BuiltinKernelExtents.Check(kernel, parameters, Memory);
        }

        int result;
        fixed (byte* block = parameters)
        {
            if (f.Layout is { } layout)
            {
                var pointers = stackalloc nint[Math.Max(1, layout.Count)];
                KernelParams.Build(block, parameters.Length, layout, new Span<nint>(pointers, layout.Count));
                result = CuApi.cuLaunchKernel(
                    f.Handle, d.GridX, d.GridY, d.GridZ, d.BlockX, d.BlockY, d.BlockZ, d.SharedMemBytes, stream.Handle, layout.Count == 0 ? null : (void**)pointers, null);
            }
            else
            {
                // A driver without cuFuncGetParamInfo: hand the packed block over whole, as cuLaunchKernel's "extra" allows.
                var size = (nuint)parameters.Length;
                var extra = stackalloc nint[5];
                extra[0] = CuApi.LaunchParamBufferPointer;
                extra[1] = (nint)block;
                extra[2] = CuApi.LaunchParamBufferSize;
                extra[3] = (nint)(&size);
                extra[4] = CuApi.LaunchParamEnd;
                result = CuApi.cuLaunchKernel(
                    f.Handle, d.GridX, d.GridY, d.GridZ, d.BlockX, d.BlockY, d.BlockZ, d.SharedMemBytes, stream.Handle, null, (void**)extra);
            }
        }

        Check(result, "cuLaunchKernel", $"kernel {f.Name}");
        Synchronize(stream, $"kernel {f.Name}");
    }

    /// <summary>Records the event on the stream and waits for it. Never throws: a failure becomes the pending error.</summary>
    internal void RecordEvent(CudaEvent evt, CudaStream stream, OpTag tag)
    {
        lock (evt.Gate)
        {
            evt.OnDevice = false;
            if (_closed || evt.DestroyRequested)
            {
                return;
            }

            var result = CuApi.cuEventRecord(evt.Handle, stream.Handle);
            var call = "cuEventRecord";
            if (result == CudaErrors.Success)
            {
                result = CuApi.cuEventSynchronize(evt.Handle);
                call = "cuEventSynchronize";
            }

            evt.OnDevice = result == CudaErrors.Success;
            if (result != CudaErrors.Success)
            {
                try
                {
                    Check(result, call);
                }
                catch (DeviceException ex)
                {
                    Interlocked.CompareExchange(ref _sticky, new StickyError(tag, ex), null);
                }
            }
        }
    }

    /// <summary>Called by the last queued record of an event that the client destroyed meanwhile (on a stream thread).</summary>
    internal void EventRecordFinished(CudaEvent evt)
    {
        lock (evt.Gate)
        {
            evt.PendingRecords--;
            if (evt.DestroyRequested && evt.PendingRecords == 0)
            {
                DestroyEventHandle(evt);
            }
        }
    }

    private void DestroyEventHandle(CudaEvent evt)
    {
        if (!evt.Destroyed)
        {
            evt.Destroyed = true;
            TryOnLiveContext(() => CuApi.cuEventDestroy_v2(evt.Handle));
        }
    }

    private void Synchronize(CudaStream stream, string what) => Check(CuApi.cuStreamSynchronize(stream.Handle), "cuStreamSynchronize", $"after {what}");

    /// <summary>Loads a module image (PTX, cubin or fatbin) into the current context, with the JIT's error log in the message when it fails.</summary>
    private unsafe nint LoadImage(ReadOnlySpan<byte> image)
    {
        const int logBytes = 8192;

        // PTX is text the driver reads up to a NUL; a binary image ignores the extra byte.
        var data = (byte*)NativeMemory.Alloc((nuint)image.Length + 1);
        var log = (byte*)NativeMemory.AllocZeroed(logBytes);
        try
        {
            image.CopyTo(new Span<byte>(data, image.Length));
            data[image.Length] = 0;
            var options = stackalloc int[2] { CuApi.JitErrorLogBuffer, CuApi.JitErrorLogBufferSizeBytes };
            var values = stackalloc nint[2] { (nint)log, logBytes };
            var result = CuApi.cuModuleLoadDataEx(out var module, data, 2, options, (void**)values);
            if (result != CudaErrors.Success)
            {
                var jit = (Marshal.PtrToStringUTF8((nint)log) ?? "").Trim().ReplaceLineEndings("; ");
                if (jit.Length > 400)
                {
                    jit = jit[..400] + "...";
                }

                if (CudaErrors.IsContextFatal(result))
                {
                    Check(result, "cuModuleLoadDataEx");
                }

                throw new DeviceException(CudaErrors.CodeOf(result), $"cuModuleLoadDataEx failed: {CudaErrors.Describe(result)}{(jit.Length > 0 ? $": {jit}" : "")}");
            }

            return module;
        }
        finally
        {
            NativeMemory.Free(data);
            NativeMemory.Free(log);
        }
    }

    /// <summary>
    /// Where each parameter of a client's kernel sits, from the driver (cuFuncGetParamInfo, CUDA 12.4 and later);
    /// null when the driver cannot say, and launches then pass the packed block whole.
    /// </summary>
    private static ParamLayout? QueryLayout(nint function)
    {
        try
        {
            var offsets = new List<int>();
            var sizes = new List<int>();
            for (nuint i = 0; i < 4096; i++)
            {
                var result = CuApi.cuFuncGetParamInfo(function, i, out var offset, out var size);
                if (result == CudaErrors.InvalidValue)
                {
                    return new ParamLayout([.. offsets], [.. sizes]);
                }

                if (result != CudaErrors.Success)
                {
                    return null;
                }

                offsets.Add((int)offset);
                sizes.Add((int)size);
            }

            return null;
        }
        catch (EntryPointNotFoundException)
        {
            return null;
        }
    }

    private T OnLiveContext<T>(Func<T> call)
    {
        lock (_lifecycle)
        {
            if (_destroyed)
            {
                throw Closed();
            }

            using (new ContextScope(Handle))
            {
                return call();
            }
        }
    }

    private void OnLiveContext(Action call) => OnLiveContext(() =>
    {
        call();
        return 0;
    });

    /// <summary>Runs a clean-up call unless the context is gone (destroying it freed the object already).</summary>
    private void TryOnLiveContext(Func<int> call)
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

    private void Failed(CudaWork work, DeviceException ex)
    {
        var error = new StickyError(work.Tag, ex);
        if (work is CudaCopyToHostWork)
        {
            // The client is waiting on this copy: it gets the error directly, nothing stays sticky.
            work.Fail(error, ownFailure: true);
            return;
        }

        Interlocked.CompareExchange(ref _sticky, error, null);
    }

    /// <summary>Queues the work <paramref name="create"/> makes; false when it was not made (the failure is queued instead).</summary>
    private bool Enqueue(ulong stream, OpTag tag, Func<CudaWork> create)
    {
        if (!_streams.TryGetValue(stream, out var s))
        {
            // No stream to keep order on: the failure is pending from now.
            Interlocked.CompareExchange(ref _sticky, new StickyError(tag, _closed ? Closed() : NoStream(stream)), null);
            return false;
        }

        CudaWork work;
        var made = false;
        try
        {
            ThrowIfClosed();
            work = create();
            made = true;
        }
        catch (DeviceException ex)
        {
            work = new CudaFailedWork(tag, ex);
        }

        s.Enqueue(work);
        return made;
    }

    private ulong NextHandle() => (ulong)Interlocked.Increment(ref _nextHandle);

    private void ThrowIfClosed()
    {
        if (_closed)
        {
            throw Closed();
        }

        if (Volatile.Read(ref _fault) is { } fault)
        {
            throw new DeviceException(DeviceErrorCode.LaunchFailed,
                $"the lease's CUDA context cannot run anything more after a fault ({fault}), as with any CUDA context; release the lease and take a new one");
        }
    }

    private static DeviceException Closed() => new(DeviceErrorCode.ContextClosed, "the lease's device context has been closed");

    private static DeviceException NoStream(ulong stream) => new(DeviceErrorCode.NotFound, $"stream {stream} does not exist in this lease");

    private static DeviceException NoEvent(ulong evt) => new(DeviceErrorCode.NotFound, $"event {evt} does not exist in this lease");
}

/// <summary>A loaded module. <c>Shared</c>: the context's one copy of the built-in library, freed with the context.</summary>
internal sealed record CudaModule(nint Handle, bool Builtin, bool Shared);

/// <summary>
/// A kernel of a loaded module. <c>Builtin</c> names the library kernel (its pointer parameters are bounds-checked);
/// <c>Layout</c> is where its parameters sit in the packed block, or null when the driver cannot say.
/// </summary>
internal sealed record CudaFunction(ulong Module, string Name, nint Handle, KernelDef? Builtin, ParamLayout? Layout);

/// <summary>
/// An event: the CUevent and, on the host, the task of its latest record, which completes once the device has
/// reached the record.
/// </summary>
internal sealed class CudaEvent(nint handle)
{
    public Lock Gate { get; } = new();

    public nint Handle { get; } = handle;

    public volatile Task? Recorded;

    /// <summary>The latest record reached the device (false when it was skipped after a failure).</summary>
    public volatile bool OnDevice;

    // Under Gate: records queued but not yet finished, and the client's destroy waiting for them.
    public int PendingRecords;

    public bool DestroyRequested;

    public bool Destroyed;
}
