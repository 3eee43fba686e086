using System.Buffers;

namespace GpuPool.Protocol.Transport;

/// <summary>
/// The gRPC op stream (session.proto's <c>DeviceSession/Open</c>) as the client and the broker bind it with
/// their own marshallers, so that bulk bytes are not copied into a fresh <c>ByteString</c> on the way in.
/// The two messages that carry bulk bytes — an <c>OpRequest</c> holding a <c>MemcpyHtoD</c> and an
/// <c>OpReply</c> holding a <c>DataChunk</c> — share one shape on the wire: <c>seq</c> (field 1) and field 5,
/// a message of a varint (1), the bytes (2) and a varint (3). <see cref="TryReadCopyToDevice"/> and
/// <see cref="TryReadCopyData"/> read that shape straight from the received buffers and hand back the
/// bytes as a slice of them; anything else (another op, unknown or repeated fields, a malformed message)
/// answers false, and the caller parses it with the generated parser, which also reports what is wrong.
/// </summary>
public static class GrpcOpStream
{
    /// <summary>The service of session.proto, as the generated code names it on the wire.</summary>
    public const string ServiceName = "gpupool.v1.DeviceSession";

    public const string MethodName = "Open";

    /// <summary>Reads an <c>OpRequest</c> that is a copy to the device; <paramref name="data"/> is a slice of <paramref name="message"/>.</summary>
    public static bool TryReadCopyToDevice(in ReadOnlySequence<byte> message, out ulong seq, out ulong ptr, out ulong stream, out ReadOnlySequence<byte> data)
        => TryReadBulk(message, out seq, out ptr, out data, out stream);

    /// <summary>Reads an <c>OpReply</c> that is a chunk of a copy to the host; <paramref name="data"/> is a slice of <paramref name="message"/>.</summary>
    public static bool TryReadCopyData(in ReadOnlySequence<byte> message, out ulong seq, out ulong offset, out bool last, out ReadOnlySequence<byte> data)
    {
        var read = TryReadBulk(message, out seq, out offset, out data, out var flag);
        last = flag != 0;
        return read;
    }

    private const ulong SeqTag = (1 << 3) | 0;
    private const ulong BulkTag = (5 << 3) | 2;
    private const ulong FirstTag = (1 << 3) | 0;
    private const ulong BytesTag = (2 << 3) | 2;
    private const ulong ThirdTag = (3 << 3) | 0;

    private static bool TryReadBulk(in ReadOnlySequence<byte> message, out ulong seq, out ulong first, out ReadOnlySequence<byte> bytes, out ulong third)
    {
        seq = first = third = 0;
        bytes = default;
        var reader = new SequenceReader<byte>(message);
        bool sawSeq = false, sawBulk = false;
        while (!reader.End)
        {
            if (!TryReadVarint(ref reader, out var tag))
            {
                return false;
            }

            if (tag == SeqTag && !sawSeq)
            {
                sawSeq = TryReadVarint(ref reader, out seq);
                if (!sawSeq)
                {
                    return false;
                }
            }
            else if (tag == BulkTag && !sawBulk)
            {
                if (!TryReadLength(ref reader, out var length) || !TryReadInner(message.Slice(reader.Position, length), out first, out bytes, out third))
                {
                    return false;
                }

                reader.Advance(length);
                sawBulk = true;
            }
            else
            {
                return false;
            }
        }

        return sawBulk;
    }

    private static bool TryReadInner(in ReadOnlySequence<byte> inner, out ulong first, out ReadOnlySequence<byte> bytes, out ulong third)
    {
        first = third = 0;
        bytes = default;
        var reader = new SequenceReader<byte>(inner);
        bool sawFirst = false, sawBytes = false, sawThird = false;
        while (!reader.End)
        {
            if (!TryReadVarint(ref reader, out var tag))
            {
                return false;
            }

            if (tag == FirstTag && !sawFirst)
            {
                sawFirst = true;
                if (!TryReadVarint(ref reader, out first))
                {
                    return false;
                }
            }
            else if (tag == BytesTag && !sawBytes)
            {
                sawBytes = true;
                if (!TryReadLength(ref reader, out var length))
                {
                    return false;
                }

                bytes = inner.Slice(reader.Position, length);
                reader.Advance(length);
            }
            else if (tag == ThirdTag && !sawThird)
            {
                sawThird = true;
                if (!TryReadVarint(ref reader, out third))
                {
                    return false;
                }
            }
            else
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>A length prefix that fits in what is left of the message.</summary>
    private static bool TryReadLength(ref SequenceReader<byte> reader, out long length)
    {
        length = 0;
        if (!TryReadVarint(ref reader, out var value) || value > (ulong)reader.Remaining)
        {
            return false;
        }

        length = (long)value;
        return true;
    }

    private static bool TryReadVarint(ref SequenceReader<byte> reader, out ulong value)
    {
        value = 0;
        for (var shift = 0; shift < 64; shift += 7)
        {
            if (!reader.TryRead(out var b))
            {
                return false;
            }

            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                // The tenth byte may carry only the top bit of a 64-bit value.
                return shift < 63 || b <= 1;
            }
        }

        return false;
    }
}
