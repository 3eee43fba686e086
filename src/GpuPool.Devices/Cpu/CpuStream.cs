using System.Collections.Concurrent;
using GpuPool.Devices.Contexts;
using GpuPool.Devices.Streams;

namespace GpuPool.Devices.Cpu;

/// <summary>
/// A cpu context's stream: a queue drained on the thread pool by one worker at a time, which awaits what an item waits
/// on (an event, a fair-share slot) without holding a thread.
/// </summary>
internal sealed class CpuStream(DeviceContext owner, ulong id) : WorkStream(id, 0)
{
    private readonly ConcurrentQueue<StreamWork> _queue = new();
    private int _running;

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
            ThreadPool.UnsafeQueueUserWorkItem(static s => _ = s.RunQueueAsync(), this, preferLocal: false);
        }
    }

    /// <summary>Nothing to free: the stream is done once its queue has run.</summary>
    public override Task Drain(bool destroyed) => Marker();

    public override ValueTask WaitAsync(ValueTask pending) => pending;

    private async Task RunQueueAsync()
    {
        while (true)
        {
            while (_queue.TryDequeue(out var work))
            {
                await owner.ExecuteAsync(work, this).ConfigureAwait(false);
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
