using GpuPool.Devices.Contexts;

namespace GpuPool.Devices.Streams;

/// <summary>
/// One item of work on a stream, which its context runs when the stream reaches it (<see cref="DeviceContext.StreamRunner"/>).
/// Device work is skipped while a sticky error is pending; bookkeeping (markers, event records and waits) always runs.
/// </summary>
internal abstract class StreamWork
{
    public OpTag Tag { get; protected set; }

    /// <summary>False for bookkeeping: it runs even while an error is pending, and takes no fair-share slot.</summary>
    public virtual bool IsDeviceWork => true;

    /// <summary>What to wait for before the work runs (an event recorded on another stream); completed when nothing.</summary>
    public virtual ValueTask WaitBeforeAsync(DeviceContext context) => default;

    /// <summary>Whether it runs holding one of the device's execution slots, timed and charged to its lease.</summary>
    public virtual bool TakesSlot(DeviceContext context) => false;

    public virtual void Run(DeviceContext context, WorkStream stream)
    {
    }

    /// <summary>Runs work that may wait without holding a thread (a copy to the host draining into a connection).</summary>
    public virtual ValueTask RunAsync(DeviceContext context, WorkStream stream)
    {
        Run(context, stream);
        return default;
    }

    /// <summary>Called instead of a successful run when the work is skipped or fails; <paramref name="error"/> is what the client will see.</summary>
    public virtual void Fail(StickyError error)
    {
    }

    /// <summary>
    /// Called once the work has run, failed or been skipped: releases what it holds. The caller lets go of the item
    /// then, since a pooled item goes back to its pool and is reused.
    /// </summary>
    public virtual void Finish()
    {
    }
}

/// <summary>
/// Work that a context keeps in a pool of its own and reuses: <see cref="Finish"/> gives it back, so nothing may refer to
/// it after (in particular, no state that outlives the run, such as an event's record, lives in the item).
/// </summary>
internal abstract class PooledWork<TSelf>(WorkPool<TSelf> pool) : StreamWork
    where TSelf : PooledWork<TSelf>
{
    public sealed override void Finish()
    {
        Release();
        pool.Return((TSelf)this);
    }

    /// <summary>Lets go of what the run held (and completes what waits on it) before the item goes back.</summary>
    protected abstract void Release();
}

/// <summary>A failure found when the op was enqueued: it becomes the sticky error when the stream reaches it, keeping op order.</summary>
internal sealed class FailedWork : StreamWork
{
    private readonly DeviceException _error;

    public FailedWork(OpTag tag, DeviceException error)
    {
        Tag = tag;
        _error = error;
    }

    public override void Run(DeviceContext context, WorkStream stream) => throw _error;
}

/// <summary>Arrives at its synchronize point when the stream reaches it: a synchronize of the stream (or of all of them).</summary>
internal sealed class MarkerWork(WorkPool<MarkerWork> pool) : PooledWork<MarkerWork>(pool)
{
    private SyncPoint? _point;

    public override bool IsDeviceWork => false;

    public MarkerWork Init(SyncPoint point)
    {
        _point = point;
        return this;
    }

    protected override void Release()
    {
        var point = _point!;
        _point = null;
        point.Arrive();
    }
}

/// <summary>Event record: the backend records the event when the stream reaches it, and then the record (its generation) completes.</summary>
internal sealed class RecordWork(WorkPool<RecordWork> pool) : PooledWork<RecordWork>(pool)
{
    private ContextEvent? _event;
    private long _generation;
    private IContextRuntime? _runtime;

    public override bool IsDeviceWork => false;

    public RecordWork Init(OpTag tag, ContextEvent evt, long generation, IContextRuntime runtime)
    {
        Tag = tag;
        _event = evt;
        _generation = generation;
        _runtime = runtime;
        return this;
    }

    public override void Run(DeviceContext context, WorkStream stream) => _event!.Record(_runtime!, stream, context.IsClosed);

    protected override void Release()
    {
        var (evt, runtime) = (_event!, _runtime!);
        (_event, _runtime) = (null, null);
        evt.RecordFinished(runtime, _generation);
    }
}

/// <summary>
/// Stream wait event: the stream goes on once the event's record (the latest as of the wait call) has completed. Records
/// complete on the host only once the device has reached them, so waiting on the host keeps the device's order too.
/// </summary>
internal sealed class WaitEventWork(WorkPool<WaitEventWork> pool) : PooledWork<WaitEventWork>(pool)
{
    private ContextEvent? _event;
    private long _generation;

    public override bool IsDeviceWork => false;

    public WaitEventWork Init(OpTag tag, ContextEvent evt, long generation)
    {
        Tag = tag;
        _event = evt;
        _generation = generation;
        return this;
    }

    public override ValueTask WaitBeforeAsync(DeviceContext context) => _event!.WaitAsync(_generation, context.Pools.Syncs, resumeInline: true, CancellationToken.None);

    protected override void Release() => _event = null;
}
