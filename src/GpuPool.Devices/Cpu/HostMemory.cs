using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using GpuPool.Devices.Contexts;
using GpuPool.Devices.Streams;

namespace GpuPool.Devices.Cpu;

/// <summary>
/// A cpu context's device memory: zeroed host memory at the very addresses the lease sees, resolved into spans only
/// through the lease's allocation table, and the copies and memsets over it.
/// </summary>
internal sealed unsafe class HostMemory(AllocationTable allocations) : IDeviceMemory, ICopyEngine, GpuPool.Ptx.Engine.IPtxMemory
{
    internal const ulong Alignment = 256;

    /// <summary>Device copies larger than this go in pieces, each a span of one operation's reach.</summary>
    private const ulong DeviceCopyChunk = 1UL << 30;

    public bool IsHostMemory => true;

    /// <summary>For the PTX engine: the allocation of the lease (or module variable) that holds an address.</summary>
    public bool TryFind(ulong address, out ulong start, out ulong end) => allocations.TryFind(address, out start, out end);

    /// <summary>Zeroed memory aligned to 256 bytes, as cuMemAlloc gives.</summary>
    public Allocation Allocate(ulong bytes, ulong used, ulong limit) => Allocate(bytes, Alignment);

    /// <summary>Zeroed memory aligned to <paramref name="alignment"/> bytes (a power of two), at least 256.</summary>
    public Allocation Allocate(ulong bytes, ulong alignment)
    {
        alignment = Math.Max(alignment, Alignment);

        // calloc hands back zero pages lazily for large sizes, so a fresh lease never sees old data.
        var raw = (nint)NativeMemory.AllocZeroed((nuint)(bytes + alignment));
        var aligned = ((ulong)raw + alignment - 1) & ~(alignment - 1);
        return new Allocation(aligned, bytes, raw);
    }

    /// <summary>Writes a new allocation's first bytes, before it is in the lease's table (a module variable's initial value).</summary>
    public void Initialize(Allocation allocation, ReadOnlySpan<byte> bytes)
    {
        if ((ulong)bytes.Length > allocation.Size)
        {
            throw new ArgumentOutOfRangeException(nameof(bytes), $"{bytes.Length} bytes do not fit an allocation of {allocation.Size}");
        }

        bytes.CopyTo(new Span<byte>((void*)allocation.Base, bytes.Length));
    }

    public void Free(Allocation allocation) => NativeMemory.Free((void*)allocation.Native);

    public void FreeAtClose(Allocation[] allocations)
    {
        foreach (var a in allocations)
        {
            Free(a);
        }
    }

    /// <summary>
    /// The bytes of [pointer, pointer+length) when that range lies inside one allocation; otherwise an error that names
    /// <paramref name="what"/> and says how the range is wrong.
    /// </summary>
    public Span<byte> HostView(ulong pointer, ulong length, RangeName what)
    {
        if (length > int.MaxValue)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"{what}: a range of {length} bytes is larger than one operation can address (2 GiB)");
        }

        allocations.Check(pointer, length, what);
        return new Span<byte>((void*)pointer, (int)length);
    }

    /// <summary>Like <see cref="HostView"/>, typed, also checking the alignment a device load of T needs.</summary>
    public Span<T> Resolve<T>(ulong pointer, long count, RangeName what)
        where T : unmanaged
    {
        var bytes = allocations.CheckElements(pointer, count, sizeof(T), what);
        return bytes == 0 ? [] : MemoryMarshal.Cast<byte, T>(HostView(pointer, bytes, what));
    }

    /// <summary>A copy here is work of the host's cores, as a kernel is.</summary>
    public bool CopiesTakeSlots => true;

    public void CopyToDevice(WorkStream stream, ulong dst, ReadOnlySpan<byte> data)
        => data.CopyTo(HostView(dst, (ulong)data.Length, RangeNames.CopyToDevice));

    /// <summary>
    /// A sink that can send device memory from where it is gets it as memory, and the stream waits for it without holding
    /// a thread (the memory stays valid: freeing waits for the stream).
    /// </summary>
    public ValueTask CopyToHostAsync(WorkStream stream, ulong src, ulong bytes, ICopyToHostSink sink)
    {
        var memory = HostView(src, bytes, RangeNames.CopyToHost);
        if (!sink.AcceptsMemory)
        {
            sink.OnData(memory);
            return default;
        }

        return sink.OnMemoryAsync((nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(memory)), memory.Length);
    }

    public void CopyDeviceToDevice(WorkStream stream, ulong dst, ulong src, ulong bytes)
    {
        // Span.CopyTo is memmove within a piece; across pieces, the order that reads every byte before it is overwritten.
        var backward = dst > src && dst < src + bytes;
        for (ulong done = 0; done < bytes; done += DeviceCopyChunk)
        {
            var n = Math.Min(DeviceCopyChunk, bytes - done);
            var offset = backward ? bytes - done - n : done;
            HostView(src + offset, n, RangeNames.DeviceCopySource).CopyTo(HostView(dst + offset, n, RangeNames.DeviceCopyDestination));
        }
    }

    public void Memset(WorkStream stream, ulong dst, uint value, int elementSize, ulong count)
    {
        var span = HostView(dst, count * (ulong)elementSize, RangeNames.Memset);
        switch (elementSize)
        {
            case 1:
                span.Fill((byte)value);
                break;
            case 2:
                MemoryMarshal.Cast<byte, ushort>(span).Fill((ushort)value);
                break;
            default:
                MemoryMarshal.Cast<byte, uint>(span).Fill(value);
                break;
        }
    }
}
