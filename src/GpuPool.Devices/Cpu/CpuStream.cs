using System.Collections.Concurrent;
using GpuPool.Devices.Contexts;
using GpuPool.Devices.Streams;

namespace GpuPool.Devices.Cpu;

/// <summary>
/// A cpu context's stream: a queue drained on the thread pool by one worker at a time, which waits for what an item waits
/// on (an event, a fair-share slot, a connection taking a copy) without holding a thread. The stream is its own thread-pool
/// work item and its own continuation, so draining it allocates nothing.
/// </summary>
internal sealed class CpuStream : WorkStream, IThreadPoolWorkItem
{
    private readonly ConcurrentQueue<StreamWork> _queue = new();
    private readonly DeviceContext _owner;
    private readonly Action _resume;
    private ValueTask _waiting;
    private int _running;

    public CpuStream(DeviceContext owner, ulong id)
        : base(id, 0)
    {
        _owner = owner;
        _resume = Resume;
    }

    /// <summary>
    /// Only the session enqueues (its first connection, or the connections landing the chunks of its one striped copy
    /// in progress), so this stays true until it does.
    /// </summary>
    public override bool IsIdle => Volatile.Read(ref _running) == 0 && _queue.IsEmpty;

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

    void IThreadPoolWorkItem.Execute() => RunQueue();

    /// <summary>Runs items until the queue is empty, or until one waits: its completion then carries on (<see cref="Resume"/>).</summary>
    private void RunQueue()
    {
        while (true)
        {
            while (_queue.TryDequeue(out var work))
            {
                var run = _owner.ExecuteAsync(work, this);
                if (!run.IsCompleted)
                {
                    _waiting = run;
                    run.ConfigureAwait(false).GetAwaiter().UnsafeOnCompleted(_resume);
                    return;
                }

                // Hands a pooled run back (ExecuteAsync never throws).
                run.GetAwaiter().GetResult();
            }

            Volatile.Write(ref _running, 0);

            // Work enqueued after the queue looked empty but before the flag cleared must not be stranded.
            if (_queue.IsEmpty || Interlocked.CompareExchange(ref _running, 1, 0) != 0)
            {
                return;
            }
        }
    }

    private void Resume()
    {
        var run = _waiting;
        _waiting = default;
        run.GetAwaiter().GetResult();
        RunQueue();
    }
}
