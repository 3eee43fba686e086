using System.Buffers;
using System.Buffers.Binary;

namespace GpuPool.Protocol.Transport;

/// <summary>
/// The fixed 16-byte header of every fast-path frame, little-endian:
/// u16 magic 0x5047 ("GP"), u16 type, u32 payload length, u64 sequence number. The type's fixed
/// fields follow (their size is a property of the type, not sent), then the raw payload.
/// </summary>
public readonly record struct FrameHeader(FrameType Type, uint PayloadLength, ulong Seq);

/// <summary>A decoded frame: its header, the type's fixed fields, and the payload, all views into the input.</summary>
public readonly struct Frame
{
    public Frame(FrameHeader header, ReadOnlySequence<byte> fixedFields, ReadOnlySequence<byte> payload)
    {
        Header = header;
        Fixed = fixedFields;
        Payload = payload;
    }

    public FrameHeader Header { get; }

    public FrameType Type => Header.Type;

    public ulong Seq => Header.Seq;

    public ReadOnlySequence<byte> Fixed { get; }

    public ReadOnlySequence<byte> Payload { get; }
}

public enum DecodeStatus
{
    /// <summary>The input holds no whole frame yet; nothing was consumed.</summary>
    NeedMore,

    /// <summary>One frame was decoded and consumed.</summary>
    Frame,

    /// <summary>The input is not a valid frame; the connection should be closed after saying why.</summary>
    Error,
}

/// <summary>
/// Encodes and decodes fast-path frames. The decoder is a pure function over a
/// <see cref="SequenceReader{T}"/>, as Kestrel parses: it never copies a payload to look at it and never
/// trusts a length before checking it against the type's limit, so a peer cannot make it allocate.
/// </summary>
public static class FrameCodec
{
    public const ushort Magic = 0x5047;
    public const int HeaderSize = 16;

    /// <summary>Default largest payload of one frame (a copy chunk).</summary>
    public const int DefaultMaxPayload = 16 << 20;

    /// <summary>Size of the fixed fields of each type; -1 for a type that is not a frame.</summary>
    public static int FixedSize(FrameType type) => type switch
    {
        FrameType.Hello => 8,                    // u16 version, u16 lease id length, u16 token length, u16 reserved
        FrameType.HelloVersion1 => 4,            // u16 lease id length, u16 token length
        FrameType.MemAlloc => 8,                 // bytes
        FrameType.MemFree => 8,                  // ptr
        FrameType.MemcpyHtoD => 16,              // ptr, stream
        FrameType.MemcpyDtoH => 24,              // ptr, bytes, stream
        FrameType.MemcpyDtoD => 32,              // dst, src, bytes, stream
        FrameType.Memset => 32,                  // ptr, count, stream, u32 value, u32 element size
        FrameType.ModuleLoad => 8,               // u32 builtin, u32 staged
        FrameType.ModuleStage => 16,             // offset, total
        FrameType.ModuleUnload => 8,             // module
        FrameType.ModuleGetFunction => 8,        // module
        FrameType.ModuleGetGlobal => 8,          // module
        FrameType.Launch => 48,                  // function, stream, grid xyz, block xyz, shared mem, u32 reserved
        FrameType.StreamCreate => 8,             // u32 flags, u32 reserved
        FrameType.EventCreate or FrameType.Synchronize or FrameType.MemGetInfo or FrameType.Usage => 0,
        FrameType.StreamDestroy or FrameType.StreamSynchronize => 8,
        FrameType.StreamWaitEvent or FrameType.EventRecord => 16,  // stream/event pairs
        FrameType.EventDestroy or FrameType.EventSynchronize or FrameType.EventQuery => 8,
        FrameType.EventElapsedTime => 16,        // start, end
        FrameType.Join => 16,                    // session, u16 lease id length, u16 token length, u32 reserved
        FrameType.MemcpyHtoDStriped => 32,       // ptr, stream, bytes, u32 chunk bytes, u32 connections
        FrameType.MemcpyDtoHStriped => 32,       // ptr, bytes, stream, u32 chunk bytes, u32 connections
        FrameType.StripeChunk => 8,              // offset
        FrameType.Reply => 16,
        FrameType.Data => 12,
        FrameType.Error => 16,
        FrameType.SessionInfo => 0,
        FrameType.Notice => 8,
        _ => -1,
    };

    /// <summary>Largest payload a type may carry; bulk types are bounded by <paramref name="maxPayload"/>.</summary>
    public static int MaxPayload(FrameType type, int maxPayload) => type switch
    {
        FrameType.MemcpyHtoD or FrameType.Data or FrameType.ModuleLoad or FrameType.ModuleStage or FrameType.StripeChunk => maxPayload,
        FrameType.Hello or FrameType.HelloVersion1 or FrameType.Join => 16 * 1024,
        FrameType.ModuleGetFunction or FrameType.ModuleGetGlobal => MaxSymbolBytes,
        FrameType.Launch => 4096,
        FrameType.Error or FrameType.SessionInfo or FrameType.Notice => 64 * 1024,
        _ => 0,
    };

    /// <summary>
    /// The longest kernel or variable name (UTF-8) a lookup carries: C++ template kernels have mangled names of
    /// several KiB (cuBLAS 11.8's reach 2 KiB).
    /// </summary>
    public const int MaxSymbolBytes = 16 * 1024;

    /// <summary>
    /// Decodes one frame from <paramref name="reader"/>. On <see cref="DecodeStatus.Frame"/> the reader has
    /// moved past it; on NeedMore and Error it has not moved. <paramref name="error"/> says what is wrong.
    /// </summary>
    public static DecodeStatus TryDecode(ref SequenceReader<byte> reader, int maxPayload, out Frame frame, out string? error)
    {
        frame = default;
        var status = TryDecodeHeader(reader, maxPayload, out var header, out var fixedFields, out error);
        if (status != DecodeStatus.Frame)
        {
            return status;
        }

        var total = HeaderSize + fixedFields.Length + (long)header.PayloadLength;
        if (reader.Remaining < total)
        {
            return DecodeStatus.NeedMore;
        }

        var payload = reader.UnreadSequence.Slice(HeaderSize + fixedFields.Length, header.PayloadLength);
        reader.Advance(total);
        frame = new Frame(header, fixedFields, payload);
        return DecodeStatus.Frame;
    }

    /// <summary>
    /// Decodes only the header and fixed fields of the frame <paramref name="reader"/> is at, for a reader that takes
    /// a large payload straight from the connection into its destination instead of waiting for it in a buffer. Never
    /// moves the reader. <see cref="DecodeStatus.Frame"/> means the header and fixed fields are whole and valid
    /// (whatever of the payload has come); the checks and errors are those of <see cref="TryDecode"/>.
    /// </summary>
    public static DecodeStatus TryDecodeHeader(in SequenceReader<byte> reader, int maxPayload, out FrameHeader header, out ReadOnlySequence<byte> fixedFields, out string? error)
    {
        header = default;
        fixedFields = default;
        error = null;
        if (reader.Remaining < HeaderSize)
        {
            return DecodeStatus.NeedMore;
        }

        Span<byte> bytes = stackalloc byte[HeaderSize];
        reader.TryCopyTo(bytes);
        var magic = BinaryPrimitives.ReadUInt16LittleEndian(bytes);
        var type = (FrameType)BinaryPrimitives.ReadUInt16LittleEndian(bytes[2..]);
        var payloadLength = BinaryPrimitives.ReadUInt32LittleEndian(bytes[4..]);
        var seq = BinaryPrimitives.ReadUInt64LittleEndian(bytes[8..]);
        if (magic != Magic)
        {
            error = $"bad frame magic 0x{magic:x4} (expected 0x{Magic:x4}): not a GpuPool fast-path peer, or the stream lost its framing";
            return DecodeStatus.Error;
        }

        var fixedSize = FixedSize(type);
        if (fixedSize < 0)
        {
            error = $"unknown frame type {(ushort)type} in frame #{seq}";
            return DecodeStatus.Error;
        }

        var limit = MaxPayload(type, maxPayload);
        if (payloadLength > (uint)limit)
        {
            error = $"frame #{seq} ({type}) declares a payload of {payloadLength} bytes; the limit for {type} is {limit}";
            return DecodeStatus.Error;
        }

        if (reader.Remaining < HeaderSize + fixedSize)
        {
            return DecodeStatus.NeedMore;
        }

        header = new FrameHeader(type, payloadLength, seq);
        fixedFields = reader.UnreadSequence.Slice(HeaderSize, fixedSize);
        return DecodeStatus.Frame;
    }

    /// <summary>
    /// True when <paramref name="unread"/> starts with a well-formed header whose payload is over the message
    /// limit <paramref name="maxPayload"/>: the peer sent a message too large, rather than garbage. A payload
    /// over a small type's own limit but within the message limit (Launch params past 4 KiB, a MemFree with
    /// any payload) is a malformed frame, not a large message, though the decoder rejects both alike.
    /// </summary>
    public static bool IsOversized(in ReadOnlySequence<byte> unread, int maxPayload)
    {
        if (unread.Length < HeaderSize)
        {
            return false;
        }

        Span<byte> header = stackalloc byte[HeaderSize];
        unread.Slice(0, HeaderSize).CopyTo(header);
        var type = (FrameType)BinaryPrimitives.ReadUInt16LittleEndian(header[2..]);
        return BinaryPrimitives.ReadUInt16LittleEndian(header) == Magic
            && FixedSize(type) >= 0
            && BinaryPrimitives.ReadUInt32LittleEndian(header[4..]) is var length
            && length > (uint)MaxPayload(type, maxPayload)
            && length > (uint)maxPayload;
    }

    /// <summary>
    /// Writes one frame: header, the type's fixed fields (exactly <see cref="FixedSize"/> bytes) and the
    /// payload, which is copied once, into the writer's own buffer.
    /// </summary>
    public static void Write(IBufferWriter<byte> writer, FrameType type, ulong seq, ReadOnlySpan<byte> fixedFields, ReadOnlySpan<byte> payload)
    {
        WriteHeader(writer, type, seq, fixedFields, payload.Length);
        writer.Write(payload);
    }

    /// <summary>Like the span overload, for a payload that is already a sequence (for example pipe memory).</summary>
    public static void Write(IBufferWriter<byte> writer, FrameType type, ulong seq, ReadOnlySpan<byte> fixedFields, in ReadOnlySequence<byte> payload)
    {
        WriteHeader(writer, type, seq, fixedFields, checked((int)payload.Length));
        foreach (var segment in payload)
        {
            writer.Write(segment.Span);
        }
    }

    /// <summary>Writes a header and fixed fields for a payload of <paramref name="payloadLength"/> bytes that the caller sends after them.</summary>
    public static void WriteHeader(IBufferWriter<byte> writer, FrameType type, ulong seq, ReadOnlySpan<byte> fixedFields, int payloadLength)
    {
        var fixedSize = FixedSize(type);
        if (fixedSize < 0 || fixedFields.Length != fixedSize)
        {
            throw new ArgumentException($"{type} takes {fixedSize} bytes of fixed fields, not {fixedFields.Length}", nameof(fixedFields));
        }

        var span = writer.GetSpan(HeaderSize + fixedSize);
        BinaryPrimitives.WriteUInt16LittleEndian(span, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(span[2..], (ushort)type);
        BinaryPrimitives.WriteUInt32LittleEndian(span[4..], checked((uint)payloadLength));
        BinaryPrimitives.WriteUInt64LittleEndian(span[8..], seq);
        fixedFields.CopyTo(span[HeaderSize..]);
        writer.Advance(HeaderSize + fixedSize);
    }
}

/// <summary>Reads a frame's fixed fields in order; they are copied to the stack first, since they may span segments.</summary>
public ref struct FixedFields
{
    private readonly Span<byte> _bytes;
    private int _offset;

    public FixedFields(in ReadOnlySequence<byte> source, Span<byte> scratch)
    {
        _bytes = scratch[..(int)source.Length];
        source.CopyTo(_bytes);
        _offset = 0;
    }

    public ulong U64()
    {
        var v = BinaryPrimitives.ReadUInt64LittleEndian(_bytes[_offset..]);
        _offset += 8;
        return v;
    }

    public uint U32()
    {
        var v = BinaryPrimitives.ReadUInt32LittleEndian(_bytes[_offset..]);
        _offset += 4;
        return v;
    }

    public ushort U16()
    {
        var v = BinaryPrimitives.ReadUInt16LittleEndian(_bytes[_offset..]);
        _offset += 2;
        return v;
    }
}

/// <summary>Builds a frame's fixed fields on the stack, in order.</summary>
public ref struct FixedBuilder(Span<byte> scratch)
{
    private readonly Span<byte> _bytes = scratch;
    private int _offset;

    public readonly ReadOnlySpan<byte> Written => _bytes[.._offset];

    public FixedBuilder U64(ulong value)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(_bytes[_offset..], value);
        _offset += 8;
        return this;
    }

    public FixedBuilder U32(uint value)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(_bytes[_offset..], value);
        _offset += 4;
        return this;
    }

    public FixedBuilder U16(ushort value)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(_bytes[_offset..], value);
        _offset += 2;
        return this;
    }
}
