using Google.Protobuf;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Protocol.Ops;

/// <summary>Allocates device memory; answered with the pointer.</summary>
public readonly record struct MemAllocOp(ulong Bytes) : IOp<MemAllocOp>
{
    public static FrameType Type => FrameType.MemAlloc;

    public static MemAllocOp Read(ref FixedFields fields) => new(fields.U64());

    public static MemAllocOp From(MemAlloc message) => new(message.Bytes);

    public void Write(ref FixedBuilder fields) => fields = fields.U64(Bytes);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload) => request.MemAlloc = new MemAlloc { Bytes = Bytes };
}

/// <summary>Frees an allocation named by its base address, once the work queued before it has run; answered Done.</summary>
public readonly record struct MemFreeOp(ulong Ptr) : IOp<MemFreeOp>
{
    public static FrameType Type => FrameType.MemFree;

    public static MemFreeOp Read(ref FixedFields fields) => new(fields.U64());

    public static MemFreeOp From(MemFree message) => new(message.Ptr);

    public void Write(ref FixedBuilder fields) => fields = fields.U64(Ptr);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload) => request.MemFree = new MemFree { Ptr = Ptr };
}

/// <summary>Copies the payload to <see cref="Ptr"/> in the stream's order. Fire-and-forget; a large copy is several.</summary>
public readonly record struct MemcpyHtoDOp(ulong Ptr, ulong Stream) : IOp<MemcpyHtoDOp>
{
    public const string Name = "memcpy_htod";

    public static FrameType Type => FrameType.MemcpyHtoD;

    public static MemcpyHtoDOp Read(ref FixedFields fields) => new(fields.U64(), fields.U64());

    public static MemcpyHtoDOp From(MemcpyHtoD message) => new(message.Ptr, message.Stream);

    public void Write(ref FixedBuilder fields) => fields = fields.U64(Ptr).U64(Stream);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload)
        => request.MemcpyHtod = new MemcpyHtoD { Ptr = Ptr, Stream = Stream, Data = ByteString.CopyFrom(payload) };
}

/// <summary>Copies <see cref="Bytes"/> from the device to the host when the stream reaches it; answered with Data chunks.</summary>
public readonly record struct MemcpyDtoHOp(ulong Ptr, ulong Bytes, ulong Stream) : IOp<MemcpyDtoHOp>
{
    public const string Name = "memcpy_dtoh";

    public static FrameType Type => FrameType.MemcpyDtoH;

    public static MemcpyDtoHOp Read(ref FixedFields fields) => new(fields.U64(), fields.U64(), fields.U64());

    public static MemcpyDtoHOp From(MemcpyDtoH message) => new(message.Ptr, message.Bytes, message.Stream);

    public void Write(ref FixedBuilder fields) => fields = fields.U64(Ptr).U64(Bytes).U64(Stream);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload)
        => request.MemcpyDtoh = new MemcpyDtoH { Ptr = Ptr, Bytes = Bytes, Stream = Stream };
}

/// <summary>Copies between two device ranges in the stream's order. Fire-and-forget.</summary>
public readonly record struct MemcpyDtoDOp(ulong Dst, ulong Src, ulong Bytes, ulong Stream) : IOp<MemcpyDtoDOp>
{
    public const string Name = "memcpy_dtod";

    public static FrameType Type => FrameType.MemcpyDtoD;

    public static MemcpyDtoDOp Read(ref FixedFields fields) => new(fields.U64(), fields.U64(), fields.U64(), fields.U64());

    public static MemcpyDtoDOp From(MemcpyDtoD message) => new(message.Dst, message.Src, message.Bytes, message.Stream);

    public void Write(ref FixedBuilder fields) => fields = fields.U64(Dst).U64(Src).U64(Bytes).U64(Stream);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload)
        => request.MemcpyDtod = new MemcpyDtoD { Dst = Dst, Src = Src, Bytes = Bytes, Stream = Stream };
}

/// <summary>Sets <see cref="Count"/> elements of <see cref="ElementSize"/> bytes (1, 2 or 4) to the low bytes of <see cref="Value"/>. Fire-and-forget.</summary>
public readonly record struct MemsetOp(ulong Ptr, ulong Count, ulong Stream, uint Value, uint ElementSize) : IOp<MemsetOp>
{
    public const string Name = "memset";

    public static FrameType Type => FrameType.Memset;

    public static MemsetOp Read(ref FixedFields fields) => new(fields.U64(), fields.U64(), fields.U64(), fields.U32(), fields.U32());

    public static MemsetOp From(Memset message) => new(message.Ptr, message.Count, message.Stream, message.Value, message.ElementSize);

    public void Write(ref FixedBuilder fields) => fields = fields.U64(Ptr).U64(Count).U64(Stream).U32(Value).U32(ElementSize);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload)
        => request.Memset = new Memset { Ptr = Ptr, Count = Count, Stream = Stream, Value = Value, ElementSize = ElementSize };
}
