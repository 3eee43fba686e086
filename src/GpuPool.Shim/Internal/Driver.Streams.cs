using GpuPool.Client;

namespace GpuPool.Shim.Internal;

/// <summary>Streams as the exports name them, and the device-to-host copies still arriving on them.</summary>
internal sealed partial class Driver
{
    private readonly List<(ulong Stream, Task Copy)> _pendingCopies = [];
    private readonly Dictionary<ulong, QueryState> _queries = [];

    /// <summary>
    /// What cuStreamQuery knows of a stream: whether work went to it since the last probe, and whether a probe event
    /// recorded on it has yet to be seen complete.
    /// </summary>
    private sealed class QueryState
    {
        public bool Dirty { get; set; }

        public bool ProbePending { get; set; }

        public DeviceEvent? Probe { get; set; }
    }

    /// <summary>
    /// The broker's stream for a CUstream, to queue work on or synchronize: NULL, CU_STREAM_LEGACY and
    /// CU_STREAM_PER_THREAD are the default stream; anything else must be a live stream handle, else
    /// CUDA_ERROR_INVALID_HANDLE. Waits first for the host functions queued on that stream to return, so that work
    /// queued after one never starts before it.
    /// </summary>
    public DeviceStream ResolveStream(nint handle)
    {
        var stream = ResolveStreamNoWait(handle);
        WaitHostCalls(stream);
        return stream;
    }

    /// <summary>As <see cref="ResolveStream"/>, without waiting for host functions (queries, and queuing another host function).</summary>
    public DeviceStream ResolveStreamNoWait(nint handle)
    {
        if (handle is 0 or 1 or 2)
        {
            return DeviceStream.Default;
        }

        return ResolveStreamObject(handle).Remote;
    }

    public StreamObject ResolveStreamObject(nint handle)
    {
        if (!Streams.TryGet(handle, out var stream))
        {
            throw new CudaException(CuResult.InvalidHandle, $"0x{(ulong)handle:x} is not a stream (never created, destroyed, or its context was destroyed)");
        }

        return stream;
    }

    public EventObject ResolveEvent(nint handle)
    {
        if (handle == 0 || !Events.TryGet(handle, out var evt))
        {
            throw new CudaException(CuResult.InvalidHandle, $"0x{(ulong)handle:x} is not an event (never created, destroyed, or its context was destroyed)");
        }

        return evt;
    }

    /// <summary>Notes that work went to <paramref name="stream"/>, so the next cuStreamQuery must ask the broker.</summary>
    public void NoteWork(DeviceStream stream)
    {
        lock (_queries)
        {
            State(stream).Dirty = true;
        }
    }

    /// <summary>The stream has been synchronized: nothing on it is pending.</summary>
    public void NoteIdle(DeviceStream stream)
    {
        lock (_queries)
        {
            var state = State(stream);
            state.Dirty = false;
            state.ProbePending = false;
        }
    }

    /// <summary>
    /// cuStreamQuery without blocking: the wire has no stream query, so when work went to the stream since the last
    /// probe, a probe event is recorded after it; the stream is idle once the probe has completed. A program that
    /// polls gets NOT_READY until then, and SUCCESS at once when nothing was submitted.
    /// </summary>
    public bool QueryStream(DeviceStream stream)
    {
        DeviceEvent probe;
        bool record;
        lock (_queries)
        {
            var state = State(stream);
            if (!state.Dirty && !state.ProbePending)
            {
                return true;
            }

            record = state.Dirty;
            probe = state.Probe ??= Wait(Session.CreateEventAsync(), "cuStreamQuery");
            state.Dirty = false;
            state.ProbePending = true;
        }

        if (record)
        {
            Wait(Session.RecordEventAsync(probe, stream), "cuStreamQuery");
        }

        var ready = Wait(Session.QueryEventAsync(probe), "cuStreamQuery");
        if (ready)
        {
            lock (_queries)
            {
                State(stream).ProbePending = false;
            }
        }

        return ready;
    }

    /// <summary>The whole context has been synchronized.</summary>
    public void NoteAllIdle()
    {
        lock (_queries)
        {
            foreach (var state in _queries.Values)
            {
                state.Dirty = false;
                state.ProbePending = false;
            }
        }
    }

    /// <summary>The probe event of a stream being destroyed, to destroy with it.</summary>
    public DeviceEvent? ForgetStream(DeviceStream stream)
    {
        lock (_queries)
        {
            return _queries.Remove(stream.Id, out var state) ? state.Probe : null;
        }
    }

    private QueryState State(DeviceStream stream)
    {
        if (!_queries.TryGetValue(stream.Id, out var state))
        {
            _queries[stream.Id] = state = new QueryState();
        }

        return state;
    }

    /// <summary>An asynchronous copy to the host in flight: its bytes land in the program's buffer as they arrive.</summary>
    public void TrackCopy(DeviceStream stream, Task copy)
    {
        lock (_pendingCopies)
        {
            _pendingCopies.RemoveAll(static p => p.Copy.IsCompletedSuccessfully);
            _pendingCopies.Add((stream.Id, copy));
        }
    }

    /// <summary>
    /// Waits for the asynchronous copies to the host on <paramref name="stream"/> (all of them when null) and
    /// throws the first one's failure: a synchronizing call reports them as sticky errors, and then a failure the
    /// callback thread took from the broker (<see cref="DeferError"/>).
    /// </summary>
    public void WaitCopies(DeviceStream? stream)
    {
        (ulong Stream, Task Copy)[] waiting;
        lock (_pendingCopies)
        {
            waiting = [.. _pendingCopies.Where(p => stream is not { } s || p.Stream == s.Id)];
            _pendingCopies.RemoveAll(p => stream is not { } s || p.Stream == s.Id);
        }

        foreach (var (_, copy) in waiting)
        {
            Wait(copy, "an asynchronous copy to the host");
        }

        ThrowDeferred();
    }

    /// <summary>
    /// Throws the failure of an asynchronous copy to the host that has already failed, and forgets it: a query
    /// reports it as the driver's does, so a program that polls instead of synchronizing learns of it too.
    /// </summary>
    public void ThrowFailedCopy()
    {
        Task? failed = null;
        lock (_pendingCopies)
        {
            var i = _pendingCopies.FindIndex(static p => p.Copy.IsFaulted || p.Copy.IsCanceled);
            if (i >= 0)
            {
                failed = _pendingCopies[i].Copy;
                _pendingCopies.RemoveAt(i);
            }
        }

        if (failed is not null)
        {
            Wait(failed, "an asynchronous copy to the host");
        }
    }

    /// <summary>
    /// Waits for the asynchronous copies to the host on <paramref name="stream"/> and leaves them tracked: a host
    /// function sees their bytes, and the program's next synchronizing call still reports their failure.
    /// </summary>
    public void WaitCopiesKept(DeviceStream stream)
    {
        Task[] waiting;
        lock (_pendingCopies)
        {
            waiting = [.. _pendingCopies.Where(p => p.Stream == stream.Id).Select(p => p.Copy)];
        }

        foreach (var copy in waiting)
        {
            Wait(copy, "an asynchronous copy to the host");
        }
    }
}
