using System.Buffers;
using CsCheck;
using GpuPool.Protocol.Transport;

namespace GpuPool.Protocol.Tests.Transport;

public sealed class FrameCodecRoundTripTests
{
    /// <summary>Cut points for a split, brought into the input by <see cref="Scale"/>.</summary>
    private static readonly Gen<int[]> Cuts = Gen.Int[0, int.MaxValue].Array[0, 8];

    private static IEnumerable<int> Scale(int[] cuts, int length) => cuts.Select(c => c % (length + 1));

    [Fact]
    public void Any_valid_frame_decodes_to_the_header_fixed_fields_and_payload_it_was_written_with()
    {
        TestFrame.Any.Sample(expected =>
        {
            var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(expected.Encode()));

            expected.AssertDecodedFrom(ref reader);
            Assert.True(reader.End);
        }, iter: 500);
    }

    [Fact]
    public void Any_valid_frame_split_into_segments_at_random_points_decodes_the_same()
    {
        Gen.Select(TestFrame.Any, Cuts).Sample((expected, cuts) =>
        {
            var bytes = expected.Encode();
            var reader = new SequenceReader<byte>(Segments.Split(bytes, Scale(cuts, bytes.Length)));

            expected.AssertDecodedFrom(ref reader);
            Assert.True(reader.End);
        }, iter: 500);
    }

    [Fact]
    public void Concatenated_frames_decode_one_after_another_and_the_reader_ends_exactly_at_the_end()
    {
        Gen.Select(TestFrame.Any.Array[1, 8], Cuts).Sample((frames, cuts) =>
        {
            var writer = new ArrayBufferWriter<byte>();
            foreach (var frame in frames)
            {
                frame.WriteTo(writer);
            }

            var bytes = writer.WrittenSpan.ToArray();
            var reader = new SequenceReader<byte>(Segments.Split(bytes, Scale(cuts, bytes.Length)));
            foreach (var frame in frames)
            {
                frame.AssertDecodedFrom(ref reader);
            }

            Assert.True(reader.End);
            Assert.Equal(bytes.Length, reader.Consumed);
            Assert.Equal(DecodeStatus.NeedMore, FrameCodec.TryDecode(ref reader, TestFrame.MaxPayload, out _, out _));
        }, iter: 200);
    }

    [Fact]
    public void Every_strict_prefix_of_a_valid_frame_needs_more_and_leaves_the_reader_where_it_was()
    {
        TestFrame.Any.Sample(frame =>
        {
            var whole = new ReadOnlySequence<byte>(frame.Encode());
            for (var length = 0; length < frame.Size; length++)
            {
                var reader = new SequenceReader<byte>(whole.Slice(0, length));

                var status = FrameCodec.TryDecode(ref reader, TestFrame.MaxPayload, out _, out var error);

                if (status != DecodeStatus.NeedMore || reader.Consumed != 0 || error is not null)
                {
                    Assert.Fail($"prefix of {length} of {frame.Size} bytes: {status}, consumed {reader.Consumed}, error {error}");
                }
            }
        }, iter: 200);
    }

    [Fact]
    public void Fixed_fields_built_with_FixedBuilder_read_back_with_FixedFields_even_across_segments()
    {
        Gen.Select(Gen.ULong, Gen.ULong, Gen.UInt, Gen.UShort, Cuts).Sample((ptr, count, value, size, cuts) =>
        {
            var builder = new FixedBuilder(stackalloc byte[32]).U64(ptr).U64(count).U64(0).U32(value).U16(size).U16(0);
            var writer = new ArrayBufferWriter<byte>();
            FrameCodec.Write(writer, FrameType.Memset, 1, builder.Written, ReadOnlySpan<byte>.Empty);
            var bytes = writer.WrittenSpan.ToArray();
            var reader = new SequenceReader<byte>(Segments.Split(bytes, Scale(cuts, bytes.Length)));

            Assert.Equal(DecodeStatus.Frame, FrameCodec.TryDecode(ref reader, TestFrame.MaxPayload, out var frame, out _));
            var fields = new FixedFields(frame.Fixed, stackalloc byte[32]);
            Assert.Equal(ptr, fields.U64());
            Assert.Equal(count, fields.U64());
            Assert.Equal(0UL, fields.U64());
            Assert.Equal(value, fields.U32());
            Assert.Equal(size, fields.U16());
        });
    }

    [Fact]
    public void Write_rejects_fixed_fields_of_the_wrong_size_for_the_type()
    {
        var writer = new ArrayBufferWriter<byte>();

        var ex = Assert.Throws<ArgumentException>(() => FrameCodec.Write(writer, FrameType.MemFree, 1, new byte[4], ReadOnlySpan<byte>.Empty));

        Assert.StartsWith("MemFree takes 8 bytes of fixed fields, not 4", ex.Message, StringComparison.Ordinal);
        Assert.Equal(0, writer.WrittenCount);
    }
}
