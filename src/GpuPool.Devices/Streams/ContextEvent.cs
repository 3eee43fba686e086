using System.Diagnostics;
using GpuPool.Devices.Contexts;

namespace GpuPool.Devices.Streams;

/// <summary>
/// An event of a lease: the backend's event, if it has one, and on the host the state of its records. Each record is the
/// next generation of the event and completes once the recording stream (and so the device) has reached it; a wait
/// (a stream waiting on the event, an event synchronize) waits for the generation that was the latest when it was asked
/// for, as CUDA's do, whatever is recorded after. An event destroyed while a record is still queued is freed by the last
/// such record, so no record ever reaches a freed event.
/// </summary>
internal sealed class ContextEvent(nint handle)
{
    private readonly Lock _gate = new();

    /// <summary>The latest record's generation; 0 while the event was never recorded.</summary>
    private long _latest;

    /// <summary>Every record up to this generation has completed.</summary>
    private long _completedThrough;

    /// <summary>Records past <see cref="_completedThrough"/> that completed before an earlier one (one event recorded on several streams).</summary>
    private List<long>? _completedAhead;

    /// <summary>Waits for records not yet completed, linked through their points.</summary>
    private SyncPoint? _waiters;

    private volatile bool _reached;
    private int _pendingRecords;
    private bool _destroyRequested;
    private bool _destroyed;

    /// <summary>The backend's event (a CUevent); 0 where it has none.</summary>
    public nint Handle { get; } = handle;

    public bool WasRecorded
    {
        get
        {
            lock (_gate)
            {
                return _latest != 0;
            }
        }
    }

    /// <summary>The latest record has completed; true for an event never recorded, as in CUDA.</summary>
    public bool IsComplete
    {
        get
        {
            lock (_gate)
            {
                return IsDone(_latest);
            }
        }
    }

    /// <summary>The generation a wait asked for now waits for: the latest record's (0, complete, when never recorded).</summary>
    public long Latest
    {
        get
        {
            lock (_gate)
            {
                return _latest;
            }
        }
    }

    /// <summary>The latest record reached the device (false when it was skipped or failed): only then does it hold a time.</summary>
    public bool Reached => _reached;

    /// <summary>The host's clock when the latest record was reached.</summary>
    public long Timestamp { get; private set; }

    /// <summary>Starts a record that a stream will reach later; returns its generation, which the record's work completes.</summary>
    public long QueueRecord()
    {
        lock (_gate)
        {
            _pendingRecords++;
            return ++_latest;
        }
    }

    /// <summary>
    /// Waits until record <paramref name="generation"/> has completed; at once when it has. <paramref name="resumeInline"/>:
    /// the wait goes on on the thread that completes the record (<see cref="SyncPoint.Begin"/>).
    /// </summary>
    public ValueTask WaitAsync(long generation, WorkPool<SyncPoint> points, bool resumeInline, CancellationToken cancellationToken)
    {
        SyncPoint point;
        lock (_gate)
        {
            if (IsDone(generation))
            {
                return default;
            }

            point = points.Rent().Begin(resumeInline);
            point.Expect();
            point.WaitGeneration = generation;
            point.NextWaiter = _waiters;
            _waiters = point;
        }

        return point.Seal(cancellationToken);
    }

    /// <summary>On the recording stream: records the event through the backend, unless the context closed or the client destroyed it.</summary>
    public void Record(IContextRuntime runtime, WorkStream stream, bool closed)
    {
        lock (_gate)
        {
            _reached = false;
            if (closed || _destroyRequested)
            {
                return;
            }

            runtime.RecordEvent(Handle, stream);
            Timestamp = Stopwatch.GetTimestamp();
            _reached = true;
        }
    }

    /// <summary>Record <paramref name="generation"/> has run, failed or been skipped: it is complete, and what waited for it goes on.</summary>
    public void RecordFinished(IContextRuntime runtime, long generation)
    {
        SyncPoint? ready = null;
        lock (_gate)
        {
            _pendingRecords--;
            if (_destroyRequested && _pendingRecords == 0)
            {
                DestroyHandle(runtime);
            }

            MarkDone(generation);
            ref var link = ref _waiters;
            while (link is { } waiter)
            {
                if (IsDone(waiter.WaitGeneration))
                {
                    link = waiter.NextWaiter;
                    waiter.NextWaiter = ready;
                    ready = waiter;
                }
                else
                {
                    link = ref waiter.NextWaiter;
                }
            }
        }

        // Outside the lock; a point may go back to its pool as it arrives, so its link is read first.
        while (ready is { } waiter)
        {
            ready = waiter.NextWaiter;
            waiter.NextWaiter = null;
            waiter.Arrive();
        }
    }

    /// <summary>The client destroyed the event: its backend event goes now, or with the last record still queued.</summary>
    public void Destroy(IContextRuntime runtime)
    {
        lock (_gate)
        {
            _destroyRequested = true;
            if (_pendingRecords == 0)
            {
                DestroyHandle(runtime);
            }
        }
    }

    private bool IsDone(long generation) => generation <= _completedThrough || (_completedAhead?.Contains(generation) ?? false);

    private void MarkDone(long generation)
    {
        if (generation != _completedThrough + 1)
        {
            (_completedAhead ??= []).Add(generation);
            return;
        }

        _completedThrough = generation;
        while (_completedAhead is { Count: > 0 } ahead && ahead.Remove(_completedThrough + 1))
        {
            _completedThrough++;
        }
    }

    private void DestroyHandle(IContextRuntime runtime)
    {
        if (!_destroyed)
        {
            _destroyed = true;
            runtime.DestroyEvent(Handle);
        }
    }
}
