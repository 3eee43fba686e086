using System.Buffers;
using System.Text;
using Google.Protobuf;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.V1;

namespace GpuPool.Protocol.Transport;

/// <summary>The first frame of a session's connection (op <paramref name="Seq"/>): the fast-path version it speaks, and the lease and token it opens.</summary>
public readonly record struct Hello(ulong Seq, ushort Version, string LeaseId, string Token);

/// <summary>
/// Writes and reads the fast path's op and reply frames. An op is written straight from its value (<see cref="IOp{TSelf}"/>)
/// and its payload, and read back into the same value with the payload left as a slice of the frame: no message object
/// on either side. Replies are two numbers, an error, copy data, the session's description or a notice.
/// </summary>
public static class OpFrames
{
    /// <summary>The fast path's wire version, which a hello names. 2: ops as values, versioned hello. 3: a stream's flags at its creation.</summary>
    public const ushort Version = 3;

    /// <summary>The largest fixed fields of any frame (Launch's 48 bytes), for scratch space on the stack.</summary>
    private const int MaxFixed = 48;

    /// <summary>Writes an op with no payload.</summary>
    public static void Write<TOp>(IBufferWriter<byte> writer, ulong seq, in TOp op)
        where TOp : struct, IOp<TOp>
        => Write(writer, seq, op, ReadOnlySpan<byte>.Empty);

    /// <summary>Writes an op and its payload (copied once, into the writer's buffer).</summary>
    public static void Write<TOp>(IBufferWriter<byte> writer, ulong seq, in TOp op, ReadOnlySpan<byte> payload)
        where TOp : struct, IOp<TOp>
    {
        Span<byte> scratch = stackalloc byte[MaxFixed];
        var fields = new FixedBuilder(scratch);
        op.Write(ref fields);
        FrameCodec.Write(writer, TOp.Type, seq, fields.Written, payload);
    }

    /// <summary>Writes an op's header and fixed fields for a payload of <paramref name="payloadLength"/> bytes the caller sends after them.</summary>
    public static void WriteHeader<TOp>(IBufferWriter<byte> writer, ulong seq, in TOp op, int payloadLength)
        where TOp : struct, IOp<TOp>
    {
        Span<byte> scratch = stackalloc byte[MaxFixed];
        var fields = new FixedBuilder(scratch);
        op.Write(ref fields);
        FrameCodec.WriteHeader(writer, TOp.Type, seq, fields.Written, payloadLength);
    }

    /// <summary>Reads an op from a frame of its type (the caller has switched on <see cref="Frame.Type"/>); its payload stays in the frame.</summary>
    public static TOp Read<TOp>(in Frame frame)
        where TOp : struct, IOp<TOp>
    {
        Span<byte> scratch = stackalloc byte[MaxFixed];
        var fields = new FixedFields(frame.Fixed, scratch);
        return TOp.Read(ref fields);
    }

    public static void WriteHello(IBufferWriter<byte> writer, ulong seq, string leaseId, string token, ushort version = Version)
    {
        var (lease, secret) = Credentials.Encode(leaseId, token);
        Span<byte> scratch = stackalloc byte[8];
        var fields = new FixedBuilder(scratch).U16(version).U16(checked((ushort)lease.Length)).U16(checked((ushort)secret.Length)).U16(0);
        FrameCodec.Write(writer, FrameType.Hello, seq, fields.Written, [.. lease, .. secret]);
    }

    /// <summary>
    /// Reads a hello (of this version or version 1). Null with a reason when its lengths do not add up, or when it
    /// speaks a version this side does not: the reason names both versions.
    /// </summary>
    public static Hello? ReadHello(in Frame frame, out string? error)
    {
        Span<byte> scratch = stackalloc byte[8];
        var fields = new FixedFields(frame.Fixed, scratch);
        var version = HelloVersion(frame);
        if (frame.Type == FrameType.Hello)
        {
            fields.U16();
        }

        if (version != Version)
        {
            error = $"the client speaks fast-path version {version} and this broker speaks version {Version}: use a client of the broker's version (or the gRPC transport)";
            return null;
        }

        return Credentials.TryDecode(frame, fields.U16(), fields.U16(), $"hello frame #{frame.Seq}", out var leaseId, out var token, out error)
            ? new Hello(frame.Seq, version, leaseId, token)
            : null;
    }

    /// <summary>The fast-path version a hello frame (of either layout) speaks.</summary>
    public static ushort HelloVersion(in Frame frame)
    {
        if (frame.Type == FrameType.HelloVersion1)
        {
            return 1;
        }

        Span<byte> scratch = stackalloc byte[8];
        return new FixedFields(frame.Fixed, scratch).U16();
    }

    /// <summary>An op succeeded: {value, value2} (a pointer, handle, flag, float bits, or free and total bytes; 0 for done).</summary>
    public static void WriteReply(IBufferWriter<byte> writer, ulong seq, ulong value, ulong value2 = 0)
    {
        Span<byte> scratch = stackalloc byte[16];
        FrameCodec.Write(writer, FrameType.Reply, seq, new FixedBuilder(scratch).U64(value).U64(value2).Written, ReadOnlySpan<byte>.Empty);
    }

    /// <summary>An op failed (or, with seq 0, the session did); <paramref name="failedSeq"/> and <paramref name="failedOp"/> name an earlier op whose sticky error this is.</summary>
    public static void WriteError(IBufferWriter<byte> writer, ulong seq, ErrorCode code, string message, ulong failedSeq = 0, string failedOp = "")
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(failedOp);
        var op = Encoding.UTF8.GetBytes(failedOp);
        var text = Encoding.UTF8.GetBytes(message.Length > 16_000 ? message[..16_000] : message);
        Span<byte> scratch = stackalloc byte[16];
        FrameCodec.Write(writer, FrameType.Error, seq, new FixedBuilder(scratch).U32((uint)code).U32((uint)op.Length).U64(failedSeq).Written, [.. op, .. text]);
    }

    public static void WriteError(IBufferWriter<byte> writer, ulong seq, Error error)
    {
        ArgumentNullException.ThrowIfNull(error);
        WriteError(writer, seq, error.Code, error.Message, error.FailedSeq, error.FailedOp);
    }

    /// <summary>The answer to a hello: the session's description.</summary>
    public static void WriteSessionInfo(IBufferWriter<byte> writer, ulong seq, SessionInfo info)
    {
        ArgumentNullException.ThrowIfNull(info);
        FrameCodec.Write(writer, FrameType.SessionInfo, seq, [], info.ToByteArray());
    }

    /// <summary>Something the session is told unasked (seq 0), such as a preemption.</summary>
    public static void WriteNotice(IBufferWriter<byte> writer, Notice notice)
    {
        ArgumentNullException.ThrowIfNull(notice);
        var text = Encoding.UTF8.GetBytes(notice.Kind + "\n" + (notice.Message.Length > 16_000 ? notice.Message[..16_000] : notice.Message));
        Span<byte> scratch = stackalloc byte[8];
        FrameCodec.Write(writer, FrameType.Notice, 0, new FixedBuilder(scratch).U64(unchecked((ulong)notice.DeadlineUnixMs)).Written, text);
    }

    /// <summary>Writes a chunk of a device-to-host copy.</summary>
    public static void WriteData(IBufferWriter<byte> writer, ulong seq, ulong offset, ReadOnlySpan<byte> bytes, bool last)
    {
        Span<byte> scratch = stackalloc byte[12];
        FrameCodec.Write(writer, FrameType.Data, seq, new FixedBuilder(scratch).U64(offset).U32(last ? 1u : 0u).Written, bytes);
    }

    /// <summary>Reads a Reply frame's two numbers.</summary>
    public static (ulong Value, ulong Value2) ReadReply(in Frame frame)
    {
        Span<byte> scratch = stackalloc byte[16];
        var fields = new FixedFields(frame.Fixed, scratch);
        return (fields.U64(), fields.U64());
    }

    /// <summary>Reads a Data frame's fixed fields: where its bytes go in the copy, and whether they are the last.</summary>
    public static (ulong Offset, bool Last) ReadData(in ReadOnlySequence<byte> fixedFields)
    {
        Span<byte> scratch = stackalloc byte[12];
        var fields = new FixedFields(fixedFields, scratch);
        return (fields.U64(), fields.U32() != 0);
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

    /// <summary>Reads an Error frame back into the exception the client throws.</summary>
    public static GpuPoolException ReadError(in Frame frame)
    {
        Span<byte> scratch = stackalloc byte[16];
        var fields = new FixedFields(frame.Fixed, scratch);
        var code = (ErrorCode)fields.U32();
        var opLength = (int)Math.Min(fields.U32(), (uint)frame.Payload.Length);
        var failedSeq = fields.U64();
        var text = frame.Payload.ToArray();
        return new GpuPoolException(code, Encoding.UTF8.GetString(text, opLength, text.Length - opLength), failedSeq, Encoding.UTF8.GetString(text, 0, opLength));
    }
}
