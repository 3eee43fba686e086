namespace GpuPool.Ptx.Engine;

/// <summary>Instructions that need other threads: where each thread stops, hands its registers over and waits.</summary>
internal enum SiteKind
{
    /// <summary>bar.sync / barrier.sync: barrier a (0–15) of the block, for b threads if given, else every live thread.</summary>
    Barrier,

    /// <summary>bar.red.popc / .and / .or: a barrier that also reduces a predicate over the block.</summary>
    BarrierReduce,

    /// <summary>bar.arrive: counts towards a named barrier without waiting for it.</summary>
    Arrive,

    /// <summary>bar.warp.sync: the threads of a warp that its member mask names.</summary>
    WarpSync,
    Shuffle,
    Vote,
    Match,
    Redux,
}

/// <summary>
/// An operand of a collective instruction as the block runner reads it from the waiting threads' spilled registers:
/// a register's spill slot, or an immediate; <see cref="Negate"/> for a predicate written <c>!%p</c>.
/// </summary>
internal readonly record struct SiteOperand(int Slot, long Immediate = 0, bool Negate = false)
{
    public static readonly SiteOperand Sink = new(-1);

    public bool IsRegister => Slot >= 0;
}

/// <summary>One collective instruction of a kernel: its kind and mode ("up", "ballot", "popc", ...), its operands, and where it is.</summary>
internal sealed record CollectiveSite(SiteKind Kind, string Mode, string Type, SiteOperand[] Dests, SiteOperand[] Sources, string Where);
