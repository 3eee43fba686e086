namespace GpuPool.Devices.Cuda;

/// <summary>
/// One lease's device allocations as address ranges, with the checks that keep the lease inside its own memory:
/// every range an operation names must lie wholly inside one allocation of this table (the same rules and
/// messages as the cpu backend's AllocationTable). Readers see an immutable sorted snapshot and take no lock.
/// </summary>
internal sealed class DeviceAllocations
{
    private readonly Lock _gate = new();
    private volatile Range[] _sorted = [];

    internal readonly record struct Range(ulong Base, ulong Size);

    public ulong BytesInUse { get; private set; }

    public int Count => _sorted.Length;

    public void Add(ulong pointer, ulong bytes)
    {
        lock (_gate)
        {
            var list = new List<Range>(_sorted) { new(pointer, bytes) };
            list.Sort(static (a, b) => a.Base.CompareTo(b.Base));
            _sorted = [.. list];
            BytesInUse += bytes;
        }
    }

    /// <summary>Forgets the allocation that starts at <paramref name="pointer"/>; returns its size.</summary>
    public ulong Remove(ulong pointer)
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
            var list = new List<Range>(_sorted);
            list.RemoveAt(index);
            _sorted = [.. list];
            BytesInUse -= found.Size;
            return found.Size;
        }
    }

    /// <summary>Empties the table; returns what it held, for freeing.</summary>
    public Range[] TakeAll()
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
    public void Check(ulong pointer, ulong length, string what)
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
    /// the alignment a device load of one element needs. No elements: nothing is read, nothing is checked.
    /// </summary>
    public void CheckElements(ulong pointer, long count, int elementSize, string what)
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
            return;
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
    }

    private static Range? Find(Range[] sorted, ulong pointer)
    {
        int lo = 0, hi = sorted.Length - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >>> 1;
            var a = sorted[mid];
            if (pointer < a.Base)
            {
                hi = mid - 1;
            }
            else if (pointer - a.Base >= a.Size)
            {
                lo = mid + 1;
            }
            else
            {
                return a;
            }
        }

        return null;
    }

    private static int IndexOfBase(Range[] sorted, ulong pointer)
    {
        int lo = 0, hi = sorted.Length - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >>> 1;
            var b = sorted[mid].Base;
            if (b == pointer)
            {
                return mid;
            }

            if (pointer < b)
            {
                hi = mid - 1;
            }
            else
            {
                lo = mid + 1;
            }
        }

        return -1;
    }
}
