using System.Diagnostics;
using GpuPool.Devices.Contexts;

namespace GpuPool.Devices.Streams;

/// <summary>
/// An event of a lease: the backend's event, if it has one, and on the host the task of its latest record, which
/// completes once the recording stream (and so the device) has reached it. An event destroyed while a record is still
/// queued is freed by the last such record, so no record ever reaches a freed event.
/// </summary>
internal sealed class ContextEvent(nint handle)
{
    private readonly Lock _gate = new();
    private volatile Task? _recorded;
    private volatile bool _reached;
    private int _pendingRecords;
    private bool _destroyRequested;
    private bool _destroyed;

    /// <summary>The backend's event (a CUevent); 0 where it has none.</summary>
    public nint Handle { get; } = handle;

    /// <summary>The latest record's task; null when the event was never recorded.</summary>
    public Task? Recorded => _recorded;

    /// <summary>The latest record reached the device (false when it was skipped or failed): only then does it hold a time.</summary>
    public bool Reached => _reached;

    /// <summary>The host's clock when the latest record was reached.</summary>
    public long Timestamp { get; private set; }

    /// <summary>Starts a record that a stream will reach later; its completion is the work's to set.</summary>
    public TaskCompletionSource QueueRecord()
    {
        lock (_gate)
        {
            _pendingRecords++;
        }

        var completion = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _recorded = completion.Task;
        return completion;
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

    /// <summary>A queued record has run, failed or been skipped.</summary>
    public void RecordFinished(IContextRuntime runtime)
    {
        lock (_gate)
        {
            _pendingRecords--;
            if (_destroyRequested && _pendingRecords == 0)
            {
                DestroyHandle(runtime);
            }
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

    private void DestroyHandle(IContextRuntime runtime)
    {
        if (!_destroyed)
        {
            _destroyed = true;
            runtime.DestroyEvent(Handle);
        }
    }
}
