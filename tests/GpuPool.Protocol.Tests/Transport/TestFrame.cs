using System.Buffers;
using CsCheck;
using GpuPool.Protocol.Transport;

namespace GpuPool.Protocol.Tests.Transport;

/// <summary>A frame as the tests build it: what went into <see cref="FrameCodec.Write(IBufferWriter{byte}, FrameType, ulong, ReadOnlySpan{byte}, ReadOnlySpan{byte})"/>.</summary>
internal sealed record TestFrame(FrameType Type, ulong Seq, byte[] Fixed, byte[] Payload)
{
    /// <summary>Limit the tests decode with: bulk types may carry this much, small enough to generate at the limit.</summary>
    public const int MaxPayload = 64 * 1024;

    public static readonly FrameType[] Types = Enum.GetValues<FrameType>();

    /// <summary>Any valid frame: every type, any seq, random fixed fields of the type's size, a payload up to and at the type's limit.</summary>
    public static readonly Gen<TestFrame> Any = Gen.OneOf(Types).SelectMany(type =>
    {
        var limit = FrameCodec.MaxPayload(type, MaxPayload);
        var length = Gen.OneOf(Gen.Int[0, limit], Gen.Int[0, Math.Min(limit, 64)], Gen.Const(limit));
        return Gen.Select(
            Gen.ULong,
            Gen.Byte.Array[FrameCodec.FixedSize(type)],
            length.SelectMany(n => Gen.Byte.Array[n]),
            (seq, fixedFields, payload) => new TestFrame(type, seq, fixedFields, payload));
    });

    public int Size => FrameCodec.HeaderSize + Fixed.Length + Payload.Length;

    public void WriteTo(IBufferWriter<byte> writer) => FrameCodec.Write(writer, Type, Seq, Fixed, Payload);

    public byte[] Encode()
    {
        var writer = new ArrayBufferWriter<byte>();
        WriteTo(writer);
        return writer.WrittenSpan.ToArray();
    }

    /// <summary>Decodes one frame from <paramref name="reader"/> and checks it is this one and that exactly its bytes were consumed.</summary>
    public void AssertDecodedFrom(ref SequenceReader<byte> reader)
    {
        var before = reader.Consumed;
        var status = FrameCodec.TryDecode(ref reader, MaxPayload, out var frame, out var error);

        Assert.Equal(DecodeStatus.Frame, status);
        Assert.Null(error);
        Assert.Equal(new FrameHeader(Type, (uint)Payload.Length, Seq), frame.Header);
        Assert.Equal(Fixed, frame.Fixed.ToArray());
        Assert.Equal(Payload, frame.Payload.ToArray());
        Assert.Equal(before + Size, reader.Consumed);
    }

    public override string ToString() => $"{Type} #{Seq} fixed {Fixed.Length} B, payload {Payload.Length} B";
}
