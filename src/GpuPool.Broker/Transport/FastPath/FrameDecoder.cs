using System.Buffers;
using GpuPool.Broker.Sessions;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Broker.Transport.FastPath;

/// <summary>Why a decode step stopped before the end of the buffer.</summary>
internal enum Stop
{
    None,

    /// <summary>An op waits (a synchronize, a free): nothing after it runs until <see cref="DecodeStep.Pending"/> completes.</summary>
    Pending,

    /// <summary>The next frame is an op, which waits for the striped copy in progress.</summary>
    Upload,

    /// <summary>The next frame's payload must wait for staged chunks to drain (<see cref="DecodeStep.Charge"/>).</summary>
    Budget,

    /// <summary>The next frame is a chunk of a copy the session's first connection has not announced yet (<see cref="DecodeStep.Announce"/>).</summary>
    Announce,
}

/// <summary>A chunk of a striped copy being received straight into device memory: <see cref="Arrived"/> of its bytes were in the pipe.</summary>
internal readonly record struct DirectReceive(DirectChunk Chunk, int Arrived);

/// <summary>What one decode step did with a connection's buffer, and what the connection must do before the next.</summary>
/// <param name="Consumed">How far the buffer was used; with a <see cref="Stop"/>, the rest holds a whole frame still to handle.</param>
/// <param name="Direct">Set when the step ended at a chunk whose payload is to be received straight into device memory.</param>
/// <param name="ProtocolError">Set when the connection must close, saying why.</param>
internal readonly record struct DecodeStep(SequencePosition Consumed, Stop Stop = Stop.None, long Charge = 0, ulong Announce = 0, ValueTask Pending = default, DirectReceive? Direct = null, string? ProtocolError = null);

/// <summary>
/// The decode steps of fast-path connections: each walks the whole frames of what the connection has read (no I/O, no
/// awaiting) and hands every op to the session in order as it is decoded, so an op's payload is used where it lies in
/// the buffer. A step stops early, and says why in its result, when the connection must wait before going on.
/// </summary>
internal static class FrameDecoder
{
    /// <summary>
    /// Payloads of chunks of striped copies at least this large, whose bytes have only begun to arrive, are received from
    /// the socket straight into device memory when it is host memory and the stream is idle (no pass through a buffer).
    /// </summary>
    private const int DirectReceiveThreshold = 128 * 1024;

    /// <summary>
    /// A step over the session's first connection. A copy to the device lands straight from the buffer when its stream
    /// is idle, else is staged within the connection's budget (the step stops before it when the budget is spent). While
    /// a striped copy is in progress only its chunks are taken: the step stops before any op, which comes after the copy.
    /// </summary>
    public static DecodeStep DecodeSession(in ReadOnlySequence<byte> buffer, FastPathSession session, StagingBudget budget, int maxMessageBytes, CancellationToken cancellationToken)
    {
        var executor = session.Executor;
        var reader = new SequenceReader<byte>(buffer);
        while (true)
        {
            var before = reader.Position;
            var status = FrameCodec.TryDecode(ref reader, maxMessageBytes, out var frame, out var error);
            if (status == DecodeStatus.NeedMore)
            {
                var direct = StartDirectReceive(ref reader, session, 0, maxMessageBytes);
                return new DecodeStep(reader.Position, Direct: direct);
            }

            if (status == DecodeStatus.Error)
            {
                return new DecodeStep(reader.Position, ProtocolError: error);
            }

            if (frame.Seq == 0)
            {
                // Seq 0 is the session's own in replies (lease ended, protocol errors); an op may not use it.
                return new DecodeStep(reader.Position, ProtocolError: $"a {frame.Type} frame has sequence number 0; ops are numbered from 1");
            }

            if (frame.Type == FrameType.StripeChunk)
            {
                switch (session.OnChunk(0, frame, budget, out error))
                {
                    case ChunkOutcome.Landed or ChunkOutcome.Dropped:
                        continue;
                    case ChunkOutcome.NeedBudget:
                        return new DecodeStep(before, Stop.Budget, Charge: budget.ChargeFor(frame.Payload.Length));
                    case ChunkOutcome.NotYet:
                        return new DecodeStep(reader.Position, ProtocolError: $"frame #{frame.Seq} is a chunk of a striped copy that this connection has not announced");
                    default:
                        return new DecodeStep(reader.Position, ProtocolError: error);
                }
            }

            if (session.UploadInProgress)
            {
                return new DecodeStep(before, Stop.Upload);
            }

            switch (frame.Type)
            {
                case FrameType.MemcpyHtoDStriped:
                    var upload = StripeFrames.ReadCopy(frame);
                    if (executor.TryTakeSeq(upload.Seq))
                    {
                        // Announced before anything after it is read: its chunks may follow at once.
                        session.BeginUpload(upload);
                    }

                    continue;
                case FrameType.MemcpyDtoHStriped:
                    session.RunStripedCopyToHost(StripeFrames.ReadCopy(frame));
                    continue;
                case FrameType.MemcpyHtoD:
                    if (!TryCopyToDevice(executor, frame, budget, out var charge))
                    {
                        return new DecodeStep(before, Stop.Budget, Charge: charge);
                    }

                    continue;
                case FrameType.Hello or FrameType.HelloVersion1:
                    return new DecodeStep(reader.Position, ProtocolError: $"frame #{frame.Seq}: the session is already open");
            }

            if (!FrameOps.Runs(frame.Type))
            {
                return new DecodeStep(reader.Position, ProtocolError: $"frame #{frame.Seq} is a {frame.Type} frame, which a client may not send");
            }

            var running = FrameOps.Run(executor, frame, cancellationToken);
            if (!running.IsCompletedSuccessfully)
            {
                return new DecodeStep(reader.Position, Stop.Pending, Pending: running);
            }
        }
    }

    /// <summary>
    /// A copy op of its own: straight to the device from the buffer when its stream is idle (and device memory is host
    /// memory), else staged and queued. False when the budget has no room for it now (nothing was done;
    /// <paramref name="charge"/> is its cost).
    /// </summary>
    private static bool TryCopyToDevice(SessionExecutor executor, in Frame frame, StagingBudget budget, out long charge)
    {
        charge = 0;
        var op = OpFrames.Read<MemcpyHtoDOp>(frame);
        if (executor.TryCopyToDeviceNow(frame.Seq, op, frame.Payload))
        {
            return true;
        }

        if (executor.SeqIsNew(frame.Seq))
        {
            charge = budget.ChargeFor(frame.Payload.Length);
            if (!budget.TryReserve(charge))
            {
                return false;
            }
        }

        if (executor.TryTakeSeq(frame.Seq))
        {
            budget.Stage(frame.Payload, charge, (executor, frame.Seq, op), static (s, at, bytes, owner) => s.executor.EnqueueCopyToDevice(s.Seq, s.op.Stream, s.op.Ptr + (ulong)at, bytes, owner));
        }

        charge = 0;
        return true;
    }

    /// <summary>A step over a data connection: chunks of striped copies, and nothing else.</summary>
    public static DecodeStep DecodeChunks(in ReadOnlySequence<byte> buffer, FastPathSession session, int lane, StagingBudget budget, int maxMessageBytes)
    {
        var reader = new SequenceReader<byte>(buffer);
        while (true)
        {
            var before = reader.Position;
            var status = FrameCodec.TryDecode(ref reader, maxMessageBytes, out var frame, out var error);
            if (status == DecodeStatus.NeedMore)
            {
                var direct = StartDirectReceive(ref reader, session, lane, maxMessageBytes);
                return new DecodeStep(reader.Position, Direct: direct);
            }

            if (status == DecodeStatus.Error || frame.Type != FrameType.StripeChunk)
            {
                return new DecodeStep(reader.Position, ProtocolError: error ?? $"frame #{frame.Seq} is a {frame.Type} frame; a data connection carries only StripeChunk frames");
            }

            switch (session.OnChunk(lane, frame, budget, out error))
            {
                case ChunkOutcome.Landed or ChunkOutcome.Dropped:
                    continue;
                case ChunkOutcome.NeedBudget:
                    return new DecodeStep(before, Stop.Budget, Charge: budget.ChargeFor(frame.Payload.Length));
                case ChunkOutcome.NotYet:
                    return new DecodeStep(before, Stop.Announce, Announce: frame.Seq);
                default:
                    return new DecodeStep(reader.Position, ProtocolError: error);
            }
        }
    }

    /// <summary>
    /// When the reader is at a large chunk of the striped copy in progress whose payload has only begun to arrive, and
    /// its destination can take the bytes now (host memory, idle stream): copies what has come there, moves the reader
    /// past everything, and says where the rest goes. Null (the reader unmoved) otherwise: the frame waits whole and
    /// takes the usual way, which also reports whatever is wrong with it.
    /// </summary>
    private static DirectReceive? StartDirectReceive(ref SequenceReader<byte> reader, FastPathSession session, int lane, int maxMessageBytes)
    {
        if (FrameCodec.TryDecodeHeader(reader, maxMessageBytes, out var header, out var fixedFields, out _) != DecodeStatus.Frame
            || header.PayloadLength < DirectReceiveThreshold || header.Seq == 0)
        {
            return null;
        }

        // A copy op of its own (not striped) waits whole in the pipe: cut in the middle, it leaves the destination as it was.
        Span<byte> scratch = stackalloc byte[8];
        if (header.Type != FrameType.StripeChunk
            || !session.TryBeginDirectChunk(lane, header.Seq, new FixedFields(fixedFields, scratch).U64(), (int)header.PayloadLength, out var chunk))
        {
            return null;
        }

        reader.Advance(FrameCodec.HeaderSize + fixedFields.Length);
        var arrived = (int)reader.Remaining;
        unsafe
        {
            reader.UnreadSequence.CopyTo(new Span<byte>((void*)chunk.Target, arrived));
        }

        reader.Advance(arrived);
        return new DirectReceive(chunk, arrived);
    }

    /// <summary>Whether a protocol error was a message over the broker's limit (answered ResourceExhausted, as gRPC's limit is).</summary>
    public static ErrorCode ProtocolErrorCode(in ReadOnlySequence<byte> unread, int maxMessageBytes)
        => FrameCodec.IsOversized(unread, maxMessageBytes) ? ErrorCode.ResourceExhausted : ErrorCode.InvalidArgument;
}
