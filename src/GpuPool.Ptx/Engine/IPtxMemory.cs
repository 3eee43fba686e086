namespace GpuPool.Ptx.Engine;

/// <summary>
/// The global memory a launch may touch: the lease's allocations and its module variables, at the host addresses the
/// lease sees. The engine asks which allocation holds an address and keeps the answer for the next accesses.
/// </summary>
public interface IPtxMemory
{
    /// <summary>The allocation [start, end) that holds <paramref name="address"/>; false when none does.</summary>
    bool TryFind(ulong address, out ulong start, out ulong end);
}
