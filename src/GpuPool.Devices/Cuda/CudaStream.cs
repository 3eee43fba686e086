using GpuPool.Devices.Contexts;
using GpuPool.Devices.Cuda.Native;
using GpuPool.Devices.Streams;

namespace GpuPool.Devices.Cuda;

/// <summary>
/// One stream of a lease: a CUDA stream and a dedicated thread that has the lease's context current for its whole
/// life and runs the stream's work in order, one item at a time. Each stream has its own thread so that a stream
/// waiting for another's event, or for a slow kernel, never holds the others up.
/// </summary>
internal sealed class CudaStream : WorkStream
{
    private readonly DeviceContext.StreamRunner _runner;
    private readonly nint _context;
    private readonly Queue<StreamWork> _queue = new();
    private readonly object _gate = new();
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private bool _stopping;
    private bool _destroyHandle;
    private bool _finished;
    private bool _resumed;

    /// <summary>Takes over <paramref name="handle"/> (a CUstream of <paramref name="context"/>) and starts the stream's thread.</summary>
    public CudaStream(DeviceContext owner, nint context, string threadName, ulong id, nint handle)
        : base(id, handle)
    {
        _runner = owner.RunnerFor(this);
        _context = context;
        var thread = new Thread(Run) { IsBackground = true, Name = threadName };
        thread.Start();
    }

    public override bool HasQueued
    {
        get
        {
            lock (_gate)
            {
                return _queue.Count > 0;
            }
        }
    }

    public override void Enqueue(StreamWork work)
    {
        lock (_gate)
        {
            if (!_finished)
            {
                _queue.Enqueue(work);
                Monitor.Pulse(_gate);
                return;
            }
        }

        // The thread has ended (the context is closing): the work cannot run, but whoever waits on it must hear.
        work.Fail(new StickyError(work.Tag, ContextErrors.Closed()));
        work.Finish();
    }

    /// <summary>The thread ends once its queue is empty, destroying the CUDA stream first if the client destroyed it.</summary>
    public override Task Drain(bool destroyed)
    {
        lock (_gate)
        {
            _stopping = true;
            _destroyHandle = destroyed;
            Monitor.PulseAll(_gate);
        }

        return _exited.Task;
    }

    /// <summary>Never called while every wait blocks (<see cref="WaitAsync"/>); should an item wait all the same, its thread waits for it.</summary>
    public override void ResumeAfterWait()
    {
        lock (_gate)
        {
            _resumed = true;
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>Blocks: every driver call of the item must be made on this thread, where the context is current.</summary>
    public override ValueTask WaitAsync(ValueTask pending)
    {
        if (pending.IsCompleted)
        {
            pending.GetAwaiter().GetResult();
        }
        else
        {
            pending.AsTask().GetAwaiter().GetResult();
        }

        return default;
    }

    private void Run()
    {
        // Every driver call of this thread acts on the lease's context: set it once, for the thread's life.
        var current = CuApi.cuCtxSetCurrent(_context);
        try
        {
            while (true)
            {
                StreamWork work;
                lock (_gate)
                {
                    while (_queue.Count == 0 && !_stopping)
                    {
                        Monitor.Wait(_gate);
                    }

                    if (_queue.Count == 0)
                    {
                        _finished = true;
                        break;
                    }

                    work = _queue.Dequeue();
                }

                // Should setting the context have failed, each item's own driver calls fail and report it. Every wait
                // blocks (WaitAsync), so the item has run to its end here.
                if (!_runner.TryRun(work))
                {
                    lock (_gate)
                    {
                        while (!_resumed)
                        {
                            Monitor.Wait(_gate);
                        }

                        _resumed = false;
                    }
                }
            }

            if (_destroyHandle && current == CudaErrors.Success)
            {
                _ = CuApi.cuStreamDestroy_v2(Handle);
            }
        }
        finally
        {
            lock (_gate)
            {
                _finished = true;
            }

            _ = CuApi.cuCtxSetCurrent(0);
            _exited.TrySetResult();
        }
    }
}
