using System.Buffers;
using System.Text;
using Google.Protobuf;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.Protocol.Transport;

/// <summary>
/// Maps the ops of session.proto to and from fast-path frames, so both transports carry the same ops
/// with the same meaning. Bulk payloads (copies to the device) are never copied into a message: the
/// decoder hands them to a stager that owns the bytes until the device has taken them.
/// </summary>
public static class OpFrames
{
    /// <summary>Copies a payload out of the connection's buffers into memory the caller owns until <c>owner</c> is disposed.</summary>
    public delegate ReadOnlyMemory<byte> Stager(in ReadOnlySequence<byte> payload, out IDisposable? owner);

    /// <summary>Encodes an op; the payload of a copy is written after the header, once.</summary>
    public static void Write(IBufferWriter<byte> writer, OpRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        Span<byte> scratch = stackalloc byte[64];
        var f = new FixedBuilder(scratch);
        var seq = request.Seq;
        switch (request.OpCase)
        {
            case OpRequest.OpOneofCase.Open:
                var lease = Encoding.UTF8.GetBytes(request.Open.LeaseId);
                var token = Encoding.UTF8.GetBytes(request.Open.Token);
                f = f.U16(checked((ushort)lease.Length)).U16(checked((ushort)token.Length));
                FrameCodec.Write(writer, FrameType.Hello, seq, f.Written, [.. lease, .. token]);
                break;
            case OpRequest.OpOneofCase.MemAlloc:
                Fixed(writer, FrameType.MemAlloc, seq, f.U64(request.MemAlloc.Bytes));
                break;
            case OpRequest.OpOneofCase.MemFree:
                Fixed(writer, FrameType.MemFree, seq, f.U64(request.MemFree.Ptr));
                break;
            case OpRequest.OpOneofCase.MemcpyHtod:
                var htod = request.MemcpyHtod;
                FrameCodec.Write(writer, FrameType.MemcpyHtoD, seq, f.U64(htod.Ptr).U64(htod.Stream).Written, htod.Data.Span);
                break;
            case OpRequest.OpOneofCase.MemcpyDtoh:
                var dtoh = request.MemcpyDtoh;
                Fixed(writer, FrameType.MemcpyDtoH, seq, f.U64(dtoh.Ptr).U64(dtoh.Bytes).U64(dtoh.Stream));
                break;
            case OpRequest.OpOneofCase.MemcpyDtod:
                var dtod = request.MemcpyDtod;
                Fixed(writer, FrameType.MemcpyDtoD, seq, f.U64(dtod.Dst).U64(dtod.Src).U64(dtod.Bytes).U64(dtod.Stream));
                break;
            case OpRequest.OpOneofCase.Memset:
                var ms = request.Memset;
                Fixed(writer, FrameType.Memset, seq, f.U64(ms.Ptr).U64(ms.Count).U64(ms.Stream).U32(ms.Value).U32(ms.ElementSize));
                break;
            case OpRequest.OpOneofCase.ModuleLoad:
                FrameCodec.Write(writer, FrameType.ModuleLoad, seq, f.U32(request.ModuleLoad.Builtin ? 1u : 0u).U32(0).Written, request.ModuleLoad.Image.Span);
                break;
            case OpRequest.OpOneofCase.ModuleUnload:
                Fixed(writer, FrameType.ModuleUnload, seq, f.U64(request.ModuleUnload.Module));
                break;
            case OpRequest.OpOneofCase.ModuleGetFunction:
                FrameCodec.Write(writer, FrameType.ModuleGetFunction, seq, f.U64(request.ModuleGetFunction.Module).Written, Encoding.UTF8.GetBytes(request.ModuleGetFunction.Name));
                break;
            case OpRequest.OpOneofCase.Launch:
                var l = request.Launch;
                f = f.U64(l.Function).U64(l.Stream).U32(l.GridX).U32(l.GridY).U32(l.GridZ).U32(l.BlockX).U32(l.BlockY).U32(l.BlockZ).U32(l.SharedMemBytes).U32(0);
                FrameCodec.Write(writer, FrameType.Launch, seq, f.Written, l.Params.Span);
                break;
            case OpRequest.OpOneofCase.StreamCreate:
                Fixed(writer, FrameType.StreamCreate, seq, f);
                break;
            case OpRequest.OpOneofCase.StreamDestroy:
                Fixed(writer, FrameType.StreamDestroy, seq, f.U64(request.StreamDestroy.Stream));
                break;
            case OpRequest.OpOneofCase.StreamSynchronize:
                Fixed(writer, FrameType.StreamSynchronize, seq, f.U64(request.StreamSynchronize.Stream));
                break;
            case OpRequest.OpOneofCase.StreamWaitEvent:
                Fixed(writer, FrameType.StreamWaitEvent, seq, f.U64(request.StreamWaitEvent.Stream).U64(request.StreamWaitEvent.Event));
                break;
            case OpRequest.OpOneofCase.EventCreate:
                Fixed(writer, FrameType.EventCreate, seq, f);
                break;
            case OpRequest.OpOneofCase.EventDestroy:
                Fixed(writer, FrameType.EventDestroy, seq, f.U64(request.EventDestroy.Event));
                break;
            case OpRequest.OpOneofCase.EventRecord:
                Fixed(writer, FrameType.EventRecord, seq, f.U64(request.EventRecord.Stream).U64(request.EventRecord.Event));
                break;
            case OpRequest.OpOneofCase.EventSynchronize:
                Fixed(writer, FrameType.EventSynchronize, seq, f.U64(request.EventSynchronize.Event));
                break;
            case OpRequest.OpOneofCase.EventQuery:
                Fixed(writer, FrameType.EventQuery, seq, f.U64(request.EventQuery.Event));
                break;
            case OpRequest.OpOneofCase.EventElapsedTime:
                Fixed(writer, FrameType.EventElapsedTime, seq, f.U64(request.EventElapsedTime.Start).U64(request.EventElapsedTime.End));
                break;
            case OpRequest.OpOneofCase.Synchronize:
                Fixed(writer, FrameType.Synchronize, seq, f);
                break;
            case OpRequest.OpOneofCase.MemGetInfo:
                Fixed(writer, FrameType.MemGetInfo, seq, f);
                break;
            default:
                throw new ArgumentException($"op {request.OpCase} has no fast-path frame", nameof(request));
        }
    }

    /// <summary>
    /// Decodes an op frame. A frame that is not an op client may send gives a protocol error (null and a
    /// reason); the connection should then close. <paramref name="owner"/> owns a staged payload.
    /// </summary>
    public static OpRequest? Read(in Frame frame, Stager stage, out IDisposable? owner, out string? error)
    {
        owner = null;
        error = null;
        Span<byte> scratch = stackalloc byte[64];
        var f = new FixedFields(frame.Fixed, scratch);
        var r = new OpRequest { Seq = frame.Seq };
        switch (frame.Type)
        {
            case FrameType.Hello:
                var leaseLength = f.U16();
                var tokenLength = f.U16();
                if (leaseLength + tokenLength != frame.Payload.Length)
                {
                    error = $"hello frame #{frame.Seq}: lease id ({leaseLength}) and token ({tokenLength}) lengths do not add up to the payload ({frame.Payload.Length})";
                    return null;
                }

                var text = frame.Payload.ToArray();
                r.Open = new SessionOpen { LeaseId = Encoding.UTF8.GetString(text, 0, leaseLength), Token = Encoding.UTF8.GetString(text, leaseLength, tokenLength) };
                break;
            case FrameType.MemAlloc:
                r.MemAlloc = new MemAlloc { Bytes = f.U64() };
                break;
            case FrameType.MemFree:
                r.MemFree = new MemFree { Ptr = f.U64() };
                break;
            case FrameType.MemcpyHtoD:
                var ptr = f.U64();
                var stream = f.U64();
                var data = stage(frame.Payload, out owner);
                r.MemcpyHtod = new MemcpyHtoD { Ptr = ptr, Stream = stream, Data = UnsafeByteOperations.UnsafeWrap(data) };
                break;
            case FrameType.MemcpyDtoH:
                r.MemcpyDtoh = new MemcpyDtoH { Ptr = f.U64(), Bytes = f.U64(), Stream = f.U64() };
                break;
            case FrameType.MemcpyDtoD:
                r.MemcpyDtod = new MemcpyDtoD { Dst = f.U64(), Src = f.U64(), Bytes = f.U64(), Stream = f.U64() };
                break;
            case FrameType.Memset:
                r.Memset = new Memset { Ptr = f.U64(), Count = f.U64(), Stream = f.U64(), Value = f.U32(), ElementSize = f.U32() };
                break;
            case FrameType.ModuleLoad:
                r.ModuleLoad = new ModuleLoad { Builtin = f.U32() != 0, Image = ByteString.CopyFrom(frame.Payload.ToArray()) };
                break;
            case FrameType.ModuleUnload:
                r.ModuleUnload = new ModuleUnload { Module = f.U64() };
                break;
            case FrameType.ModuleGetFunction:
                r.ModuleGetFunction = new ModuleGetFunction { Module = f.U64(), Name = Encoding.UTF8.GetString(frame.Payload) };
                break;
            case FrameType.Launch:
                r.Launch = new Launch
                {
                    Function = f.U64(), Stream = f.U64(),
                    GridX = f.U32(), GridY = f.U32(), GridZ = f.U32(),
                    BlockX = f.U32(), BlockY = f.U32(), BlockZ = f.U32(),
                    SharedMemBytes = f.U32(),
                    Params = ByteString.CopyFrom(frame.Payload.ToArray()),
                };
                break;
            case FrameType.StreamCreate:
                r.StreamCreate = new StreamCreate();
                break;
            case FrameType.StreamDestroy:
                r.StreamDestroy = new StreamDestroy { Stream = f.U64() };
                break;
            case FrameType.StreamSynchronize:
                r.StreamSynchronize = new StreamSynchronize { Stream = f.U64() };
                break;
            case FrameType.StreamWaitEvent:
                r.StreamWaitEvent = new StreamWaitEvent { Stream = f.U64(), Event = f.U64() };
                break;
            case FrameType.EventCreate:
                r.EventCreate = new EventCreate();
                break;
            case FrameType.EventDestroy:
                r.EventDestroy = new EventDestroy { Event = f.U64() };
                break;
            case FrameType.EventRecord:
                r.EventRecord = new EventRecord { Stream = f.U64(), Event = f.U64() };
                break;
            case FrameType.EventSynchronize:
                r.EventSynchronize = new EventSynchronize { Event = f.U64() };
                break;
            case FrameType.EventQuery:
                r.EventQuery = new EventQuery { Event = f.U64() };
                break;
            case FrameType.EventElapsedTime:
                r.EventElapsedTime = new EventElapsedTime { Start = f.U64(), End = f.U64() };
                break;
            case FrameType.Synchronize:
                r.Synchronize = new CtxSynchronize();
                break;
            case FrameType.MemGetInfo:
                r.MemGetInfo = new MemGetInfo();
                break;
            default:
                error = $"frame #{frame.Seq} is a {frame.Type} frame, which a client may not send";
                return null;
        }

        return r;
    }

    /// <summary>Reads a Notice frame back into the message the gRPC stream carries.</summary>
    public static Notice ReadNotice(in Frame frame)
    {
        Span<byte> scratch = stackalloc byte[8];
        var deadline = unchecked((long)new FixedFields(frame.Fixed, scratch).U64());
        var text = Encoding.UTF8.GetString(frame.Payload);
        var newline = text.IndexOf('\n', StringComparison.Ordinal);
        return newline < 0
            ? new Notice { Kind = text, DeadlineUnixMs = deadline }
            : new Notice { Kind = text[..newline], Message = text[(newline + 1)..], DeadlineUnixMs = deadline };
    }

    private static void Fixed(IBufferWriter<byte> writer, FrameType type, ulong seq, FixedBuilder fixedFields)
        => FrameCodec.Write(writer, type, seq, fixedFields.Written, ReadOnlySpan<byte>.Empty);

    /// <summary>Encodes a reply that carries no bulk data (device-to-host data goes as Data frames).</summary>
    public static void WriteReply(IBufferWriter<byte> writer, OpReply reply)
    {
        ArgumentNullException.ThrowIfNull(reply);
        Span<byte> scratch = stackalloc byte[16];
        var f = new FixedBuilder(scratch);
        if (reply.Error is { } error)
        {
            var op = Encoding.UTF8.GetBytes(error.FailedOp);
            var message = Encoding.UTF8.GetBytes(error.Message.Length > 16_000 ? error.Message[..16_000] : error.Message);
            FrameCodec.Write(writer, FrameType.Error, reply.Seq, f.U32((uint)error.Code).U32((uint)op.Length).U64(error.FailedSeq).Written, [.. op, .. message]);
            return;
        }

        switch (reply.ResultCase)
        {
            case OpReply.ResultOneofCase.Session:
                FrameCodec.Write(writer, FrameType.SessionInfo, reply.Seq, [], reply.Session.ToByteArray());
                return;
            case OpReply.ResultOneofCase.Notice:
                var text = Encoding.UTF8.GetBytes(reply.Notice.Kind + "\n" + (reply.Notice.Message.Length > 16_000 ? reply.Notice.Message[..16_000] : reply.Notice.Message));
                FrameCodec.Write(writer, FrameType.Notice, reply.Seq, f.U64(unchecked((ulong)reply.Notice.DeadlineUnixMs)).Written, text);
                return;
            case OpReply.ResultOneofCase.DevicePtr:
                f = f.U64(reply.DevicePtr).U64(0);
                break;
            case OpReply.ResultOneofCase.Handle:
                f = f.U64(reply.Handle).U64(0);
                break;
            case OpReply.ResultOneofCase.ElapsedMs:
                f = f.U64(BitConverter.SingleToUInt32Bits(reply.ElapsedMs)).U64(0);
                break;
            case OpReply.ResultOneofCase.Ready:
                f = f.U64(reply.Ready ? 1UL : 0).U64(0);
                break;
            case OpReply.ResultOneofCase.MemInfo:
                f = f.U64(reply.MemInfo.FreeBytes).U64(reply.MemInfo.TotalBytes);
                break;
            case OpReply.ResultOneofCase.Done:
                f = f.U64(0).U64(0);
                break;
            default:
                throw new ArgumentException($"reply {reply.ResultCase} has no fast-path frame; data goes as Data frames", nameof(reply));
        }

        FrameCodec.Write(writer, FrameType.Reply, reply.Seq, f.Written, ReadOnlySpan<byte>.Empty);
    }

    /// <summary>Writes a chunk of a device-to-host copy.</summary>
    public static void WriteData(IBufferWriter<byte> writer, ulong seq, ulong offset, ReadOnlySpan<byte> bytes, bool last)
    {
        Span<byte> scratch = stackalloc byte[12];
        FrameCodec.Write(writer, FrameType.Data, seq, new FixedBuilder(scratch).U64(offset).U32(last ? 1u : 0u).Written, bytes);
    }

    /// <summary>Reads an Error frame back into the exception the client throws.</summary>
    public static GpuPoolException ReadError(in Frame frame)
    {
        Span<byte> scratch = stackalloc byte[16];
        var f = new FixedFields(frame.Fixed, scratch);
        var code = (ErrorCode)f.U32();
        var opLength = (int)Math.Min(f.U32(), (uint)frame.Payload.Length);
        var failedSeq = f.U64();
        var text = frame.Payload.ToArray();
        return new GpuPoolException(code, Encoding.UTF8.GetString(text, opLength, text.Length - opLength), failedSeq, Encoding.UTF8.GetString(text, 0, opLength));
    }
}
