using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Protocol.Ops;

/// <summary>Waits for all of the session's device work; answered Done, or with the sticky error of a failed fire-and-forget op.</summary>
public readonly record struct SynchronizeOp : IOp<SynchronizeOp>
{
    public const string Name = "synchronize";

    public static FrameType Type => FrameType.Synchronize;

    public static SynchronizeOp Read(ref FixedFields fields) => default;

    public void Write(ref FixedBuilder fields)
    {
    }

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload) => request.Synchronize = new CtxSynchronize();
}

/// <summary>The lease's free and total memory; answered {free, total}.</summary>
public readonly record struct MemGetInfoOp : IOp<MemGetInfoOp>
{
    public static FrameType Type => FrameType.MemGetInfo;

    public static MemGetInfoOp Read(ref FixedFields fields) => default;

    public void Write(ref FixedBuilder fields)
    {
    }

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload) => request.MemGetInfo = new MemGetInfo();
}
