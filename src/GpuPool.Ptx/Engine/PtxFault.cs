namespace GpuPool.Ptx.Engine;

/// <summary>Why a launch on the engine ended early.</summary>
public enum PtxFaultKind
{
    /// <summary>A thread read or wrote memory outside every allocation of the lease (or its block's shared or its own local memory).</summary>
    IllegalAddress,

    /// <summary>An access not aligned to its size, which a GPU refuses too.</summary>
    MisalignedAddress,

    /// <summary>The launch ran past the deadline the broker gave it.</summary>
    Timeout,

    /// <summary>Threads wait at a barrier or warp-wide instruction that the rest of their block or warp never reaches.</summary>
    Deadlock,

    /// <summary>The kernel executed <c>trap</c>, or an instruction failed as the ISA says it does.</summary>
    Trap,
}

/// <summary>A launch that failed on the engine: what, where (kernel, thread, line) and the address when there is one.</summary>
public sealed class PtxFault(PtxFaultKind kind, string message) : Exception(message)
{
    public PtxFaultKind Kind { get; } = kind;
}

/// <summary>A module or kernel the engine will not run: refused when it is loaded, naming the instruction, kernel and line.</summary>
public sealed class PtxNotSupportedException(string message) : Exception(message);
