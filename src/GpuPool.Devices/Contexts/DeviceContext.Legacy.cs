using GpuPool.Devices.Streams;

namespace GpuPool.Devices.Contexts;

/// <summary>
/// Stream 0 is CUDA's legacy default stream: work queued on it waits for the work queued before it on every blocking
/// stream, and work queued on a blocking stream waits for the work queued before it on stream 0. Non-blocking streams
/// stand outside this order. Each crossing is an internal event recorded at the end of the stream waited for and a wait
/// on it queued on the other, as a GPU's driver does; a stream that is idle is not waited for, so a program that keeps
/// to one stream (stream 0 or its own) queues nothing more.
/// </summary>
/// <remarks>
/// The crossings are queued under one lock, each a record at the current end of one stream and the wait for it on
/// another, so a wait only ever waits for work queued before it: they cannot wait for each other in a circle.
/// </remarks>
internal sealed partial class DeviceContext
{
    private readonly Lock _legacyGate = new();

    /// <summary>How many times work was queued on stream 0.</summary>
    private long _defaultWork;

    /// <summary>Stream 0's internal event, which blocking streams wait on; made the first time it is needed.</summary>
    private ContextEvent? _defaultMark;

    /// <summary>The value of <see cref="_defaultWork"/> when <see cref="_defaultMark"/> was last recorded, and that record.</summary>
    private long _defaultMarkedAt = -1;
    private long _defaultMarkGeneration;

    /// <summary>Orders the work about to be queued on <paramref name="stream"/> after what it must wait for on the others.</summary>
    private void OrderWithDefaultStream(WorkStream stream, OpTag tag)
    {
        if (stream.Id == 0)
        {
            WaitForBlockingStreams(stream, tag);
        }
        else if (stream.Legacy is { } order)
        {
            WaitForDefaultStream(stream, order, tag);
        }
    }

    /// <summary>Stream 0 waits for the work queued so far on every blocking stream that is not idle.</summary>
    private void WaitForBlockingStreams(WorkStream defaultStream, OpTag tag)
    {
        lock (_legacyGate)
        {
            _defaultWork++;
            foreach (var s in _liveStreams)
            {
                if (s.Legacy is { Pending: true } order)
                {
                    order.Pending = false;
                    if (!s.IsIdle)
                    {
                        var mark = order.Mark ??= new ContextEvent(Runtime.CreateEvent());
                        var generation = mark.QueueRecord();
                        s.Enqueue(Pools.Records.Rent().Init(tag, mark, generation, Runtime));
                        defaultStream.Enqueue(Pools.EventWaits.Rent().Init(tag, mark, generation));
                    }
                }
            }
        }
    }

    /// <summary>A blocking stream waits for the work queued so far on stream 0, unless it already does or stream 0 is idle.</summary>
    private void WaitForDefaultStream(WorkStream stream, LegacyOrder order, OpTag tag)
    {
        lock (_legacyGate)
        {
            order.Pending = true;
            if (order.SeenDefaultWork == _defaultWork)
            {
                return;
            }

            order.SeenDefaultWork = _defaultWork;
            var defaultStream = _defaultStream;
            if (defaultStream.IsIdle)
            {
                return;
            }

            // One record of stream 0's event serves every blocking stream that waits for the same work.
            var mark = _defaultMark ??= new ContextEvent(Runtime.CreateEvent());
            if (_defaultMarkedAt != _defaultWork)
            {
                _defaultMarkedAt = _defaultWork;
                _defaultMarkGeneration = mark.QueueRecord();
                defaultStream.Enqueue(Pools.Records.Rent().Init(tag, mark, _defaultMarkGeneration, Runtime));
            }

            stream.Enqueue(Pools.EventWaits.Rent().Init(tag, mark, _defaultMarkGeneration));
        }
    }

    /// <summary>
    /// A blocking stream being destroyed: stream 0's later work still waits for what it has queued (which runs on), and
    /// its event goes once its last record has.
    /// </summary>
    private void LeaveDefaultOrder(WorkStream stream)
    {
        if (stream.Legacy is not { } order)
        {
            return;
        }

        lock (_legacyGate)
        {
            if (order.Pending && !stream.IsIdle)
            {
                var mark = order.Mark ??= new ContextEvent(Runtime.CreateEvent());
                var generation = mark.QueueRecord();
                var tag = new OpTag(0, "stream_destroy");
                stream.Enqueue(Pools.Records.Rent().Init(tag, mark, generation, Runtime));
                _defaultStream.Enqueue(Pools.EventWaits.Rent().Init(tag, mark, generation));
            }

            order.Pending = false;
            order.Mark?.Destroy(Runtime);
            stream.Legacy = null;
        }
    }

    /// <summary>
    /// A copy written straight into device memory on <paramref name="stream"/> now, outside its queue, keeps the default
    /// stream's order only when what it would wait for is idle too.
    /// </summary>
    private bool DefaultOrderIsIdle(WorkStream stream)
    {
        if (stream.Id != 0)
        {
            return stream.Legacy is null || _defaultStream.IsIdle;
        }

        foreach (var s in _liveStreams)
        {
            if (s.Legacy is not null && !s.IsIdle)
            {
                return false;
            }
        }

        return true;
    }
}
