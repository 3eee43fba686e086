using System.Buffers;
using GpuPool.Devices.Streams;

namespace GpuPool.Devices.Contexts;

/// <summary>Streams and events: creating them, queueing work on them in order, and waiting for it.</summary>
internal sealed partial class DeviceContext
{
    private int _directCopies;

    public ulong CreateStream()
    {
        ThrowIfClosed();
        var id = (ulong)Interlocked.Increment(ref _nextHandle);
        _streams[id] = Runtime.CreateStream(id, this);
        return id;
    }

    public void DestroyStream(ulong stream)
    {
        if (stream == 0 || !_streams.TryRemove(stream, out var s))
        {
            throw stream == 0 ? new DeviceException(DeviceErrorCode.NotFound, "the default stream cannot be destroyed") : ContextErrors.NoStream(stream);
        }

        // Work already queued on the stream still runs, as with cuStreamDestroy; until it has, synchronize (and so free
        // and close) must wait for it too, or memory could be freed under a running kernel.
        var drained = s.Drain(destroyed: true);
        _destroyedStreamsDraining[stream] = drained;
        _ = drained.ContinueWith(
            done => _destroyedStreamsDraining.TryRemove(stream, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    public ulong CreateEvent()
    {
        ThrowIfClosed();
        return Add(_events, new ContextEvent(Runtime.CreateEvent()));
    }

    public void DestroyEvent(ulong evt)
    {
        if (!_events.TryRemove(evt, out var e))
        {
            throw ContextErrors.NoEvent(evt);
        }

        e.Destroy(Runtime);
    }

    public void EnqueueCopyToDevice(ulong stream, ulong dst, ReadOnlyMemory<byte> data, OpTag tag, IDisposable? dataOwner = null)
    {
        // A static factory over a state tuple: a copy chunk that cannot go straight to the device costs no closure.
        if (!Enqueue(stream, tag, (tag, dst, data, dataOwner), static s => new CopyToDeviceWork(s.tag, s.dst, s.data, s.dataOwner)))
        {
            dataOwner?.Dispose();
        }
    }

    /// <remarks>
    /// Only where device memory is host memory: a copy to a GPU goes through pinned staging and waits for the copy engine,
    /// which would hold up the connection's reader; queued, it overlaps with receiving the next bytes.
    /// </remarks>
    public bool TryCopyToDeviceNow(ulong stream, ulong dst, in ReadOnlySequence<byte> data)
    {
        if (!_memory.IsHostMemory)
        {
            return false;
        }

        // Copies do not take compute slots, as a GPU's copy engines do not. The in-flight count keeps the context from
        // being freed under a copy without serializing copies: the chunks of one striped copy land in parallel.
        Interlocked.Increment(ref _directCopies);
        try
        {
            if (!CanWriteDirectly(stream))
            {
                return false;
            }

            Span<byte> target;
            try
            {
                target = _memory.HostView(dst, (ulong)data.Length, RangeNames.CopyToDevice);
            }
            catch (DeviceException)
            {
                return false;
            }

            data.CopyTo(target);
            return true;
        }
        finally
        {
            Interlocked.Decrement(ref _directCopies);
        }
    }

    public nint TryBeginDirectWrite(ulong stream, ulong dst, int length)
    {
        if (!_memory.IsHostMemory)
        {
            return 0;
        }

        // Counted in as a direct copy for as long as the caller writes: the context is not freed under it.
        Interlocked.Increment(ref _directCopies);
        if (!CanWriteDirectly(stream))
        {
            Interlocked.Decrement(ref _directCopies);
            return 0;
        }

        try
        {
            _memory.HostView(dst, (ulong)length, RangeNames.CopyToDevice);
        }
        catch (DeviceException)
        {
            Interlocked.Decrement(ref _directCopies);
            return 0;
        }

        // Device memory is host memory at the device address.
        return (nint)dst;
    }

    public void EndDirectWrite()
    {
        if (!_memory.IsHostMemory)
        {
            throw new InvalidOperationException("this backend's device memory is not host memory: it begins no direct writes");
        }

        Interlocked.Decrement(ref _directCopies);
    }

    public void EnqueueCopyToHost(ulong stream, ulong src, ulong bytes, ICopyToHostSink sink, OpTag tag)
    {
        if (IsClosed)
        {
            sink.OnError(new StickyError(tag, ContextErrors.Closed()));
            return;
        }

        if (!_streams.TryGetValue(stream, out var s))
        {
            sink.OnError(new StickyError(tag, ContextErrors.NoStream(stream)));
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
            var f = _functions.TryGetValue(function, out var found) ? found : throw ContextErrors.NoFunction(function);
            LaunchLimits.Check(f.Name, dims, _deviceAttributes);
            if (f.ParamBytes is { } size && parameters.Length != size)
            {
                throw new DeviceException(DeviceErrorCode.InvalidArgument,
                    $"kernel {f.Name} takes {size} bytes of parameters ({f.Signature}), but the launch passed {parameters.Length}");
            }

            return new LaunchWork(tag, f, dims, parameters);
        });

    public void EnqueueEventRecord(ulong stream, ulong evt, OpTag tag)
        => Enqueue(stream, tag, () =>
        {
            var e = Event(evt);
            return new RecordWork(tag, e, e.QueueRecord(), Runtime);
        });

    public void EnqueueStreamWaitEvent(ulong stream, ulong evt, OpTag tag)
        => Enqueue(stream, tag, () => new WaitEventWork(tag, Event(evt).Recorded ?? Task.CompletedTask)); // never recorded: complete, as in CUDA

    public Task SynchronizeStreamAsync(ulong stream, CancellationToken cancellationToken = default)
        => _streams.TryGetValue(stream, out var s) ? s.Marker().WaitAsync(cancellationToken) : throw ContextErrors.NoStream(stream);

    public Task SynchronizeEventAsync(ulong evt, CancellationToken cancellationToken = default)
        => (Event(evt).Recorded ?? Task.CompletedTask).WaitAsync(cancellationToken);

    public Task SynchronizeAsync(CancellationToken cancellationToken = default)
        => Task.WhenAll(_streams.Values.Select(s => s.Marker()).Concat(_destroyedStreamsDraining.Values)).WaitAsync(cancellationToken);

    public bool QueryEvent(ulong evt) => Event(evt).Recorded?.IsCompleted ?? true;

    public float EventElapsedMilliseconds(ulong start, ulong end)
    {
        ContextEvent a = Event(start), b = Event(end);
        if (a.Recorded is null || b.Recorded is null)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, "both events must have been recorded before their elapsed time can be read");
        }

        if (!a.Recorded.IsCompleted || !b.Recorded.IsCompleted)
        {
            throw new DeviceException(DeviceErrorCode.NotReady, "an event has not completed yet");
        }

        if (!a.Reached || !b.Reached)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, "an event's last record did not reach the device (an earlier operation failed), so it holds no time");
        }

        return Runtime.ElapsedMilliseconds(a, b);
    }

    private ContextEvent Event(ulong evt) => _events.TryGetValue(evt, out var e) ? e : throw ContextErrors.NoEvent(evt);

    /// <summary>Idle first, then the error flag: work that fails sets the flag before its stream goes idle.</summary>
    private bool CanWriteDirectly(ulong stream)
        => !IsClosed && _streams.TryGetValue(stream, out var s) && s.IsIdle && Volatile.Read(ref _sticky) is null;

    private async Task WaitForDirectWritesAsync()
    {
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
            Interlocked.CompareExchange(ref _sticky, new StickyError(tag, IsClosed ? ContextErrors.Closed() : ContextErrors.NoStream(stream)), null);
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
}
