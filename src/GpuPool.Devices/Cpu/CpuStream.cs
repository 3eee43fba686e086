using System.Collections.Concurrent;
using GpuPool.Devices.Contexts;
using GpuPool.Devices.Streams;

namespace GpuPool.Devices.Cpu;

/// <summary>
/// A cpu context's stream: a queue drained on the thread pool by one worker at a time, which waits for what an item waits
/// on (an event, a fair-share slot, a connection taking a copy) without holding a thread, and goes on through the thread
/// pool once it has come. The stream is its own thread-pool work item and continuation, and its runner is reused for each
/// item, so draining it allocates nothing.
/// </summary>
internal sealed class CpuStream : WorkStream, IThreadPoolWorkItem
{
    private readonly ConcurrentQueue<StreamWork> _queue = new();
    private readonly DeviceContext _owner;
    private readonly DeviceContext.StreamRunner _runner;
    private int _running;

    public CpuStream(DeviceContext owner, ulong id)
        : base(id, 0)
    {
        _owner = owner;
        _runner = owner.RunnerFor(this);
    }

    /// <summary>
    /// Only the session enqueues (its first connection, or the connections landing the chunks of its one striped copy
    /// in progress), so this stays true until it does.
    /// </summary>
    public override bool IsIdle => Volatile.Read(ref _running) == 0 && _queue.IsEmpty;

    public override bool HasQueued => !_queue.IsEmpty;

    public override void Enqueue(StreamWork work)
    {
        _queue.Enqueue(work);
        if (Interlocked.CompareExchange(ref _running, 1, 0) == 0)
        {
            ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
        }
    }

    /// <summary>Nothing to free: the stream is done once its queue has run.</summary>
    public override Task Drain(bool destroyed) => _owner.SynchronizeStreamAsync(this, CancellationToken.None).AsTask();

    public override ValueTask WaitAsync(ValueTask pending) => pending;

    /// <summary>
    /// The queue goes on through the thread pool, so the next kernels run on no thread of a socket's (whose send ended a
    /// copy's wait), and no chain of waits grows a stack.
    /// </summary>
    public override void ResumeAfterWait() => ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: true);

    void IThreadPoolWorkItem.Execute() => RunQueue();

    /// <summary>Runs items until the queue is empty, or until one waits: the stream goes on once it is done (<see cref="ResumeAfterWait"/>).</summary>
    private void RunQueue()
    {
        while (true)
        {
            while (_queue.TryDequeue(out var work))
            {
                if (!_runner.TryRun(work))
                {
                    return;
                }
            }

            // A full fence, not a release store: the queue must be read again only once the cleared flag is visible, or
            // an Enqueue between the two can see the flag still set and not schedule, while this sees the queue still
            // empty and returns, stranding its item (a synchronize that never completed, once in about 10^5 waits).
            Interlocked.Exchange(ref _running, 0);

            // Work enqueued after the queue looked empty but before the flag cleared must not be stranded.
            if (_queue.IsEmpty || Interlocked.CompareExchange(ref _running, 1, 0) != 0)
            {
                return;
            }
        }
    }
}
