using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Protocol.Ops;

/// <summary>
/// One device-session op as a value: its fixed fields, laid out once for the fast path's frame and mapped once to its
/// session.proto message for the gRPC stream. A payload (kernel parameters, a module image, a copy's bytes) travels
/// beside the value, never inside it, so neither transport copies it into an object. Adding an op is: a struct here,
/// its <see cref="FrameType"/> and fixed size in <see cref="FrameCodec"/>, its executor method in the broker, its
/// SDK call, and its message in session.proto.
/// </summary>
public interface IOp<TSelf>
    where TSelf : struct, IOp<TSelf>
{
    /// <summary>The op's frame type, which is also its field number in <c>OpRequest.op</c>.</summary>
    static abstract FrameType Type { get; }

    /// <summary>Reads the op's fixed fields, in the order <see cref="Write"/> writes them.</summary>
    static abstract TSelf Read(ref FixedFields fields);

    /// <summary>Writes the op's fixed fields: exactly <see cref="FrameCodec.FixedSize"/> bytes of its type.</summary>
    void Write(ref FixedBuilder fields);

    /// <summary>Sets the op (and its payload, if it has one) on a gRPC request.</summary>
    void ToProto(OpRequest request, ReadOnlySpan<byte> payload);
}
