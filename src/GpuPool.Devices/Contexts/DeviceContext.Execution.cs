using System.Runtime.CompilerServices;
using GpuPool.Devices.Streams;

namespace GpuPool.Devices.Contexts;

/// <summary>Running one item of a stream's work, which its stream calls for each item in order.</summary>
internal sealed partial class DeviceContext
{
    /// <summary>
    /// Waits for what the item waits on, skips device work while an error is pending or the context is closed, holds a
    /// fair-share slot while the work runs, and keeps its failure. Never throws. Every wait goes through the stream
    /// (<see cref="WorkStream.WaitAsync"/>), so on a stream with a thread of its own this completes before it returns.
    /// </summary>
    /// <remarks>
    /// Its state machine comes from a pool when it waits, and goes back when the stream takes the result: running an
    /// item allocates nothing. <paramref name="work"/> goes back to its pool in the end (<see cref="StreamWork.Finish"/>),
    /// so nothing here touches it after.
    /// </remarks>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    internal async ValueTask ExecuteAsync(StreamWork work, WorkStream stream)
    {
        try
        {
            await stream.WaitAsync(work.WaitBeforeAsync(this)).ConfigureAwait(false);

            if (!work.IsDeviceWork)
            {
                await work.RunAsync(this, stream).ConfigureAwait(false);
                return;
            }

            var pending = Volatile.Read(ref _sticky);
            if (pending is not null || IsClosed)
            {
                // Device work after a failure is skipped until the failure is reported; a copy to the host reports it
                // itself, since the client is waiting on it.
                if (work is CopyToHostWork)
                {
                    work.Fail(TakeError() ?? pending ?? new StickyError(work.Tag, ContextErrors.Closed()));
                }

                return;
            }

            var cost = work.SlotCost(this);
            if (cost > 0)
            {
                await stream.WaitAsync(_leases.Dispatcher.AcquireAsync(_account, cost)).ConfigureAwait(false);
            }

            try
            {
                await work.RunAsync(this, stream).ConfigureAwait(false);
            }
            finally
            {
                if (cost > 0)
                {
                    _leases.Dispatcher.Release();
                }
            }
        }
        catch (DeviceException ex)
        {
            Failed(work, ex);
        }
        catch (Exception ex)
        {
            // Whatever went wrong, the stream must go on and the client must hear of it: an escaping exception would
            // leave the stream's worker dead and every later sync hanging.
            Failed(work, new DeviceException(DeviceErrorCode.LaunchFailed, $"{work.Tag.Op} failed: {ex.Message}", ex));
        }
        finally
        {
            work.Finish();
        }
    }

    private void Failed(StreamWork work, DeviceException ex)
    {
        var error = new StickyError(work.Tag, ex);
        if (work is CopyToHostWork)
        {
            // The client is waiting on this copy: it gets the error directly, nothing stays sticky.
            work.Fail(error);
            return;
        }

        Interlocked.CompareExchange(ref _sticky, error, null);
    }
}
