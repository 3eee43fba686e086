using System.Buffers;
using System.Buffers.Binary;
using GpuPool.Protocol.Transport;

namespace GpuPool.Protocol.Tests.Transport;

public sealed class FrameCodecErrorTests
{
    [Fact]
    public void Bad_magic_is_an_error_that_names_the_magic_it_saw()
    {
        var input = Header(0x1234, (ushort)FrameType.Hello, 0, 1, fixedSize: 4);

        var error = DecodeError(input);

        Assert.Equal("bad frame magic 0x1234 (expected 0x5047): not a GpuPool fast-path peer, or the stream lost its framing", error);
    }

    [Fact]
    public void Unknown_type_is_an_error_that_names_the_type_and_the_frame()
    {
        var input = Header(FrameCodec.Magic, 99, 0, 7, fixedSize: 0);

        var error = DecodeError(input);

        Assert.Equal("unknown frame type 99 in frame #7", error);
    }

    [Fact]
    public void Launch_with_5000_bytes_of_params_is_over_its_4096_byte_limit()
    {
        var writer = new ArrayBufferWriter<byte>();
        FrameCodec.Write(writer, FrameType.Launch, 12, new byte[FrameCodec.FixedSize(FrameType.Launch)], new byte[5000]);

        var error = DecodeError(writer.WrittenSpan.ToArray());

        Assert.Equal("frame #12 (Launch) declares a payload of 5000 bytes; the limit for Launch is 4096", error);
    }

    [Fact]
    public void MemFree_with_a_one_byte_payload_is_over_its_limit_of_none()
    {
        var writer = new ArrayBufferWriter<byte>();
        FrameCodec.Write(writer, FrameType.MemFree, 3, new byte[8], new byte[1]);

        var error = DecodeError(writer.WrittenSpan.ToArray());

        Assert.Equal("frame #3 (MemFree) declares a payload of 1 bytes; the limit for MemFree is 0", error);
    }

    [Fact]
    public void Hello_larger_than_16_KiB_is_an_error_from_the_header_alone_without_waiting_for_the_payload()
    {
        var input = Header(FrameCodec.Magic, (ushort)FrameType.Hello, 16 * 1024 + 1, 1, fixedSize: 0);

        var error = DecodeError(input);

        Assert.Equal("frame #1 (Hello) declares a payload of 16385 bytes; the limit for Hello is 16384", error);
    }

    [Fact]
    public void Hello_of_exactly_16_KiB_decodes()
    {
        var writer = new ArrayBufferWriter<byte>();
        FrameCodec.Write(writer, FrameType.Hello, 1, new byte[FrameCodec.FixedSize(FrameType.Hello)], new byte[16 * 1024]);
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(writer.WrittenMemory));

        var status = FrameCodec.TryDecode(ref reader, FrameCodec.DefaultMaxPayload, out var frame, out _);

        Assert.Equal(DecodeStatus.Frame, status);
        Assert.Equal(16 * 1024, frame.Payload.Length);
    }

    [Fact]
    public void Bulk_payload_over_the_configured_maximum_is_an_error_that_names_the_limit()
    {
        var input = Header(FrameCodec.Magic, (ushort)FrameType.MemcpyHtoD, 1025, 5, fixedSize: 16);

        var error = DecodeError(input, maxPayload: 1024);

        Assert.Equal("frame #5 (MemcpyHtoD) declares a payload of 1025 bytes; the limit for MemcpyHtoD is 1024", error);
    }

    /// <summary>A header with arbitrary fields, followed by <paramref name="fixedSize"/> zero bytes.</summary>
    private static byte[] Header(ushort magic, ushort type, uint payloadLength, ulong seq, int fixedSize)
    {
        var bytes = new byte[FrameCodec.HeaderSize + fixedSize];
        BinaryPrimitives.WriteUInt16LittleEndian(bytes, magic);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2), type);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), payloadLength);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(8), seq);
        return bytes;
    }

    /// <summary>Decodes <paramref name="input"/>, checks it is an Error that left the reader in place, and returns the reason.</summary>
    private static string? DecodeError(byte[] input, int maxPayload = FrameCodec.DefaultMaxPayload)
    {
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(input));

        var status = FrameCodec.TryDecode(ref reader, maxPayload, out _, out var error);

        Assert.Equal(DecodeStatus.Error, status);
        Assert.Equal(0, reader.Consumed);
        return error;
    }
}
