using System.Buffers;
using GpuPool.Devices.Streams;

namespace GpuPool.Devices.Contexts;

/// <summary>Streams and events: creating them, queueing work on them in order, and waiting for it.</summary>
internal sealed partial class DeviceContext
{
    private readonly Lock _streamsGate = new();
    private int _directCopies;

    /// <summary>The streams not destroyed, as an array a synchronize walks without allocating; replaced when one comes or goes.</summary>
    private volatile WorkStream[] _liveStreams = [];

    public ulong CreateStream(StreamOrder order = StreamOrder.Blocking)
    {
        ThrowIfClosed();
        var id = (ulong)Interlocked.Increment(ref _nextHandle);
        var stream = Runtime.CreateStream(id, this);
        if (order == StreamOrder.Blocking)
        {
            stream.Legacy = new LegacyOrder();
        }

        AddStream(id, stream);
        return id;
    }

    public void DestroyStream(ulong stream)
    {
        if (stream == 0 || !_streams.TryRemove(stream, out var s))
        {
            throw stream == 0 ? new DeviceException(DeviceErrorCode.NotFound, "the default stream cannot be destroyed") : ContextErrors.NoStream(stream);
        }

        // Work already queued on the stream still runs, as with cuStreamDestroy; until it has, synchronize (and so free
        // and close) must wait for it too, or memory could be freed under a running kernel. It is among the draining ones
        // before it leaves the live ones, so a synchronize in between sees it.
        LeaveDefaultOrder(s);
        var drained = s.Drain(destroyed: true);
        lock (_streamsGate)
        {
            _destroyedStreamsDraining[stream] = new DrainingStream(s, drained);
            _liveStreams = Array.FindAll(_liveStreams, live => live != s);
        }

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
        if (StreamFor(stream, tag) is { } s)
        {
            s.Enqueue(Pools.CopiesToDevice.Rent().Init(tag, dst, data, dataOwner));
        }
        else
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

        OrderWithDefaultStream(s, tag);
        s.Enqueue(Pools.CopiesToHost.Rent().Init(tag, src, bytes, sink));
    }

    public void EnqueueCopyDeviceToDevice(ulong stream, ulong dst, ulong src, ulong bytes, OpTag tag)
        => StreamFor(stream, tag)?.Enqueue(Pools.DeviceCopies.Rent().Init(tag, dst, src, bytes));

    public void EnqueueFailure(ulong stream, OpTag tag, DeviceException error)
        => StreamFor(stream, tag)?.Enqueue(new FailedWork(tag, error));

    public void EnqueueMemset(ulong stream, ulong dst, uint value, int elementSize, ulong count, OpTag tag)
        => StreamFor(stream, tag)?.Enqueue(elementSize is 1 or 2 or 4
            ? Pools.Memsets.Rent().Init(tag, dst, value, elementSize, count)
            : new FailedWork(tag, new DeviceException(DeviceErrorCode.InvalidArgument, $"memset element size must be 1, 2 or 4 bytes, not {elementSize}")));

    /// <remarks>The launch takes a copy of the parameter block: the caller's memory is free again when this returns.</remarks>
    public void EnqueueLaunch(ulong stream, ulong function, LaunchDims dims, ReadOnlyMemory<byte> parameters, OpTag tag)
    {
        if (StreamFor(stream, tag) is not { } s)
        {
            return;
        }

        StreamWork work;
        try
        {
            var f = _functions.TryGetValue(function, out var found) ? found : throw ContextErrors.NoFunction(function);
            LaunchLimits.Check(f.Name, dims, _deviceAttributes);
            if (f.ParamBytes is { } size && parameters.Length != size)
            {
                throw new DeviceException(DeviceErrorCode.InvalidArgument,
                    $"kernel {f.Name} takes {size} bytes of parameters ({f.Signature}), but the launch passed {parameters.Length}");
            }

            work = Pools.Launches.Rent().Init(tag, f, dims, parameters.Span);
        }
        catch (DeviceException ex)
        {
            work = new FailedWork(tag, ex);
        }

        s.Enqueue(work);
    }

    public void EnqueueEventRecord(ulong stream, ulong evt, OpTag tag)
    {
        if (StreamFor(stream, tag) is { } s)
        {
            s.Enqueue(_events.TryGetValue(evt, out var e) ? Pools.Records.Rent().Init(tag, e, e.QueueRecord(), Runtime) : new FailedWork(tag, ContextErrors.NoEvent(evt)));
        }
    }

    /// <summary>The stream waits for the event's latest record as of now; an event never recorded holds nothing up, as in CUDA.</summary>
    public void EnqueueStreamWaitEvent(ulong stream, ulong evt, OpTag tag)
    {
        if (StreamFor(stream, tag) is { } s)
        {
            s.Enqueue(_events.TryGetValue(evt, out var e) ? Pools.EventWaits.Rent().Init(tag, e, e.Latest) : new FailedWork(tag, ContextErrors.NoEvent(evt)));
        }
    }

    /// <remarks>Stream 0's synchronize waits for the blocking streams' work too, as the legacy default stream's does.</remarks>
    public ValueTask SynchronizeStreamAsync(ulong stream, CancellationToken cancellationToken = default)
    {
        if (!_streams.TryGetValue(stream, out var s))
        {
            throw ContextErrors.NoStream(stream);
        }

        if (stream == 0)
        {
            OrderWithDefaultStream(s, new OpTag(0, "stream_synchronize"));
        }

        return SynchronizeStreamAsync(s, cancellationToken);
    }

    /// <summary>Waits for the work queued on <paramref name="stream"/> so far: at once when it has none, else for a marker queued behind it.</summary>
    internal ValueTask SynchronizeStreamAsync(WorkStream stream, CancellationToken cancellationToken)
    {
        SyncPoint? point = null;
        Mark(stream, ref point);
        return point?.Seal(cancellationToken) ?? default;
    }

    public ValueTask SynchronizeEventAsync(ulong evt, CancellationToken cancellationToken = default)
    {
        var e = Event(evt);
        return e.WaitAsync(e.Latest, Pools.Syncs, resumeInline: false, cancellationToken);
    }

    /// <summary>One wait for the work queued so far on every stream, destroyed streams still draining included.</summary>
    public ValueTask SynchronizeAsync(CancellationToken cancellationToken = default)
    {
        SyncPoint? point = null;
        foreach (var s in _liveStreams)
        {
            Mark(s, ref point);
        }

        if (!_destroyedStreamsDraining.IsEmpty)
        {
            foreach (var (_, draining) in _destroyedStreamsDraining)
            {
                Mark(draining.Stream, ref point);
            }
        }

        return point?.Seal(cancellationToken) ?? default;
    }

    public bool QueryEvent(ulong evt) => Event(evt).IsComplete;

    public float EventElapsedMilliseconds(ulong start, ulong end)
    {
        ContextEvent a = Event(start), b = Event(end);
        if (!a.WasRecorded || !b.WasRecorded)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, "both events must have been recorded before their elapsed time can be read");
        }

        if (!a.IsComplete || !b.IsComplete)
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
        => !IsClosed && _streams.TryGetValue(stream, out var s) && s.IsIdle && DefaultOrderIsIdle(s) && Volatile.Read(ref _sticky) is null;

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

    private void AddStream(ulong id, WorkStream stream)
    {
        lock (_streamsGate)
        {
            _streams[id] = stream;
            _liveStreams = [.. _liveStreams, stream];
        }
    }

    /// <summary>Has <paramref name="stream"/> reach what is queued on it so far: adds a marker to <paramref name="point"/>, unless the stream is idle.</summary>
    private void Mark(WorkStream stream, ref SyncPoint? point)
    {
        if (stream.IsIdle)
        {
            return;
        }

        point ??= Pools.Syncs.Rent().Begin();
        point.Expect();
        stream.Enqueue(Pools.Markers.Rent().Init(point));
    }

    /// <summary>
    /// The stream an op goes on; null when it goes on none. With no such stream to keep order on, the failure is pending
    /// from now; on a closed (or unusable) context, the failure is queued in the stream's order.
    /// </summary>
    private WorkStream? StreamFor(ulong stream, OpTag tag)
    {
        if (!_streams.TryGetValue(stream, out var s))
        {
            Interlocked.CompareExchange(ref _sticky, new StickyError(tag, IsClosed ? ContextErrors.Closed() : ContextErrors.NoStream(stream)), null);
            return null;
        }

        try
        {
            ThrowIfClosed();
        }
        catch (DeviceException ex)
        {
            s.Enqueue(new FailedWork(tag, ex));
            return null;
        }

        OrderWithDefaultStream(s, tag);
        return s;
    }
}

/// <summary>A stream the client destroyed whose queued work has still to run out, and the task of its end.</summary>
internal readonly record struct DrainingStream(WorkStream Stream, Task Drained);
