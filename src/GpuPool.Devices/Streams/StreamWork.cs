using GpuPool.Devices.Contexts;

namespace GpuPool.Devices.Streams;

/// <summary>
/// One item of work on a stream, which its context runs when the stream reaches it (<see cref="DeviceContext.ExecuteAsync"/>).
/// Device work is skipped while a sticky error is pending; bookkeeping (markers, event records and waits) always runs.
/// </summary>
internal abstract class StreamWork(OpTag tag)
{
    public OpTag Tag { get; } = tag;

    /// <summary>False for bookkeeping: it runs even while an error is pending, and takes no fair-share slot.</summary>
    public virtual bool IsDeviceWork => true;

    /// <summary>Something to wait for before the work runs (an event recorded on another stream).</summary>
    public virtual Task? WaitBefore => null;

    /// <summary>Cost for the fair-share dispatcher; 0 takes no slot.</summary>
    public virtual double SlotCost(DeviceContext context) => 0;

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

    /// <summary>Called once the work has run, failed or been skipped: releases what it holds.</summary>
    public virtual void Finish()
    {
    }
}

/// <summary>A failure found when the op was enqueued: it becomes the sticky error when the stream reaches it, keeping op order.</summary>
internal sealed class FailedWork(OpTag tag, DeviceException error) : StreamWork(tag)
{
    public override void Run(DeviceContext context, WorkStream stream) => throw error;
}

/// <summary>Completes when the stream reaches it: stream synchronize.</summary>
internal sealed class MarkerWork() : StreamWork(default)
{
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task Done => _done.Task;

    public override bool IsDeviceWork => false;

    public override void Finish() => _done.TrySetResult();
}

/// <summary>Event record: the backend records the event when the stream reaches it, and then the event's task completes.</summary>
internal sealed class RecordWork(OpTag tag, ContextEvent evt, TaskCompletionSource completion, IContextRuntime runtime) : StreamWork(tag)
{
    public override bool IsDeviceWork => false;

    public override void Run(DeviceContext context, WorkStream stream) => evt.Record(runtime, stream, context.IsClosed);

    public override void Finish()
    {
        evt.RecordFinished(runtime);
        completion.TrySetResult();
    }
}

/// <summary>
/// Stream wait event: the stream goes on once the event's record (as of the wait call) has completed. Records complete
/// on the host only once the device has reached them, so waiting on the host keeps the device's order too.
/// </summary>
internal sealed class WaitEventWork(OpTag tag, Task recorded) : StreamWork(tag)
{
    public override bool IsDeviceWork => false;

    public override Task? WaitBefore => recorded;
}
