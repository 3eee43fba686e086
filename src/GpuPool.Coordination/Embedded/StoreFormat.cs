using System.Buffers.Binary;
using System.Numerics;
using System.Text;

namespace GpuPool.Coordination.Embedded;

/// <summary>
/// The embedded store's file format. The file starts with <see cref="Magic"/>, then records, each framed as
/// <c>[u32 payload length][u32 CRC-32C of the payload][u32 CRC-32C of the first 8 header bytes][payload]</c>,
/// little-endian. The header has its own checksum so that a length is only trusted once it checks, and so
/// that scanning for the next whole record after a damaged one (see <see cref="Read"/>) is cheap.
/// A payload is a <see cref="RecordType"/> byte and its fields: integers little-endian, strings as an i32 byte
/// count and strict UTF-8 (-1 for null), byte strings as an i32 count and the bytes.
/// </summary>
internal static class StoreFormat
{
    public const int HeaderLength = 12;

    /// <summary>The largest payload written or read; a larger put fails rather than write a record no reader takes.</summary>
    public const int MaxPayloadLength = 1 << 30;

    /// <summary>"GPSTORE" and the format version.</summary>
    public static ReadOnlySpan<byte> Magic => "GPSTORE\u0001"u8;

    /// <summary>Strict: a key with a lone surrogate is refused rather than stored as something else.</summary>
    public static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static uint Crc32C(ReadOnlySpan<byte> data)
    {
        var crc = uint.MaxValue;
        while (data.Length >= sizeof(ulong))
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[sizeof(ulong)..];
        }

        foreach (var b in data)
        {
            crc = BitOperations.Crc32C(crc, b);
        }

        return ~crc;
    }

    /// <summary>
    /// Reads the record at the start of <paramref name="rest"/>, which runs to the end of the file. A record
    /// that fails to read is <see cref="ReadStatus.Torn"/> when no whole record follows it anywhere (what a
    /// crash in the middle of the last append leaves: a prefix of a record, a zero-filled or garbled tail), and
    /// <see cref="ReadStatus.Corrupt"/> when one does: then damage sits in front of records that were written
    /// later, and dropping it would lose them.
    /// </summary>
    public static ReadStatus Read(ReadOnlySpan<byte> rest, out ReadOnlySpan<byte> payload, out int consumed, out string? problem)
    {
        payload = default;
        consumed = 0;
        if (rest.IsEmpty)
        {
            problem = null;
            return ReadStatus.End;
        }

        problem = Check(rest, out var length);
        if (problem is null)
        {
            payload = rest.Slice(HeaderLength, length);
            consumed = HeaderLength + length;
            return ReadStatus.Record;
        }

        for (var next = 1; next <= rest.Length - HeaderLength; next++)
        {
            if (Check(rest[next..], out _) is null)
            {
                problem += $", and a whole record follows {next} bytes later";
                return ReadStatus.Corrupt;
            }
        }

        return ReadStatus.Torn;
    }

    /// <summary>Null when a whole record with good checksums starts at <paramref name="rest"/>; else what is wrong.</summary>
    private static string? Check(ReadOnlySpan<byte> rest, out int length)
    {
        length = 0;
        if (rest.Length < HeaderLength)
        {
            return $"a record header cut short after {rest.Length} of {HeaderLength} bytes";
        }

        if (BinaryPrimitives.ReadUInt32LittleEndian(rest[8..]) != Crc32C(rest[..8]))
        {
            return rest.ContainsAnyExcept((byte)0) ? "a record header fails its checksum" : $"{rest.Length} zero bytes where a record should start";
        }

        var claimed = BinaryPrimitives.ReadUInt32LittleEndian(rest);
        if (claimed > MaxPayloadLength)
        {
            return $"a record claims {claimed} bytes, more than the limit of {MaxPayloadLength}";
        }

        if (rest.Length - HeaderLength < claimed)
        {
            return $"a record of {claimed} bytes cut short after {rest.Length - HeaderLength}";
        }

        if (Crc32C(rest.Slice(HeaderLength, (int)claimed)) != BinaryPrimitives.ReadUInt32LittleEndian(rest[4..]))
        {
            return "a record fails its checksum";
        }

        length = (int)claimed;
        return null;
    }
}

internal enum ReadStatus
{
    End,
    Record,
    Torn,
    Corrupt,
}

/// <summary>What a record says. The comments give each one's fields in order.</summary>
internal enum RecordType : byte
{
    /// <summary>i64 revision, i32 session count, i32 entry count; opens every file, and that many <see cref="SessionCreate"/> then <see cref="EntryState"/> records follow.</summary>
    Checkpoint = 1,

    /// <summary>key, value, i64 create revision, i64 mod revision, session id or null: a live key of a snapshot.</summary>
    EntryState = 2,

    /// <summary>session id, i64 TTL in ticks.</summary>
    SessionCreate = 3,

    /// <summary>session id, i64 the revision after its keys were deleted (one revision each, in key order).</summary>
    SessionEnd = 4,

    /// <summary>i64 revision, key, value, session id or null.</summary>
    Put = 5,

    /// <summary>i64 revision, key.</summary>
    Delete = 6,

    /// <summary>i64 revision, i32 count, then per write: u8 1 for a delete, key, and for a put its value and session id or null.</summary>
    Txn = 7,
}

/// <summary>Builds framed records into one reused buffer: <see cref="Begin"/> a record, write its fields, <see cref="End"/> it; several may sit in the buffer at once.</summary>
internal sealed class RecordWriter
{
    private byte[] _buffer = new byte[512];
    private int _length;
    private int _recordStart;

    public ReadOnlySpan<byte> Written => _buffer.AsSpan(0, _length);

    public void Clear() => _length = 0;

    public void WriteRaw(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(Grow(bytes.Length));
    }

    public void Begin(RecordType type)
    {
        _recordStart = _length;
        Grow(StoreFormat.HeaderLength);
        WriteByte((byte)type);
    }

    public void End()
    {
        var payloadLength = _length - _recordStart - StoreFormat.HeaderLength;
        if (payloadLength > StoreFormat.MaxPayloadLength)
        {
            _length = _recordStart;
            throw new ArgumentException($"a write of {payloadLength} bytes is larger than the embedded store's file takes ({StoreFormat.MaxPayloadLength} bytes per put or transaction)");
        }

        var header = _buffer.AsSpan(_recordStart, StoreFormat.HeaderLength);
        BinaryPrimitives.WriteUInt32LittleEndian(header, (uint)payloadLength);
        BinaryPrimitives.WriteUInt32LittleEndian(header[4..], StoreFormat.Crc32C(_buffer.AsSpan(_recordStart + StoreFormat.HeaderLength, payloadLength)));
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], StoreFormat.Crc32C(header[..8]));
    }

    public void WriteByte(byte value) => Grow(1)[0] = value;

    public void WriteInt32(int value) => BinaryPrimitives.WriteInt32LittleEndian(Grow(sizeof(int)), value);

    public void WriteInt64(long value) => BinaryPrimitives.WriteInt64LittleEndian(Grow(sizeof(long)), value);

    public void WriteBytes(ReadOnlySpan<byte> value)
    {
        WriteInt32(value.Length);
        WriteRaw(value);
    }

    public void WriteString(string value)
    {
        var count = StoreFormat.Utf8.GetByteCount(value);
        WriteInt32(count);
        StoreFormat.Utf8.GetBytes(value, Grow(count));
    }

    public void WriteNullableString(string? value)
    {
        if (value is null)
        {
            WriteInt32(-1);
        }
        else
        {
            WriteString(value);
        }
    }

    private Span<byte> Grow(int count)
    {
        if ((long)_length + count > Array.MaxLength)
        {
            throw new ArgumentException("a write is larger than the embedded store's file takes");
        }

        if (_length + count > _buffer.Length)
        {
            Array.Resize(ref _buffer, (int)Math.Min(Array.MaxLength, Math.Max((long)_buffer.Length * 2, (long)_length + count)));
        }

        var span = _buffer.AsSpan(_length, count);
        _length += count;
        return span;
    }
}

/// <summary>Reads one record's fields; a field that runs past the payload throws <see cref="InvalidDataException"/>.</summary>
internal ref struct RecordReader
{
    private readonly ReadOnlySpan<byte> _payload;
    private int _position;

    public RecordReader(ReadOnlySpan<byte> payload)
    {
        _payload = payload;
    }

    public byte ReadByte() => Take(1)[0];

    public int ReadInt32() => BinaryPrimitives.ReadInt32LittleEndian(Take(sizeof(int)));

    public long ReadInt64() => BinaryPrimitives.ReadInt64LittleEndian(Take(sizeof(long)));

    public byte[] ReadBytes() => Take(ReadCount()).ToArray();

    public string ReadString() => ReadNullableString() ?? throw new InvalidDataException("a string field is null");

    public string? ReadNullableString()
    {
        var count = ReadInt32();
        if (count == -1)
        {
            return null;
        }

        var bytes = Take(CheckCount(count));
        try
        {
            return StoreFormat.Utf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw new InvalidDataException("a string field is not valid UTF-8");
        }
    }

    public readonly void EnsureEnd()
    {
        if (_position != _payload.Length)
        {
            throw new InvalidDataException($"{_payload.Length - _position} bytes left over after the record's fields");
        }
    }

    private int ReadCount() => CheckCount(ReadInt32());

    private readonly int CheckCount(int count) =>
        count >= 0 && count <= _payload.Length - _position ? count : throw new InvalidDataException($"a field claims {count} bytes, and {_payload.Length - _position} are left");

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count > _payload.Length - _position)
        {
            throw new InvalidDataException("a field runs past the end of its record");
        }

        var span = _payload.Slice(_position, count);
        _position += count;
        return span;
    }
}
