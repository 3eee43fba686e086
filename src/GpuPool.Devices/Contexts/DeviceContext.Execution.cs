using GpuPool.Devices.Streams;

namespace GpuPool.Devices.Contexts;

/// <summary>Running the items of a stream's work, which its stream hands to its runner one at a time, in order.</summary>
internal sealed partial class DeviceContext
{
    /// <summary>The runner of <paramref name="stream"/>'s items: a stream makes one and runs each of its items through it.</summary>
    internal StreamRunner RunnerFor(WorkStream stream) => new(this, stream);

    /// <summary>
    /// Device work is skipped while an error is pending or the context is closed, until the error is reported; a copy to
    /// the host reports it itself (and so takes it), since the client is waiting on it.
    /// </summary>
    private bool Skips(StreamWork work)
    {
        var pending = Volatile.Read(ref _sticky);
        if (pending is null && !IsClosed)
        {
            return false;
        }

        if (work is CopyToHostWork)
        {
            work.Fail(TakeError() ?? pending ?? new StickyError(work.Tag, ContextErrors.Closed()));
        }

        return true;
    }

    private void Failed(StreamWork work, Exception ex)
    {
        var error = new StickyError(work.Tag, AsDeviceError(work.Tag, ex));
        if (work is CopyToHostWork)
        {
            // The client is waiting on this copy: it gets the error directly, nothing stays sticky.
            work.Fail(error);
            return;
        }

        Interlocked.CompareExchange(ref _sticky, error, null);
    }

    /// <summary>Whatever went wrong, the client must hear of it as the op's failure.</summary>
    private static DeviceException AsDeviceError(OpTag tag, Exception ex)
        => ex as DeviceException ?? new DeviceException(DeviceErrorCode.LaunchFailed, $"{tag.Op} failed: {ex.Message}", ex);

    /// <summary>
    /// Runs a stream's items for the context, one at a time: waits for what an item waits on, skips device work while an
    /// error is pending or the context is closed, holds a fair-share slot while the work runs (timed, and charged to the lease), keeps its failure and
    /// finishes it. Never throws: an escaping exception would leave the stream's worker dead and every later sync hanging.
    /// Every wait goes through the stream (<see cref="WorkStream.WaitAsync"/>), so on a stream with a thread of its own an
    /// item has run to its end when <see cref="TryRun"/> returns.
    /// </summary>
    /// <remarks>
    /// A hand-written async state machine, one per stream and reused for each item, since a stream runs one at a time: an
    /// item that waits (for an event, a slot, a connection sending a copy) allocates nothing, where an async method's box
    /// would, or would come from a pool only when it happened to go back to the thread that takes it next. It calls its
    /// stream back itself once a waiting item is done (<see cref="WorkStream.ResumeAfterWait"/>), so the stream registers
    /// no continuation of its own, which could come too late and be queued to the thread pool at a cost.
    /// </remarks>
    internal sealed class StreamRunner
    {
        private readonly DeviceContext _context;
        private readonly WorkStream _stream;
        private readonly Action _resume;
        private StreamWork? _work;
        private Stage _next;
        private ValueTask _pending;
        private bool _takesSlot;
        private bool _holdsSlot;
        private long _slotTaken;

        public StreamRunner(DeviceContext context, WorkStream stream)
        {
            _context = context;
            _stream = stream;
            _resume = Resume;
        }

        private enum Stage
        {
            Start,
            Waited,
            SlotTaken,
            Ran,
        }

        /// <summary>
        /// Runs <paramref name="work"/>; never fails. True when it has run to its end; false when it waits for something,
        /// and then the stream hears when it is done (perhaps before this returns, on another thread).
        /// </summary>
        public bool TryRun(StreamWork work)
        {
            (_work, _next) = (work, Stage.Start);
            return Advance();
        }

        private void Resume()
        {
            if (Advance())
            {
                _stream.ResumeAfterWait();
            }
        }

        /// <summary>Takes the item as far as it goes: true when it is finished, false when it waits (and <see cref="Resume"/> goes on).</summary>
        private bool Advance()
        {
            var work = _work!;
            try
            {
                if (!Proceed(work))
                {
                    return false;
                }
            }
            catch (Exception ex)
            {
                ReleaseSlot();
                _context.Failed(work, ex);
            }

            ReleaseSlot();
            _work = null;
            var tag = work.Tag;
            try
            {
                // The item goes back to its pool here: nothing after touches it.
                work.Finish();
            }
            catch (Exception ex)
            {
                Interlocked.CompareExchange(ref _context._sticky, new StickyError(tag, AsDeviceError(tag, ex)), null);
            }

            return true;
        }

        /// <summary>The item's stages, from where the last wait left it; false when it waits.</summary>
        private bool Proceed(StreamWork work)
        {
            while (true)
            {
                switch (_next)
                {
                    case Stage.Start:
                        _next = Stage.Waited;
                        if (Waits(_stream.WaitAsync(work.WaitBeforeAsync(_context))))
                        {
                            return false;
                        }

                        break;

                    case Stage.Waited:
                        TakePending();
                        if (!work.IsDeviceWork)
                        {
                            _next = Stage.Ran;
                            if (Waits(work.RunAsync(_context, _stream)))
                            {
                                return false;
                            }

                            break;
                        }

                        if (_context.Skips(work))
                        {
                            return true;
                        }

                        _takesSlot = work.TakesSlot(_context);
                        _next = Stage.SlotTaken;
                        if (_takesSlot && Waits(_stream.WaitAsync(_context._leases.Dispatcher.AcquireAsync(_context._account))))
                        {
                            return false;
                        }

                        break;

                    case Stage.SlotTaken:
                        TakePending();
                        if (_takesSlot)
                        {
                            // The item's device time runs from here to the slot's release: on the cpu backend its time
                            // on the worker, on the cuda backend its launch until the stream is synchronized after it.
                            _holdsSlot = true;
                            _slotTaken = _context._leases.Dispatcher.Time.GetTimestamp();
                        }

                        _next = Stage.Ran;
                        if (Waits(work.RunAsync(_context, _stream)))
                        {
                            return false;
                        }

                        break;

                    default:
                        TakePending();
                        return true;
                }
            }
        }

        /// <summary>Keeps <paramref name="wait"/> for the next stage; true when it is still pending, and its completion resumes the item.</summary>
        private bool Waits(ValueTask wait)
        {
            _pending = wait;
            if (wait.IsCompleted)
            {
                return false;
            }

            wait.ConfigureAwait(false).GetAwaiter().UnsafeOnCompleted(_resume);
            return true;
        }

        private void TakePending()
        {
            var pending = _pending;
            _pending = default;
            pending.GetAwaiter().GetResult();
        }

        private void ReleaseSlot()
        {
            if (_holdsSlot)
            {
                _holdsSlot = false;
                var dispatcher = _context._leases.Dispatcher;
                dispatcher.Release(_context._account, dispatcher.Time.GetElapsedTime(_slotTaken), _stream.HasQueued);
            }
        }
    }
}
