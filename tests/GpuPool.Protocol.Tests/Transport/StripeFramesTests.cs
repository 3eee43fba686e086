using System.Buffers;
using CsCheck;
using GpuPool.Protocol.Transport;

namespace GpuPool.Protocol.Tests.Transport;

public sealed class StripeFramesTests
{
    [Fact]
    public void Any_striped_copy_of_either_direction_decodes_to_the_fields_it_was_written_with()
    {
        Gen.Select(Gen.ULong, Gen.ULong, Gen.ULong, Gen.ULong, Gen.UInt, Gen.UInt, Gen.Bool).Sample((seq, ptr, stream, bytes, chunk, connections, toDevice) =>
        {
            var type = toDevice ? FrameType.MemcpyHtoDStriped : FrameType.MemcpyDtoHStriped;
            var copy = new StripedCopy(seq, ptr, stream, bytes, chunk, connections);

            var frame = Decode(writer => StripeFrames.WriteCopy(writer, type, copy));

            Assert.Equal(type, frame.Type);
            Assert.Equal(copy, StripeFrames.ReadCopy(frame));
        }, iter: 300);
    }

    [Fact]
    public void Any_join_decodes_to_its_session_lease_and_token()
    {
        Gen.Select(Gen.ULong, Gen.String[0, 40], Gen.String[0, 300]).Sample((session, lease, token) =>
        {
            var frame = Decode(writer => StripeFrames.WriteJoin(writer, session, lease, token));

            Assert.Equal(FrameType.Join, frame.Type);
            Assert.Equal(0UL, frame.Seq);
            Assert.Equal(new JoinRequest(session, lease, token), StripeFrames.ReadJoin(frame, out var error));
            Assert.Null(error);
        }, iter: 300);
    }

    [Fact]
    public void Join_whose_lengths_do_not_add_up_is_refused_with_the_reason()
    {
        var bytes = Encode(writer => StripeFrames.WriteJoin(writer, 7, "l-1", "token"));
        bytes[FrameCodec.HeaderSize + 8] ^= 1; // the lease id length

        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(bytes));
        Assert.Equal(DecodeStatus.Frame, FrameCodec.TryDecode(ref reader, TestFrame.MaxPayload, out var frame, out _));
        Assert.Null(StripeFrames.ReadJoin(frame, out var error));
        Assert.Equal("join frame: lease id (2) and token (5) lengths do not add up to the payload (8)", error);
    }

    [Fact]
    public void Chunk_count_rounds_up_and_a_copy_of_zero_chunk_bytes_has_none()
    {
        Assert.Equal(3UL, new StripedCopy(1, 0, 0, (2 << 20) + 1, 1 << 20, 1).ChunkCount);
        Assert.Equal(2UL, new StripedCopy(1, 0, 0, 2 << 20, 1 << 20, 1).ChunkCount);
        Assert.Equal(0UL, new StripedCopy(1, 0, 0, 5, 0, 1).ChunkCount);
    }

    private static byte[] Encode(Action<IBufferWriter<byte>> write)
    {
        var writer = new ArrayBufferWriter<byte>();
        write(writer);
        return writer.WrittenSpan.ToArray();
    }

    private static Frame Decode(Action<IBufferWriter<byte>> write)
    {
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(Encode(write)));
        Assert.Equal(DecodeStatus.Frame, FrameCodec.TryDecode(ref reader, TestFrame.MaxPayload, out var frame, out var error));
        Assert.Null(error);
        Assert.True(reader.End);
        return frame;
    }
}
