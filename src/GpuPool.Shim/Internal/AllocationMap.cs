namespace GpuPool.Shim.Internal;

/// <summary>
/// The device allocations this process holds, so that a copy or memset naming a null, freed or out-of-range
/// pointer fails at once with CUDA_ERROR_INVALID_VALUE, as the driver's synchronous checks do, instead of as a
/// sticky error at the next synchronize. The broker checks every range again; this is the early answer. Module variables
/// (cuModuleGetGlobal) are ranges here too, while their module is loaded.
/// </summary>
internal sealed class AllocationMap
{
    private readonly object _gate = new();
    private volatile Entry[] _sorted = [];

    /// <summary>
    /// An allocation: its range, the context that owns it, its process-wide buffer id, the pool it came from
    /// (cuMemAllocAsync), if any, and (<paramref name="Module"/> set) the module whose variable it is: a variable goes
    /// with its module, not cuMemFree.
    /// </summary>
    internal readonly record struct Entry(ulong Base, ulong Size, Context Owner, ulong BufferId, MemPoolObject? Pool, ModuleObject? Module = null);

    public void Add(ulong ptr, ulong size, Context owner, MemPoolObject? pool = null, ModuleObject? module = null)
    {
        lock (_gate)
        {
            var list = new List<Entry>(_sorted) { new(ptr, size, owner, BufferIds.Next(), pool, module) };
            list.Sort(static (a, b) => a.Base.CompareTo(b.Base));
            _sorted = [.. list];
        }
    }

    /// <summary>The allocation that starts exactly at <paramref name="ptr"/>, removed; null if there is none.</summary>
    public Entry? Remove(ulong ptr)
    {
        lock (_gate)
        {
            var sorted = _sorted;
            var index = Array.FindIndex(sorted, e => e.Base == ptr);
            if (index < 0)
            {
                return null;
            }

            var found = sorted[index];
            _sorted = [.. sorted[..index], .. sorted[(index + 1)..]];
            return found;
        }
    }

    /// <summary>The allocation that contains <paramref name="ptr"/>, if any.</summary>
    public Entry? Find(ulong ptr)
    {
        var sorted = _sorted;
        int lo = 0, hi = sorted.Length - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >>> 1;
            if (sorted[mid].Base <= ptr)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        if (hi < 0)
        {
            return null;
        }

        var e = sorted[hi];
        return ptr - e.Base < e.Size ? e : null;
    }

    /// <summary>Throws CUDA_ERROR_INVALID_VALUE unless [ptr, ptr + bytes) lies inside one allocation.</summary>
    public void CheckRange(ulong ptr, ulong bytes, string what)
    {
        if (ptr == 0)
        {
            throw new CudaException(CuResult.InvalidValue, $"{what}: the device pointer is null");
        }

        if (Find(ptr) is not { } e)
        {
            throw new CudaException(CuResult.InvalidValue, $"{what}: 0x{ptr:x} is not inside any device allocation of this process (freed, or never allocated)");
        }

        if (bytes > e.Size - (ptr - e.Base))
        {
            throw new CudaException(CuResult.InvalidValue,
                $"{what}: 0x{ptr:x} + {bytes} bytes runs past the end of its allocation (0x{e.Base:x}, {e.Size} bytes) by {bytes - (e.Size - (ptr - e.Base))} bytes");
        }
    }
}

/// <summary>CU_POINTER_ATTRIBUTE_BUFFER_ID: a number per allocation, device or host, never reused in the process.</summary>
internal static class BufferIds
{
    private static long s_next;

    public static ulong Next() => (ulong)Interlocked.Increment(ref s_next);
}
