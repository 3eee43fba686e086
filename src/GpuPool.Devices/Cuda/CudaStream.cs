using GpuPool.Devices.Cuda.Native;

namespace GpuPool.Devices.Cuda;

/// <summary>
/// One stream of a lease: a CUDA stream and a dedicated thread that has the lease's context current for its whole
/// life and runs the stream's work in order, one item at a time. Each stream has its own thread so that a stream
/// waiting for another's event, or for a slow kernel, never holds the others up.
/// </summary>
internal sealed class CudaStream
{
    private readonly CudaContext _context;
    private readonly Queue<CudaWork> _queue = new();
    private readonly object _gate = new();
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private bool _stopping;
    private bool _destroyHandle;
    private bool _finished;

    /// <summary>Takes over <paramref name="handle"/> (a CUstream of the context) and starts the stream's thread.</summary>
    public CudaStream(CudaContext context, ulong id, nint handle)
    {
        _context = context;
        Id = id;
        Handle = handle;
        var thread = new Thread(Run) { IsBackground = true, Name = $"gpupool-cuda {context.LeaseId} s{id}" };
        thread.Start();
    }

    public ulong Id { get; }

    public nint Handle { get; }

    /// <summary>Completes when the thread has finished its queue and ended.</summary>
    public Task Exited => _exited.Task;

    public void Enqueue(CudaWork work)
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
        work.Fail(new StickyError(work.Tag, new DeviceException(DeviceErrorCode.ContextClosed, "the lease's device context has been closed")), ownFailure: false);
        work.Finish();
    }

    /// <summary>A task that completes when all work enqueued so far has run.</summary>
    public Task Marker()
    {
        var marker = new CudaMarkerWork();
        Enqueue(marker);
        return marker.Done.Task;
    }

    /// <summary>
    /// Lets the thread end once its queue is empty. <paramref name="destroyHandle"/>: it destroys the CUDA stream
    /// first (a stream destroyed by the client; when the whole context ends, destroying the context frees it).
    /// </summary>
    public void Stop(bool destroyHandle)
    {
        lock (_gate)
        {
            _stopping = true;
            _destroyHandle = destroyHandle;
            Monitor.PulseAll(_gate);
        }
    }

    private void Run()
    {
        // Every driver call of this thread acts on the lease's context: set it once, for the thread's life.
        var current = CuApi.cuCtxSetCurrent(_context.Handle);
        try
        {
            while (true)
            {
                CudaWork work;
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

                // Should setting the context have failed, each item's own driver calls fail and report it.
                _context.Execute(work, this);
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
