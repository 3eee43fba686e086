using System.Runtime.CompilerServices;
using GpuPool.Devices;
using GpuPool.Protocol.Ops;

namespace GpuPool.Broker.Sessions;

/// <summary>Streams, events and synchronization.</summary>
internal sealed partial class SessionExecutor
{
    public ValueTask StreamCreate(ulong seq, in StreamCreateOp op)
    {
        if ((op.Flags & ~StreamFlags.NonBlocking) != 0)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"0x{(uint)op.Flags:x} is not a set of stream flags (0: blocking, 1: non-blocking)");
        }

        return Answer(seq, ReplyKind.Handle, _context.CreateStream(op.Flags == StreamFlags.NonBlocking ? StreamOrder.NonBlocking : StreamOrder.Blocking));
    }

    public ValueTask StreamDestroy(ulong seq, in StreamDestroyOp op)
    {
        _context.DestroyStream(op.Stream);
        return Done(seq);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask StreamSynchronize(ulong seq, StreamSynchronizeOp op, CancellationToken cancellationToken)
    {
        await _context.SynchronizeStreamAsync(op.Stream, cancellationToken).ConfigureAwait(false);
        DoneOrSticky(seq);
    }

    public ValueTask StreamWaitEvent(ulong seq, in StreamWaitEventOp op)
    {
        _context.EnqueueStreamWaitEvent(op.Stream, op.Event, new OpTag(seq, StreamWaitEventOp.Name));
        return default;
    }

    public ValueTask EventCreate(ulong seq) => Answer(seq, ReplyKind.Handle, _context.CreateEvent());

    public ValueTask EventDestroy(ulong seq, in EventDestroyOp op)
    {
        _context.DestroyEvent(op.Event);
        return Done(seq);
    }

    public ValueTask EventRecord(ulong seq, in EventRecordOp op)
    {
        _context.EnqueueEventRecord(op.Stream, op.Event, new OpTag(seq, EventRecordOp.Name));
        return default;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask EventSynchronize(ulong seq, EventSynchronizeOp op, CancellationToken cancellationToken)
    {
        await _context.SynchronizeEventAsync(op.Event, cancellationToken).ConfigureAwait(false);
        DoneOrSticky(seq);
    }

    /// <summary>
    /// Not ready, or ready; a completed event reports an earlier fire-and-forget op's failure as a synchronize would
    /// (cuEventQuery and cuStreamQuery return it), so a program that polls instead of synchronizing still learns of it.
    /// </summary>
    public ValueTask EventQuery(ulong seq, in EventQueryOp op)
    {
        if (!_context.QueryEvent(op.Event))
        {
            return Answer(seq, ReplyKind.Ready, 0);
        }

        if (_context.TakeError() is { } sticky)
        {
            _replies.Error(seq, OpErrors.Sticky(sticky));
            return default;
        }

        return Answer(seq, ReplyKind.Ready, 1);
    }

    public ValueTask EventElapsedTime(ulong seq, in EventElapsedTimeOp op)
        => Answer(seq, ReplyKind.ElapsedMs, BitConverter.SingleToUInt32Bits(_context.EventElapsedMilliseconds(op.Start, op.End)));

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask Synchronize(ulong seq, CancellationToken cancellationToken)
    {
        await _context.SynchronizeAsync(cancellationToken).ConfigureAwait(false);
        DoneOrSticky(seq);
    }
}
