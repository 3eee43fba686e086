using System.Collections.Concurrent;
using GpuPool.Client;

namespace GpuPool.Shim.Internal;

/// <summary>
/// Host functions (cuLaunchHostFunc) and stream callbacks (cuStreamAddCallback), run on the client in stream order.
/// The broker has no host-side work to wait for, so the order is kept here:
/// <list type="bullet">
/// <item>the call queues the function for one dedicated callback thread and returns;</item>
/// <item>that thread synchronizes the stream (so the work queued before the function is complete, and waits for
/// the copies to pinned host memory still landing), then runs the function, holding none of the shim's locks;</item>
/// <item>until the function has returned, every call that would queue work on that stream (a copy, memset, launch,
/// event record, stream wait, free) waits in the caller's thread, and cuStreamSynchronize and cuCtxSynchronize wait
/// for it too; cuStreamQuery answers CUDA_ERROR_NOT_READY.</item>
/// </list>
/// A function that calls CUDA (forbidden by the driver API) gets CUDA_ERROR_NOT_PERMITTED from every call, as the
/// driver answers, so it cannot deadlock on the stream it runs in. Functions run one at a time, in the order queued.
/// </summary>
internal sealed unsafe partial class Driver
{
    [ThreadStatic]
    private static bool t_inHostFunction;

    private readonly object _hostGate = new();
    private readonly Dictionary<ulong, int> _hostPending = [];
    private readonly BlockingCollection<HostCall> _hostCalls = [];
    private readonly object _deferredGate = new();
    private int _hostPendingTotal;
    private Thread? _hostThread;
    private Exception? _deferred;

    /// <summary>A function queued on a stream: cuLaunchHostFunc's fn(userData), or cuStreamAddCallback's callback(hStream, status, userData).</summary>
    private readonly record struct HostCall(DeviceStream Stream, nint StreamHandle, nint Function, nint UserData, bool IsStreamCallback);

    /// <summary>Whether the calling thread is running a host function or stream callback.</summary>
    public static bool InHostFunction => t_inHostFunction;

    /// <summary>Queues <paramref name="function"/> to run once the work queued on <paramref name="stream"/> so far has completed.</summary>
    public void EnqueueHostCall(DeviceStream stream, nint streamHandle, nint function, nint userData, bool isStreamCallback)
    {
        lock (_hostGate)
        {
            _hostPending[stream.Id] = _hostPending.GetValueOrDefault(stream.Id) + 1;
            _hostPendingTotal++;
            if (_hostThread is null)
            {
                _hostThread = new Thread(RunHostCalls) { IsBackground = true, Name = "gpupool-callbacks" };
                _hostThread.Start();
            }
        }

        _hostCalls.Add(new HostCall(stream, streamHandle, function, userData, isStreamCallback));
        NoteWork(stream);
    }

    /// <summary>Whether a host function queued on <paramref name="stream"/> has yet to return.</summary>
    public bool HostCallsPending(DeviceStream stream)
    {
        if (Volatile.Read(ref _hostPendingTotal) == 0)
        {
            return false;
        }

        lock (_hostGate)
        {
            return _hostPending.ContainsKey(stream.Id);
        }
    }

    /// <summary>Waits until the host functions queued on <paramref name="stream"/> (on any stream when null) have returned.</summary>
    public void WaitHostCalls(DeviceStream? stream)
    {
        if (Volatile.Read(ref _hostPendingTotal) == 0)
        {
            return;
        }

        lock (_hostGate)
        {
            while (stream is { } s ? _hostPending.ContainsKey(s.Id) : _hostPendingTotal > 0)
            {
                Monitor.Wait(_hostGate);
            }
        }
    }

    /// <summary>
    /// Keeps a failure that a synchronization of the shim's own (the callback thread's) took from the broker, so that
    /// the program's next synchronizing call still reports it, and the stream callbacks before then receive it.
    /// </summary>
    public void DeferError(Exception error)
    {
        lock (_deferredGate)
        {
            _deferred ??= error;
        }
    }

    /// <summary>Throws the deferred failure, once.</summary>
    public void ThrowDeferred()
    {
        Exception? error;
        lock (_deferredGate)
        {
            error = _deferred;
            _deferred = null;
        }

        if (error is not null)
        {
            throw error;
        }
    }

    private CuResult DeferredResult()
    {
        lock (_deferredGate)
        {
            return _deferred is { } e ? Errors.Map(e) : CuResult.Success;
        }
    }

    private void RunHostCalls()
    {
        t_inHostFunction = true;
        foreach (var call in _hostCalls.GetConsumingEnumerable())
        {
            var status = CuResult.Success;
            try
            {
                if (Volatile.Read(ref s_lost) is { } lost)
                {
                    throw new CudaException(CuResult.LaunchFailed, $"the device session is lost ({lost})");
                }

                Wait(Session.SynchronizeStreamAsync(call.Stream), "a host function's stream");
                WaitCopiesKept(call.Stream);
            }
            catch (Exception ex)
            {
                status = Errors.Report(call.IsStreamCallback ? "cuStreamAddCallback" : "cuLaunchHostFunc", ex);
                DeferError(ex);
            }

            if (status == CuResult.Success)
            {
                status = DeferredResult();
            }

            try
            {
                if (call.IsStreamCallback)
                {
                    ((delegate* unmanaged<nint, int, nint, void>)call.Function)(call.StreamHandle, (int)status, call.UserData);
                }
                else if (status == CuResult.Success)
                {
                    // As the driver documents: unlike a stream callback, a host function does not run after an error.
                    ((delegate* unmanaged<nint, void>)call.Function)(call.UserData);
                }
            }
            finally
            {
                lock (_hostGate)
                {
                    if (--_hostPending[call.Stream.Id] == 0)
                    {
                        _hostPending.Remove(call.Stream.Id);
                    }

                    _hostPendingTotal--;
                    Monitor.PulseAll(_hostGate);
                }
            }
        }
    }
}
