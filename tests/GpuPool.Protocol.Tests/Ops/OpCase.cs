using System.Buffers;
using System.Text;
using CsCheck;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Protocol.Tests.Ops;

/// <summary>
/// One op value's codec checks, built once per op type by <see cref="For{TOp}"/> so the specifications can run them
/// by name: the frame it writes, its fixed fields, and its gRPC message.
/// </summary>
internal sealed record OpCase(Type OpType, Action WritesItsFixedSize, Action RoundTripsThroughItsFrame, Action RoundTripsThroughItsMessage)
{
    private const int Iterations = 200;

    /// <param name="ops">Op values with random fields.</param>
    /// <param name="payloads">Payloads the op's frame may carry (empty for an op that carries none).</param>
    /// <param name="fromProto">The op and its payload read back from the request <see cref="IOp{TSelf}.ToProto"/> set.</param>
    public static OpCase For<TOp>(Gen<TOp> ops, Gen<byte[]> payloads, Func<OpRequest, (TOp Op, byte[] Payload)> fromProto)
        where TOp : struct, IOp<TOp>
        => new(
            typeof(TOp),
            () => ops.Sample(op => Assert.Equal(FrameCodec.FixedSize(TOp.Type), FixedFields(op).Length), iter: Iterations),
            () => Gen.Select(ops, Gen.ULong, payloads).Sample((op, seq, payload) =>
            {
                var writer = new ArrayBufferWriter<byte>();
                OpFrames.Write(writer, seq, op, payload);
                var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(writer.WrittenMemory));

                Assert.Equal(DecodeStatus.Frame, FrameCodec.TryDecode(ref reader, FrameCodec.DefaultMaxPayload, out var frame, out var error));
                Assert.Null(error);
                Assert.True(reader.End);
                Assert.Equal(TOp.Type, frame.Type);
                Assert.Equal(seq, frame.Seq);
                Assert.Equal(op, OpFrames.Read<TOp>(frame));
                Assert.Equal(payload, frame.Payload.ToArray());
            }, iter: Iterations),
            () => Gen.Select(ops, payloads).Sample((op, payload) =>
            {
                var request = new OpRequest { Seq = 1 };
                op.ToProto(request, payload);

                // The frame type is the op's field number in OpRequest.op, so both transports name an op alike.
                Assert.Equal((int)TOp.Type, (int)request.OpCase);
                var (back, carried) = fromProto(request);
                Assert.Equal(op, back);
                Assert.Equal(payload, carried);
            }, iter: Iterations));

    /// <summary>An op that carries no payload.</summary>
    public static Gen<byte[]> NoPayload { get; } = Gen.Const(Array.Empty<byte>());

    /// <summary>A payload of bytes, up to <paramref name="max"/> long.</summary>
    public static Gen<byte[]> Bytes(int max) => Gen.Byte.Array[0, max];

    /// <summary>A kernel's name, which the gRPC message carries as a string.</summary>
    public static Gen<byte[]> Name { get; } = Gen.String[0, 40].Select(Encoding.UTF8.GetBytes);

    private static byte[] FixedFields<TOp>(TOp op)
        where TOp : struct, IOp<TOp>
    {
        var fields = new FixedBuilder(stackalloc byte[64]);
        op.Write(ref fields);
        return fields.Written.ToArray();
    }

    public override string ToString() => OpType.Name;
}
