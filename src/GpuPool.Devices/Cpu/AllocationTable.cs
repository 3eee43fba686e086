using System.Runtime.InteropServices;

namespace GpuPool.Devices.Cpu;

/// <summary>
/// One context's allocations in host memory, with the checks that keep a lease inside its own memory:
/// every range an operation names must lie wholly inside one allocation of this table. Readers (the
/// stream workers) see an immutable sorted snapshot, so lookups take no lock.
/// </summary>
internal sealed unsafe class AllocationTable
{
    internal const ulong Alignment = 256;

    private readonly object _gate = new();
    private volatile Allocation[] _sorted = [];

    internal readonly record struct Allocation(ulong Base, ulong Size, IntPtr Raw);

    public ulong BytesInUse { get; private set; }

    public int Count => _sorted.Length;

    /// <summary>Allocates zeroed memory aligned to 256 bytes, as cuMemAlloc does; the caller has checked the limit.</summary>
    public ulong Allocate(ulong bytes)
    {
        // calloc hands back zero pages lazily for large sizes, so a fresh lease never sees old data.
        var raw = (IntPtr)NativeMemory.AllocZeroed((nuint)(bytes + Alignment));
        var aligned = ((ulong)raw + Alignment - 1) & ~(Alignment - 1);
        lock (_gate)
        {
            var list = new List<Allocation>(_sorted) { new(aligned, bytes, raw) };
            list.Sort(static (a, b) => a.Base.CompareTo(b.Base));
            _sorted = [.. list];
            BytesInUse += bytes;
        }

        return aligned;
    }

    /// <summary>Frees the allocation that starts at <paramref name="ptr"/>; returns its size.</summary>
    public ulong Free(ulong ptr)
    {
        Allocation found;
        lock (_gate)
        {
            var index = IndexOfBase(_sorted, ptr);
            if (index < 0)
            {
                var inside = Find(_sorted, ptr);
                throw new DeviceException(DeviceErrorCode.InvalidAddress, inside is { } a
                    ? $"cannot free 0x{ptr:x}: it points inside the allocation at 0x{a.Base:x}, not at its start"
                    : $"cannot free 0x{ptr:x}: it is not an allocation of this lease");
            }

            found = _sorted[index];
            var list = new List<Allocation>(_sorted);
            list.RemoveAt(index);
            _sorted = [.. list];
            BytesInUse -= found.Size;
        }

        NativeMemory.Free((void*)found.Raw);
        return found.Size;
    }

    /// <summary>Frees everything; used when the lease ends.</summary>
    public void FreeAll()
    {
        Allocation[] all;
        lock (_gate)
        {
            all = _sorted;
            _sorted = [];
            BytesInUse = 0;
        }

        foreach (var a in all)
        {
            NativeMemory.Free((void*)a.Raw);
        }
    }

    /// <summary>
    /// The bytes of [ptr, ptr+length) when that range lies inside one allocation; otherwise an
    /// InvalidAddress error that names <paramref name="what"/> and says how the range is wrong.
    /// </summary>
    public Span<byte> Resolve(ulong ptr, ulong length, string what)
    {
        if (length > int.MaxValue)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"{what}: a range of {length} bytes is larger than one operation can address (2 GiB)");
        }

        var snapshot = _sorted;
        var found = Find(snapshot, ptr);
        if (found is not { } a)
        {
            throw new DeviceException(DeviceErrorCode.InvalidAddress, $"{what}: 0x{ptr:x} is not inside any allocation of this lease");
        }

        var end = ptr - a.Base + length;
        if (end > a.Size)
        {
            throw new DeviceException(DeviceErrorCode.InvalidAddress,
                $"{what}: 0x{ptr:x} + {length} bytes runs past the end of its allocation (0x{a.Base:x}, {a.Size} bytes) by {end - a.Size} bytes");
        }

        return new Span<byte>((void*)ptr, (int)length);
    }

    /// <summary>Like <see cref="Resolve"/>, typed, also checking the alignment a device load of T needs.</summary>
    public Span<T> Resolve<T>(ulong ptr, long count, string what)
        where T : unmanaged
    {
        if (count < 0)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"{what}: negative element count {count}");
        }

        if (ptr % (ulong)sizeof(T) != 0)
        {
            throw new DeviceException(DeviceErrorCode.InvalidAddress, $"{what}: 0x{ptr:x} is not aligned to {sizeof(T)} bytes");
        }

        if (count == 0)
        {
            return [];
        }

        var bytes = Resolve(ptr, checked((ulong)count * (ulong)sizeof(T)), what);
        return MemoryMarshal.Cast<byte, T>(bytes);
    }

    private static Allocation? Find(Allocation[] sorted, ulong ptr)
    {
        int lo = 0, hi = sorted.Length - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >>> 1;
            var a = sorted[mid];
            if (ptr < a.Base)
            {
                hi = mid - 1;
            }
            else if (ptr >= a.Base + a.Size)
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

    private static int IndexOfBase(Allocation[] sorted, ulong ptr)
    {
        int lo = 0, hi = sorted.Length - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >>> 1;
            var b = sorted[mid].Base;
            if (b == ptr)
            {
                return mid;
            }

            if (ptr < b)
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
