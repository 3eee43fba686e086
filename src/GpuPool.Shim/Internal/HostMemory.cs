namespace GpuPool.Shim.Internal;

/// <summary>
/// The program's host memory the shim knows of: what cuMemAllocHost/cuMemHostAlloc allocated and what
/// cuMemHostRegister registered. Pinning has no meaning across the network, but memory in these ranges is treated
/// as the driver treats page-locked memory: an asynchronous copy to the host may land in it later. The ranges also
/// answer cuMemHostGetFlags and the pointer attributes of host pointers.
/// </summary>
internal sealed class HostMemory
{
    private readonly object _gate = new();
    private readonly List<Range> _ranges = [];

    /// <summary>A known range: allocated by the shim (<see cref="Registered"/> false) or registered by the program.</summary>
    internal sealed record Range(nuint Start, nuint Size, uint Flags, bool Registered, Context Owner, ulong BufferId)
    {
        public bool Contains(nuint pointer, nuint bytes) => pointer >= Start && pointer - Start <= Size && bytes <= Size - (pointer - Start);
    }

    public void Add(nuint start, nuint size, uint flags, bool registered, Context owner)
    {
        lock (_gate)
        {
            _ranges.Add(new Range(start, size, flags, registered, owner, BufferIds.Next()));
        }
    }

    /// <summary>Adds a registration, unless it overlaps a known range: then CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED.</summary>
    public void Register(nuint start, nuint size, uint flags, Context owner)
    {
        lock (_gate)
        {
            foreach (var r in _ranges)
            {
                if (start < r.Start + r.Size && r.Start < start + size)
                {
                    throw new CudaException(CuResult.HostMemoryAlreadyRegistered,
                        $"0x{(ulong)start:x} + {size} bytes overlaps host memory already {(r.Registered ? "registered" : "allocated by cuMemAllocHost/cuMemHostAlloc")} (0x{(ulong)r.Start:x}, {r.Size} bytes)");
                }
            }

            _ranges.Add(new Range(start, size, flags, true, owner, BufferIds.Next()));
        }
    }

    /// <summary>The range that starts exactly at <paramref name="start"/> and is (or is not) a registration, removed; null if none.</summary>
    public Range? Remove(nuint start, bool registered)
    {
        lock (_gate)
        {
            var index = _ranges.FindIndex(r => r.Start == start && r.Registered == registered);
            if (index < 0)
            {
                return null;
            }

            var found = _ranges[index];
            _ranges.RemoveAt(index);
            return found;
        }
    }

    /// <summary>The range holding <paramref name="pointer"/>, if any.</summary>
    public Range? Find(nuint pointer) => Find(pointer, 1);

    /// <summary>The range holding all of [pointer, pointer + bytes), if any.</summary>
    public Range? Find(nuint pointer, nuint bytes)
    {
        lock (_gate)
        {
            foreach (var r in _ranges)
            {
                if (r.Contains(pointer, bytes))
                {
                    return r;
                }
            }
        }

        return null;
    }

    /// <summary>Whether [pointer, pointer + bytes) is host memory the driver would call page-locked.</summary>
    public bool IsPinned(nuint pointer, nuint bytes) => Find(pointer, bytes) is not null;

    /// <summary>Forgets the ranges a destroyed context owned (host allocations stay the program's to free).</summary>
    public void ForgetRegistrations(Context owner)
    {
        lock (_gate)
        {
            _ranges.RemoveAll(r => r.Registered && ReferenceEquals(r.Owner, owner));
        }
    }
}
