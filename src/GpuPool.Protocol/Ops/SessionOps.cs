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

/// <summary>
/// The lease's measured device time and its share of the device over the last 10 s; answered {device time in ns,
/// share in parts per million} (<see cref="ReplyKind.Usage"/>).
/// </summary>
public readonly record struct UsageOp : IOp<UsageOp>
{
    public static FrameType Type => FrameType.Usage;

    public static UsageOp Read(ref FixedFields fields) => default;

    public void Write(ref FixedBuilder fields)
    {
    }

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload) => request.Usage = new UsageQuery();
}
