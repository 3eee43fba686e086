using System.Buffers;
using System.Runtime.CompilerServices;
using GpuPool.Devices;
using GpuPool.Protocol;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.Transport;

namespace GpuPool.Broker.Sessions;

/// <summary>Memory and copies: alloc, free, the three copies, memset and the memory report.</summary>
internal sealed partial class SessionExecutor
{
    public ValueTask MemAlloc(ulong seq, in MemAllocOp op) => Answer(seq, ReplyKind.DevicePtr, Allocate(op.Bytes));

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask MemFree(ulong seq, MemFreeOp op)
    {
        await _context.FreeAsync(op.Ptr).ConfigureAwait(false);
        _replies.Reply(seq, ReplyKind.Done);
    }

    public ValueTask MemGetInfo(ulong seq) => Answer(seq, ReplyKind.MemInfo, _context.MemoryLimit - _context.MemoryUsed, _context.MemoryLimit);

    /// <summary>The lease's measured device time (ns) and its share of the device over the last 10 s (parts per million).</summary>
    public ValueTask Usage(ulong seq)
    {
        var usage = _context.Usage;
        return Answer(seq, ReplyKind.Usage, Units.ToNanoseconds(usage.DeviceTime), Units.ToPpm(usage.RecentShare));
    }

    /// <summary>
    /// Puts a copy's bytes on the device straight from the connection's buffer when its stream is idle, numbering the
    /// op; false when the op must take the usual way (staged and queued), which also reports any error.
    /// </summary>
    public bool TryCopyToDeviceNow(ulong seq, in MemcpyHtoDOp op, in ReadOnlySequence<byte> payload)
    {
        if (seq <= _lastSeq || !_context.TryCopyToDeviceNow(op.Stream, op.Ptr, payload))
        {
            return false;
        }

        _lastSeq = seq;
        BrokerMetrics.Ops.Add(1);
        BrokerMetrics.BytesToDevice.Add(payload.Length);
        return true;
    }

    /// <summary>Queues a staged piece of copy #<paramref name="seq"/> (numbered already) to the device in its stream's order; <paramref name="owner"/> is disposed once the device has the bytes.</summary>
    public void EnqueueCopyToDevice(ulong seq, ulong stream, ulong dst, ReadOnlyMemory<byte> bytes, IDisposable? owner)
    {
        BrokerMetrics.BytesToDevice.Add(bytes.Length);
        _context.EnqueueCopyToDevice(stream, dst, bytes, new OpTag(seq, MemcpyHtoDOp.Name), owner);
    }

    /// <summary>Fails copy #<paramref name="seq"/> to the device in its stream's order: the error is sticky, as if the copy had run and failed.</summary>
    public void FailCopyToDevice(ulong seq, ulong stream, DeviceErrorCode code, string message)
        => _context.EnqueueFailure(stream, new OpTag(seq, MemcpyHtoDOp.Name), new DeviceException(code, message));

    /// <summary>
    /// Begins landing a chunk of a copy already numbered (a striped one) whose bytes the connection receives straight
    /// into device memory; 0 when it must arrive whole and land or be staged as usual. Safe from several connections at once.
    /// </summary>
    public nint TryBeginLand(ulong stream, ulong dst, int length) => _context.TryBeginDirectWrite(stream, dst, length);

    /// <summary>Ends a direct write begun by <see cref="TryBeginLand"/>; <paramref name="landed"/> bytes came.</summary>
    public void EndLand(long landed)
    {
        _context.EndDirectWrite();
        BrokerMetrics.BytesToDevice.Add(landed);
    }

    /// <summary>
    /// Lands a chunk of a copy already numbered (a striped one) straight from the connection's buffer when its
    /// stream is idle; false when it must be staged and queued instead. Safe from several connections at once.
    /// </summary>
    public bool TryLandNow(ulong stream, ulong dst, in ReadOnlySequence<byte> payload)
    {
        if (!_context.TryCopyToDeviceNow(stream, dst, payload))
        {
            return false;
        }

        BrokerMetrics.BytesToDevice.Add(payload.Length);
        return true;
    }

    public ValueTask MemcpyDtoH(ulong seq, in MemcpyDtoHOp op)
    {
        CheckCopySize(op.Bytes);
        BrokerMetrics.BytesToHost.Add((long)op.Bytes);
        var sink = _ownLane is { } lane
            ? RentSink().Prepare(this, seq, op.Ptr, op.Bytes, _options.EffectiveFastPathReplyChunkBytes, lane)
            : RentSink().Prepare(this, seq, op.Ptr, op.Bytes, _options.EffectiveReplyChunkBytes, null);
        _context.EnqueueCopyToHost(op.Stream, op.Ptr, op.Bytes, sink, new OpTag(seq, MemcpyDtoHOp.Name));
        return default;
    }

    /// <summary>
    /// Runs a copy to the host whose chunks go out on <paramref name="lanes"/> (the connections of a striped copy):
    /// chunk i on lane i mod n, each sent straight from device memory while the copy holds its stream.
    /// </summary>
    /// <param name="carriedBy">The connections <paramref name="lanes"/> are (bit i: index i), told to the client in a
    /// Reply once every chunk has been sent: a copy's chunks may still be on their way on the others then.</param>
    public ValueTask StripedCopyToHost(in StripedCopy copy, (IDirectReplies Writer, string Name)[] lanes, uint carriedBy)
    {
        CheckCopySize(copy.Bytes);
        BrokerMetrics.BytesToHost.Add((long)copy.Bytes);
        BrokerMetrics.StripedCopies.Add(1, new KeyValuePair<string, object?>("direction", "to_host"));
        var sink = RentSink().Prepare(this, copy.Seq, copy.Ptr, copy.Bytes, (int)copy.ChunkBytes, lanes, carriedBy);
        _context.EnqueueCopyToHost(copy.Stream, copy.Ptr, copy.Bytes, sink, new OpTag(copy.Seq, MemcpyDtoHOp.Name));
        return default;
    }

    private CopyReplySink RentSink()
    {
        lock (_spareSinks)
        {
            return _spareSinks.TryPop(out var sink) ? sink : new CopyReplySink();
        }
    }

    /// <summary>A copy to the host is over (the device made its last call on the sink): the sink serves the next one.</summary>
    internal void Return(CopyReplySink sink)
    {
        lock (_spareSinks)
        {
            _spareSinks.Push(sink);
        }
    }

    private void CheckCopySize(ulong bytes)
    {
        if (bytes > _context.MemoryLimit)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"a copy of {bytes} bytes is larger than the lease's memory ({_context.MemoryLimit} bytes)");
        }
    }

    public ValueTask MemcpyDtoD(ulong seq, in MemcpyDtoDOp op)
    {
        _context.EnqueueCopyDeviceToDevice(op.Stream, op.Dst, op.Src, op.Bytes, new OpTag(seq, MemcpyDtoDOp.Name));
        return default;
    }

    public ValueTask Memset(ulong seq, in MemsetOp op)
    {
        _context.EnqueueMemset(op.Stream, op.Ptr, op.Value, (int)Math.Min(op.ElementSize, int.MaxValue), op.Count, new OpTag(seq, MemsetOp.Name));
        return default;
    }
}
