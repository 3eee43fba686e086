using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using GpuPool.Devices.Cpu.Kernels;
using GpuPool.Devices.Scheduling;

namespace GpuPool.Devices.Cpu;

/// <summary>One lease's isolated context on a cpu device: its memory, modules, streams and events.</summary>
internal sealed partial class CpuContext : IDeviceContext
{
    private readonly CpuDevice _device;
    private readonly FairShareDispatcher.Account _account;
    private readonly object _allocGate = new();
    private readonly ConcurrentDictionary<ulong, CpuStream> _streams = new();
    private readonly ConcurrentDictionary<ulong, Task> _destroyedStreamsDraining = new();
    private readonly ConcurrentDictionary<ulong, CpuEvent> _events = new();
    private readonly ConcurrentDictionary<ulong, IReadOnlySet<string>?> _modules = new();
    private readonly ConcurrentDictionary<ulong, (ulong Module, KernelDef Kernel)> _functions = new();
    private StickyError? _sticky;
    private long _nextHandle;
    private volatile bool _closed;
    private int _directCopies;

    public CpuContext(CpuDevice device, ContextOptions options)
    {
        _device = device;
        LeaseId = options.LeaseId;
        MemoryLimit = options.MemoryLimit;
        ComputeShare = options.ComputeShare;
        _account = new FairShareDispatcher.Account(options.ComputeShare);
        _streams[0] = new CpuStream(this, 0);
    }

    private sealed class CpuEvent
    {
        public volatile Task<long>? Recorded;
    }

    public string LeaseId { get; }

    public ulong MemoryLimit { get; }

    public ulong MemoryUsed => Memory.BytesInUse;

    public int ComputeShare { get; }

    internal AllocationTable Memory { get; } = new();

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

            var ptr = Memory.Allocate(bytes);
            _device.AddUsed((long)bytes);
            return ptr;
        }
    }

    public async ValueTask FreeAsync(ulong ptr)
    {
        ThrowIfClosed();

        // Like cuMemFree: work already queued may still use the memory, so it finishes first.
        await SynchronizeAsync().ConfigureAwait(false);
        lock (_allocGate)
        {
            var size = Memory.Free(ptr);
            _device.AddUsed(-(long)size);
        }
    }

    public ulong LoadBuiltinModule()
    {
        ThrowIfClosed();
        var id = NextHandle();
        _modules[id] = null;
        return id;
    }

    public ulong LoadModule(ReadOnlySpan<byte> image)
    {
        ThrowIfClosed();
        if (image.Length >= 4 && image[0] == 0x7F && image[1] == (byte)'E' && image[2] == (byte)'L' && image[3] == (byte)'F')
        {
            throw new DeviceException(DeviceErrorCode.NotSupported, "the cpu backend cannot run cubin (ELF) modules; it runs PTX modules whose kernels are all built-in kernels");
        }

        var text = Encoding.UTF8.GetString(image.TrimEnd((byte)0));
        var entries = PtxEntry().Matches(text).Select(m => m.Groups[1].Value).Distinct(StringComparer.Ordinal).ToArray();
        if (entries.Length == 0)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, "the module image is neither PTX with .entry functions nor a cubin");
        }

        var unknown = entries.Where(e => !BuiltinKernels.All.ContainsKey(e)).ToArray();
        if (unknown.Length > 0)
        {
            throw new DeviceException(DeviceErrorCode.NotSupported,
                $"the cpu backend cannot run kernel(s) {string.Join(", ", unknown)}: it runs only the built-in kernels (for example {string.Join(", ", BuiltinKernels.All.Keys.Order().Take(4))}, ...)");
        }

        var id = NextHandle();
        _modules[id] = entries.ToHashSet(StringComparer.Ordinal);
        return id;
    }

    public void UnloadModule(ulong module)
    {
        if (!_modules.TryRemove(module, out _))
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
    }

    public ulong GetFunction(ulong module, string name)
    {
        if (!_modules.TryGetValue(module, out var names))
        {
            throw new DeviceException(DeviceErrorCode.NotFound, $"module {module} is not loaded in this lease");
        }

        if ((names is not null && !names.Contains(name)) || !BuiltinKernels.All.TryGetValue(name, out var kernel))
        {
            throw new DeviceException(DeviceErrorCode.NotFound, $"no kernel named '{name}' in module {module}");
        }

        // One handle per (module, kernel): looking a function up again must not grow the table.
        foreach (var (existing, f) in _functions)
        {
            if (f.Module == module && ReferenceEquals(f.Kernel, kernel))
            {
                return existing;
            }
        }

        var id = NextHandle();
        _functions[id] = (module, kernel);
        return id;
    }

    public ulong CreateStream()
    {
        ThrowIfClosed();
        var id = NextHandle();
        _streams[id] = new CpuStream(this, id);
        return id;
    }

    public void DestroyStream(ulong stream)
    {
        if (stream == 0 || !_streams.TryRemove(stream, out var s))
        {
            throw new DeviceException(DeviceErrorCode.NotFound, stream == 0 ? "the default stream cannot be destroyed" : $"stream {stream} does not exist in this lease");
        }

        // Work already queued on the stream still runs, as with cuStreamDestroy; until it has, synchronize (and so
        // free and close) must wait for it too, or memory could be freed under a running kernel.
        var drained = s.Marker();
        _destroyedStreamsDraining[stream] = drained;
        _ = drained.ContinueWith(
            done => _destroyedStreamsDraining.TryRemove(stream, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    public ulong CreateEvent()
    {
        ThrowIfClosed();
        var id = NextHandle();
        _events[id] = new CpuEvent();
        return id;
    }

    public void DestroyEvent(ulong evt)
    {
        if (!_events.TryRemove(evt, out _))
        {
            throw new DeviceException(DeviceErrorCode.NotFound, $"event {evt} does not exist in this lease");
        }
    }

    public void EnqueueCopyToDevice(ulong stream, ulong dst, ReadOnlyMemory<byte> data, OpTag tag, IDisposable? dataOwner = null)
    {
        // A static factory over a state tuple: a copy chunk that cannot go straight to the device costs no closure.
        if (!Enqueue(stream, tag, (tag, dst, data, dataOwner), static s => new CopyToDeviceWork(s.tag, s.dst, s.data, s.dataOwner)))
        {
            dataOwner?.Dispose();
        }
    }

    public bool TryCopyToDeviceNow(ulong stream, ulong dst, in System.Buffers.ReadOnlySequence<byte> data)
    {
        // Copies do not take compute slots, as a GPU's copy engines do not. The in-flight count keeps the context
        // from being freed under a copy without serializing copies: the chunks of one striped copy land in parallel.
        Interlocked.Increment(ref _directCopies);
        try
        {
            // Idle first, then the error flag: work that fails sets the flag before its stream goes idle.
            if (_closed || !_streams.TryGetValue(stream, out var s) || !s.IsIdle || Volatile.Read(ref _sticky) is not null)
            {
                return false;
            }

            Span<byte> target;
            try
            {
                target = Memory.Resolve(dst, (ulong)data.Length, "copy to device destination");
            }
            catch (DeviceException)
            {
                return false;
            }

            System.Buffers.BuffersExtensions.CopyTo(data, target);
            return true;
        }
        finally
        {
            Interlocked.Decrement(ref _directCopies);
        }
    }

    public nint TryBeginDirectWrite(ulong stream, ulong dst, int length)
    {
        // Counted in as a direct copy for as long as the caller writes: the context is not freed under it.
        Interlocked.Increment(ref _directCopies);
        if (_closed || !_streams.TryGetValue(stream, out var s) || !s.IsIdle || Volatile.Read(ref _sticky) is not null)
        {
            Interlocked.Decrement(ref _directCopies);
            return 0;
        }

        try
        {
            Memory.Resolve(dst, (ulong)length, "copy to device destination");
        }
        catch (DeviceException)
        {
            Interlocked.Decrement(ref _directCopies);
            return 0;
        }

        // Device memory on this backend is host memory at the device address.
        return (nint)dst;
    }

    public void EndDirectWrite() => Interlocked.Decrement(ref _directCopies);

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

        s.Enqueue(new CopyToHostWork(tag, src, bytes, sink));
    }

    public void EnqueueCopyDeviceToDevice(ulong stream, ulong dst, ulong src, ulong bytes, OpTag tag)
        => Enqueue(stream, tag, () => new CopyDeviceToDeviceWork(tag, dst, src, bytes));

    public void EnqueueFailure(ulong stream, OpTag tag, DeviceException error)
        => Enqueue(stream, tag, (tag, error), static s => new FailedWork(s.tag, s.error));

    public void EnqueueMemset(ulong stream, ulong dst, uint value, int elementSize, ulong count, OpTag tag)
        => Enqueue(stream, tag, () => elementSize is 1 or 2 or 4
            ? new MemsetWork(tag, dst, value, elementSize, count)
            : throw new DeviceException(DeviceErrorCode.InvalidArgument, $"memset element size must be 1, 2 or 4 bytes, not {elementSize}"));

    public void EnqueueLaunch(ulong stream, ulong function, LaunchDims dims, ReadOnlyMemory<byte> parameters, OpTag tag)
        => Enqueue(stream, tag, () =>
        {
            if (!_functions.TryGetValue(function, out var f))
            {
                throw new DeviceException(DeviceErrorCode.NotFound, $"function {function} does not exist in this lease (get it from a loaded module first)");
            }

            CheckGeometry(f.Kernel.Name, dims);
            if (parameters.Length != f.Kernel.ParamBytes)
            {
                throw new DeviceException(DeviceErrorCode.InvalidArgument,
                    $"kernel {f.Kernel.Name} takes {f.Kernel.ParamBytes} bytes of parameters ({f.Kernel.Signature}), but the launch passed {parameters.Length}");
            }

            return new LaunchWork(tag, f.Kernel, parameters);
        });

    public void EnqueueEventRecord(ulong stream, ulong evt, OpTag tag)
        => Enqueue(stream, tag, () =>
        {
            var e = _events.TryGetValue(evt, out var found) ? found : throw NoEvent(evt);
            var completion = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
            e.Recorded = completion.Task;
            return new RecordWork(tag, completion);
        });

    public void EnqueueStreamWaitEvent(ulong stream, ulong evt, OpTag tag)
        => Enqueue(stream, tag, () =>
        {
            var e = _events.TryGetValue(evt, out var found) ? found : throw NoEvent(evt);

            // An event never recorded counts as complete, as in CUDA.
            return new WaitEventWork(tag, e.Recorded ?? Task.CompletedTask);
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
        var a = _events.TryGetValue(start, out var s) ? s.Recorded : throw NoEvent(start);
        var b = _events.TryGetValue(end, out var e) ? e.Recorded : throw NoEvent(end);
        if (a is null || b is null)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, "both events must have been recorded before their elapsed time can be read");
        }

        if (!a.IsCompleted || !b.IsCompleted)
        {
            throw new DeviceException(DeviceErrorCode.NotReady, "an event has not completed yet");
        }

        return (float)Stopwatch.GetElapsedTime(a.Result, b.Result).TotalMilliseconds;
    }

    public StickyError? TakeError() => Interlocked.Exchange(ref _sticky, null);

    /// <summary>Runs one item of stream work: waits, dispatches device work through the fair-share queue, records failures.</summary>
    internal async ValueTask ExecuteAsync(StreamWork work)
    {
        try
        {
            if (work.WaitBefore is { } wait)
            {
                await wait.ConfigureAwait(false);
            }

            var cost = work.Cost;
            if (cost == 0)
            {
                work.Run(this);
                return;
            }

            var pending = Volatile.Read(ref _sticky);
            if (pending is not null || _closed)
            {
                // Device work after a failure is skipped until the failure is reported; a copy to the host
                // reports it itself, since the client is waiting on it.
                if (work is CopyToHostWork)
                {
                    work.Fail(TakeError() ?? pending ?? new StickyError(work.Tag, Closed()), ownFailure: false);
                }

                return;
            }

            await _device.Dispatcher.AcquireAsync(_account, cost).ConfigureAwait(false);
            try
            {
                await work.RunAsync(this).ConfigureAwait(false);
            }
            catch (DeviceException ex)
            {
                Failed(work, ex);
            }
            catch (Exception ex)
            {
                // Whatever went wrong, the stream must go on and the client must hear of it: an escaping
                // exception would leave the stream's worker dead and every later sync hanging.
                Failed(work, new DeviceException(DeviceErrorCode.LaunchFailed, $"{work.Tag.Op} failed: {ex.Message}", ex));
            }
            finally
            {
                _device.Dispatcher.Release();
            }
        }
        finally
        {
            work.Finish();
        }
    }

    private void Failed(StreamWork work, DeviceException ex)
    {
        var error = new StickyError(work.Tag, ex);
        if (work is CopyToHostWork)
        {
            // The client is waiting on this copy: it gets the error directly, nothing stays sticky.
            work.Fail(error, ownFailure: true);
            return;
        }

        Interlocked.CompareExchange(ref _sticky, error, null);
    }

    public async ValueTask DisposeAsync()
    {
        if (_closed)
        {
            return;
        }

        // A copy that counted itself in before it could see the flag finishes first; one that counts itself in after sees it.
        _closed = true;
        Interlocked.MemoryBarrier();
        // A direct write may last as long as its chunk takes to arrive (its connection is cancelled with the lease):
        // past a few spins, wait without holding the thread.
        var wait = new SpinWait();
        while (Volatile.Read(ref _directCopies) != 0)
        {
            if (wait.NextSpinWillYield)
            {
                await Task.Delay(1).ConfigureAwait(false);
            }
            else
            {
                wait.SpinOnce();
            }
        }

        // Queued device work is skipped now that the context is closed; wait for the workers to let go.
        await SynchronizeAsync().ConfigureAwait(false);
        lock (_allocGate)
        {
            _device.AddUsed(-(long)Memory.BytesInUse);
            Memory.FreeAll();
        }

        _streams.Clear();
        _events.Clear();
        _modules.Clear();
        _functions.Clear();
        _device.Release(this);
    }

    /// <summary>Queues the work <paramref name="create"/> makes; false when it was not made (the failure is queued instead).</summary>
    private bool Enqueue(ulong stream, OpTag tag, Func<StreamWork> create)
        => Enqueue(stream, tag, create, static c => c());

    /// <summary>Like the closure overload, with the factory's state passed in rather than captured.</summary>
    private bool Enqueue<TState>(ulong stream, OpTag tag, TState state, Func<TState, StreamWork> create)
    {
        if (!_streams.TryGetValue(stream, out var s))
        {
            // No stream to keep order on: the failure is pending from now.
            Interlocked.CompareExchange(ref _sticky, new StickyError(tag, _closed ? Closed() : NoStream(stream)), null);
            return false;
        }

        StreamWork work;
        var made = false;
        try
        {
            ThrowIfClosed();
            work = create(state);
            made = true;
        }
        catch (DeviceException ex)
        {
            work = new FailedWork(tag, ex);
        }

        s.Enqueue(work);
        return made;
    }

    private static void CheckGeometry(string kernel, LaunchDims d)
    {
        if (d.GridX == 0 || d.GridY == 0 || d.GridZ == 0 || d.BlockX == 0 || d.BlockY == 0 || d.BlockZ == 0)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"launch of {kernel}: grid and block dimensions must all be at least 1");
        }

        if ((ulong)d.BlockX * d.BlockY * d.BlockZ > 1024 || d.BlockZ > 64 || d.GridY > 65535 || d.GridZ > 65535 || d.GridX > int.MaxValue)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument,
                $"launch of {kernel}: block {d.BlockX}x{d.BlockY}x{d.BlockZ} / grid {d.GridX}x{d.GridY}x{d.GridZ} is past the device's limits (1024 threads per block, grid y/z up to 65535)");
        }

        if (d.SharedMemBytes > 48 * 1024)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"launch of {kernel}: {d.SharedMemBytes} bytes of dynamic shared memory is more than the 49152 the device allows");
        }
    }

    private ulong NextHandle() => (ulong)Interlocked.Increment(ref _nextHandle);

    private void ThrowIfClosed()
    {
        if (_closed)
        {
            throw Closed();
        }
    }

    private static DeviceException Closed() => new(DeviceErrorCode.ContextClosed, "the lease's device context has been closed");

    private static DeviceException NoStream(ulong stream) => new(DeviceErrorCode.NotFound, $"stream {stream} does not exist in this lease");

    private static DeviceException NoEvent(ulong evt) => new(DeviceErrorCode.NotFound, $"event {evt} does not exist in this lease");

    [GeneratedRegex(@"\.entry\s+([A-Za-z_$][\w$]*)\s*\(", RegexOptions.CultureInvariant)]
    private static partial Regex PtxEntry();
}
