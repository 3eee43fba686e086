namespace GpuPool.Protocol.Ops;

/// <summary>
/// What an op's successful reply carries. The fast path sends every kind as the same two numbers; the gRPC stream
/// names the kind (the <c>OpReply.result</c> field it sets).
/// </summary>
public enum ReplyKind
{
    /// <summary>Nothing: the op is done.</summary>
    Done,

    /// <summary>A device pointer (MemAlloc).</summary>
    DevicePtr,

    /// <summary>A module, function, stream or event handle, or a striped copy's connections.</summary>
    Handle,

    /// <summary>1 or 0 (EventQuery).</summary>
    Ready,

    /// <summary>A float's bits (EventElapsedTime).</summary>
    ElapsedMs,

    /// <summary>Free and total bytes (MemGetInfo).</summary>
    MemInfo,

    /// <summary>A module variable's device address and size (ModuleGetGlobal).</summary>
    Global,

    /// <summary>The lease's device time in nanoseconds and its share of the device over the last 10 s in parts per million (Usage).</summary>
    Usage,
}
