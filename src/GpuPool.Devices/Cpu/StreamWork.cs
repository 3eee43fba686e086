using System.Collections.Concurrent;
using System.Diagnostics;

namespace GpuPool.Devices.Cpu;

/// <summary>One item of work on a stream. Device work is skipped while a sticky error is pending.</summary>
internal abstract class StreamWork(OpTag tag)
{
    public OpTag Tag { get; } = tag;

    /// <summary>Estimated cost for the fair-share dispatcher; 0 means "not device work" (no slot needed, never skipped).</summary>
    public virtual double Cost => 1;

    public virtual void Run(CpuContext context)
    {
    }

    /// <summary>Runs device work that may wait without holding a thread (a copy to the host draining into a connection).</summary>
    public virtual ValueTask RunAsync(CpuContext context)
    {
        Run(context);
        return default;
    }

    /// <summary>Called instead of <see cref="Run"/> when the work is skipped or fails; <paramref name="error"/> is what the client will see.</summary>
    public virtual void Fail(StickyError error, bool ownFailure)
    {
    }

    /// <summary>Called once the work has run, failed or been skipped: releases what it holds.</summary>
    public virtual void Finish()
    {
    }

    /// <summary>Non-device work that waits for something (an event) before the stream goes on.</summary>
    public virtual Task? WaitBefore => null;
}

/// <summary>A failure found when the op was enqueued: it becomes the sticky error when the stream reaches it, keeping op order.</summary>
internal sealed class FailedWork(OpTag tag, DeviceException error) : StreamWork(tag)
{
    public DeviceException Error { get; } = error;

    public override void Run(CpuContext context) => throw Error;
}

/// <summary>Completes when the stream reaches it: stream synchronize.</summary>
internal sealed class MarkerWork() : StreamWork(default)
{
    public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override double Cost => 0;

    public override void Run(CpuContext context) => Done.TrySetResult();

    public override void Fail(StickyError error, bool ownFailure) => Done.TrySetResult();
}

/// <summary>Event record: completes the event with a timestamp when the stream reaches it.</summary>
internal sealed class RecordWork(OpTag tag, TaskCompletionSource<long> completion) : StreamWork(tag)
{
    public override double Cost => 0;

    public override void Run(CpuContext context) => completion.TrySetResult(Stopwatch.GetTimestamp());

    public override void Fail(StickyError error, bool ownFailure) => completion.TrySetResult(Stopwatch.GetTimestamp());
}

/// <summary>Stream wait event: the stream goes on once the event's record (as of the wait call) has completed.</summary>
internal sealed class WaitEventWork(OpTag tag, Task recorded) : StreamWork(tag)
{
    public override double Cost => 0;

    public override Task? WaitBefore => recorded;
}

/// <summary>
/// An ordered queue of work drained by one worker at a time, so work on a stream runs in order while
/// different streams run concurrently.
/// </summary>
internal sealed class CpuStream(CpuContext context, ulong id)
{
    private readonly ConcurrentQueue<StreamWork> _queue = new();
    private int _running;

    public ulong Id { get; } = id;

    /// <summary>
    /// Nothing queued and nothing running. Only the session enqueues (its first connection, or the connections landing
    /// the chunks of its one striped copy in progress), so this stays true until it does.
    /// </summary>
    public bool IsIdle => Volatile.Read(ref _running) == 0 && _queue.IsEmpty;

    public void Enqueue(StreamWork work)
    {
        _queue.Enqueue(work);
        if (Interlocked.CompareExchange(ref _running, 1, 0) == 0)
        {
            ThreadPool.UnsafeQueueUserWorkItem(static s => _ = s.DrainAsync(), this, preferLocal: false);
        }
    }

    /// <summary>A task that completes when all work enqueued so far has run.</summary>
    public Task Marker()
    {
        var marker = new MarkerWork();
        Enqueue(marker);
        return marker.Done.Task;
    }

    private async Task DrainAsync()
    {
        while (true)
        {
            while (_queue.TryDequeue(out var work))
            {
                await context.ExecuteAsync(work).ConfigureAwait(false);
            }

            Volatile.Write(ref _running, 0);

            // Work enqueued after the queue looked empty but before the flag cleared must not be stranded.
            if (_queue.IsEmpty || Interlocked.CompareExchange(ref _running, 1, 0) != 0)
            {
                return;
            }
        }
    }
}
