namespace GpuPool.Devices.Contexts;

/// <summary>
/// One allocation of a lease: where it starts, its size, and what its backend needs to free it (0 where nothing).
/// <paramref name="Module"/> is the handle of the module whose variable it is (0: memory the lease allocated), which
/// goes with its module and cannot be freed on its own.
/// </summary>
internal readonly record struct Allocation(ulong Base, ulong Size, nint Native, ulong Module = 0);

/// <summary>
/// One lease's allocations as address ranges, with the bounds rules of every backend: a range an operation names must
/// lie wholly inside one allocation of the lease. Readers (the streams) see an immutable sorted snapshot and take no lock.
/// </summary>
internal sealed class AllocationTable
{
    private readonly Lock _gate = new();
    private volatile Allocation[] _sorted = [];

    public ulong BytesInUse { get; private set; }

    public int Count => _sorted.Length;

    public void Add(Allocation allocation) => AddRange([allocation]);

    /// <summary>
    /// Adds several allocations at once (a module's variables: thousands for a library's modules), in one new snapshot:
    /// the new ones sorted, then merged with the old in one pass.
    /// </summary>
    public void AddRange(IReadOnlyCollection<Allocation> allocations)
    {
        if (allocations.Count == 0)
        {
            return;
        }

        var added = allocations.ToArray();
        Array.Sort(added, static (a, b) => a.Base.CompareTo(b.Base));
        lock (_gate)
        {
            var old = _sorted;
            var merged = new Allocation[old.Length + added.Length];
            int i = 0, j = 0, k = 0;
            while (i < old.Length && j < added.Length)
            {
                merged[k++] = old[i].Base <= added[j].Base ? old[i++] : added[j++];
            }

            old.AsSpan(i).CopyTo(merged.AsSpan(k));
            added.AsSpan(j).CopyTo(merged.AsSpan(k + old.Length - i));
            _sorted = merged;
            foreach (var a in added)
            {
                BytesInUse += a.Size;
            }
        }
    }

    /// <summary>Forgets the allocation that starts at <paramref name="pointer"/> and returns it, for freeing.</summary>
    public Allocation Remove(ulong pointer)
    {
        lock (_gate)
        {
            var index = IndexOfBase(_sorted, pointer);
            if (index < 0)
            {
                throw new DeviceException(DeviceErrorCode.InvalidAddress, Find(_sorted, pointer) is { } a
                    ? $"cannot free 0x{pointer:x}: it points inside the allocation at 0x{a.Base:x}, not at its start"
                    : $"cannot free 0x{pointer:x}: it is not an allocation of this lease");
            }

            var found = _sorted[index];
            if (found.Module != 0)
            {
                throw new DeviceException(DeviceErrorCode.InvalidAddress,
                    $"cannot free 0x{pointer:x}: it is a variable of module {found.Module}, which goes when its module is unloaded");
            }

            var list = new List<Allocation>(_sorted);
            list.RemoveAt(index);
            _sorted = [.. list];
            BytesInUse -= found.Size;
            return found;
        }
    }

    /// <summary>Forgets the variables of module <paramref name="module"/> and returns them, for freeing with it.</summary>
    public Allocation[] RemoveModule(ulong module)
    {
        lock (_gate)
        {
            var removed = Array.FindAll(_sorted, a => a.Module == module);
            if (removed.Length > 0)
            {
                _sorted = Array.FindAll(_sorted, a => a.Module != module);
                foreach (var a in removed)
                {
                    BytesInUse -= a.Size;
                }
            }

            return removed;
        }
    }

    /// <summary>Empties the table; returns what it held, for freeing.</summary>
    public Allocation[] TakeAll()
    {
        lock (_gate)
        {
            var all = _sorted;
            _sorted = [];
            BytesInUse = 0;
            return all;
        }
    }

    /// <summary>Throws InvalidAddress, naming <paramref name="what"/>, unless [pointer, pointer+length) lies inside one allocation.</summary>
    public void Check(ulong pointer, ulong length, RangeName what)
    {
        if (Find(_sorted, pointer) is not { } a)
        {
            throw new DeviceException(DeviceErrorCode.InvalidAddress, $"{what}: 0x{pointer:x} is not inside any allocation of this lease");
        }

        var room = a.Size - (pointer - a.Base);
        if (length > room)
        {
            throw new DeviceException(DeviceErrorCode.InvalidAddress,
                $"{what}: 0x{pointer:x} + {length} bytes runs past the end of its allocation (0x{a.Base:x}, {a.Size} bytes) by {length - room} bytes");
        }
    }

    /// <summary>
    /// Checks <paramref name="count"/> elements of <paramref name="elementSize"/> bytes at <paramref name="pointer"/>, with
    /// the alignment a device load of one element needs, and returns their size in bytes. No elements: nothing is read,
    /// nothing is checked but the alignment.
    /// </summary>
    public ulong CheckElements(ulong pointer, long count, int elementSize, RangeName what)
    {
        if (count < 0)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"{what}: negative element count {count}");
        }

        if (pointer % (ulong)elementSize != 0)
        {
            throw new DeviceException(DeviceErrorCode.InvalidAddress, $"{what}: 0x{pointer:x} is not aligned to {elementSize} bytes");
        }

        if (count == 0)
        {
            return 0;
        }

        ulong bytes;
        try
        {
            bytes = checked((ulong)count * (ulong)elementSize);
        }
        catch (OverflowException)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"{what}: {count} elements of {elementSize} bytes is more than any memory holds");
        }

        Check(pointer, bytes, what);
        return bytes;
    }

    /// <summary>The allocation that holds <paramref name="pointer"/>, as [start, end); false when none does. Safe beside changes.</summary>
    public bool TryFind(ulong pointer, out ulong start, out ulong end)
    {
        if (Find(_sorted, pointer) is { } a)
        {
            (start, end) = (a.Base, a.Base + a.Size);
            return true;
        }

        (start, end) = (0, 0);
        return false;
    }

    private static Allocation? Find(Allocation[] sorted, ulong pointer)
        => IndexAtOrBefore(sorted, pointer) is var i and >= 0 && pointer - sorted[i].Base < sorted[i].Size ? sorted[i] : null;

    private static int IndexOfBase(Allocation[] sorted, ulong pointer)
        => IndexAtOrBefore(sorted, pointer) is var i and >= 0 && sorted[i].Base == pointer ? i : -1;

    /// <summary>The last allocation that starts at or before <paramref name="pointer"/> (allocations never overlap, so only it can hold it); -1 when none does.</summary>
    private static int IndexAtOrBefore(Allocation[] sorted, ulong pointer)
    {
        int lo = 0, hi = sorted.Length - 1, found = -1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >>> 1;
            if (sorted[mid].Base <= pointer)
            {
                found = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        return found;
    }
}
