using System.Buffers;
using CsCheck;
using Google.Protobuf;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Protocol.Tests.Transport;

/// <summary>
/// The gRPC op stream's reader of bulk messages must agree with the generated parser on every message it
/// accepts, and leave everything else to it.
/// </summary>
public sealed class GrpcOpStreamTests
{
    private static readonly Gen<int[]> Cuts = Gen.Int[0, int.MaxValue].Array[0, 8];

    private static readonly Gen<OpRequest> CopyRequests =
        Gen.Select(Gen.ULong, Gen.ULong, Gen.ULong, Gen.Byte.Array[0, 3000])
            .Select((seq, ptr, stream, data) => new OpRequest { Seq = seq, MemcpyHtod = new MemcpyHtoD { Ptr = ptr, Stream = stream, Data = ByteString.CopyFrom(data) } });

    private static readonly Gen<OpReply> DataReplies =
        Gen.Select(Gen.ULong, Gen.ULong, Gen.Bool, Gen.Byte.Array[0, 3000])
            .Select((seq, offset, last, data) => new OpReply { Seq = seq, Data = new DataChunk { Offset = offset, LastChunk = last, Bytes = ByteString.CopyFrom(data) } });

    private static IEnumerable<int> Scale(int[] cuts, int length) => cuts.Select(c => c % (length + 1));

    [Fact]
    public void Any_copy_to_the_device_split_at_random_points_reads_as_the_generated_code_wrote_it()
    {
        Gen.Select(CopyRequests, Cuts).Sample((request, cuts) =>
        {
            var bytes = request.ToByteArray();

            Assert.True(GrpcOpStream.TryReadCopyToDevice(Segments.Split(bytes, Scale(cuts, bytes.Length)), out var seq, out var ptr, out var stream, out var data));

            Assert.Equal(request.Seq, seq);
            Assert.Equal(request.MemcpyHtod.Ptr, ptr);
            Assert.Equal(request.MemcpyHtod.Stream, stream);
            Assert.Equal(request.MemcpyHtod.Data.ToByteArray(), data.ToArray());
        }, iter: 500);
    }

    [Fact]
    public void Any_chunk_of_a_copy_to_the_host_split_at_random_points_reads_as_the_generated_code_wrote_it()
    {
        Gen.Select(DataReplies, Cuts).Sample((reply, cuts) =>
        {
            var bytes = reply.ToByteArray();

            Assert.True(GrpcOpStream.TryReadCopyData(Segments.Split(bytes, Scale(cuts, bytes.Length)), out var seq, out var offset, out var last, out var data));

            Assert.Equal(reply.Seq, seq);
            Assert.Equal(reply.Data.Offset, offset);
            Assert.Equal(reply.Data.LastChunk, last);
            Assert.Equal(reply.Data.Bytes.ToByteArray(), data.ToArray());
        }, iter: 500);
    }

    [Fact]
    public void Other_ops_and_replies_are_left_to_the_generated_parser()
    {
        var others = new IMessage[]
        {
            new OpRequest { Seq = 3, Memset = new Memset { Ptr = 1, Count = 2 } },
            new OpRequest { Seq = 4, MemcpyDtoh = new MemcpyDtoH { Ptr = 1, Bytes = 2 } },
            new OpRequest { Seq = 5 },
            new OpReply { Seq = 6, Error = new Error { Code = ErrorCode.InvalidAddress, Message = "no" } },
            new OpReply { Seq = 7, Done = new Empty() },
            new OpReply { Seq = 8, Error = new Error { Message = "sticky" }, Data = new DataChunk { Bytes = ByteString.CopyFrom(1, 2, 3) } },
        };

        foreach (var message in others)
        {
            var bytes = new ReadOnlySequence<byte>(message.ToByteArray());
            Assert.False(GrpcOpStream.TryReadCopyToDevice(bytes, out _, out _, out _, out _), message.ToString());
            Assert.False(GrpcOpStream.TryReadCopyData(bytes, out _, out _, out _, out _), message.ToString());
        }
    }

    [Fact]
    public void Copies_with_unknown_or_repeated_fields_are_left_to_the_generated_parser()
    {
        var copy = new OpRequest { Seq = 9, MemcpyHtod = new MemcpyHtoD { Ptr = 0x1000, Data = ByteString.CopyFrom(1, 2, 3) } }.ToByteArray();
        byte[][] unusual =
        [
            [.. copy, 0x08, 0x0A], // seq again: the last one wins in protobuf
            [.. copy, 0x2A, 0x02, 0x08, 0x01], // the copy again: protobuf merges the two
            [.. copy, 0x98, 0x06, 0x01], // field 99, unknown
            [0x08, 0x09, 0x2A, 0x07, 0x08, 0x01, 0x12, 0x01, 0x05, 0x20, 0x01], // field 4 inside the copy, unknown
        ];

        foreach (var bytes in unusual)
        {
            Assert.False(GrpcOpStream.TryReadCopyToDevice(new ReadOnlySequence<byte>(bytes), out _, out _, out _, out _), Convert.ToHexString(bytes));
            OpRequest.Parser.ParseFrom(bytes); // still a valid message, for the generated parser to read
        }
    }

    [Fact]
    public void Random_and_mutated_messages_are_either_read_exactly_as_the_generated_parser_reads_them_or_left_to_it()
    {
        var mutated = Gen.Select(CopyRequests, Gen.Int[0, int.MaxValue].Array[1, 4], Gen.Byte.Array[1, 4], Gen.Int[0, 3])
            .Select((request, positions, values, kind) =>
            {
                var bytes = request.ToByteArray();
                return kind switch
                {
                    0 => bytes[..(positions[0] % (bytes.Length + 1))], // truncated
                    1 => Mutate(bytes, positions, values), // bytes changed
                    2 => [.. bytes, .. values], // something appended
                    _ => values, // noise
                };
            });

        mutated.Sample(bytes =>
        {
            if (!GrpcOpStream.TryReadCopyToDevice(new ReadOnlySequence<byte>(bytes), out var seq, out var ptr, out var stream, out var data))
            {
                return;
            }

            var parsed = OpRequest.Parser.ParseFrom(bytes);
            Assert.Equal(OpRequest.OpOneofCase.MemcpyHtod, parsed.OpCase);
            Assert.Equal(parsed.Seq, seq);
            Assert.Equal(parsed.MemcpyHtod.Ptr, ptr);
            Assert.Equal(parsed.MemcpyHtod.Stream, stream);
            Assert.Equal(parsed.MemcpyHtod.Data.ToByteArray(), data.ToArray());
        }, iter: 20_000);
    }

    private static byte[] Mutate(byte[] bytes, int[] positions, byte[] values)
    {
        var copy = bytes.ToArray();
        if (copy.Length > 0)
        {
            for (var i = 0; i < positions.Length; i++)
            {
                copy[positions[i] % copy.Length] = values[i % values.Length];
            }
        }

        return copy;
    }
}
