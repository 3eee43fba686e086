using System.Runtime.InteropServices;
using GpuPool.Ptx.Engine;

namespace GpuPool.Ptx.Tests.Engine;

/// <summary>Allocations in host memory that a launch may touch, found as the broker's allocation table finds them.</summary>
internal sealed unsafe class HostMemory : IPtxMemory, IDisposable
{
    private readonly List<(ulong Start, ulong End)> _allocations = [];
    private readonly List<ulong> _forgotten = [];

    public ulong Allocate(int bytes)
    {
        var p = (ulong)NativeMemory.AllocZeroed((nuint)Math.Max(bytes, 1));
        _allocations.Add((p, p + (ulong)bytes));
        return p;
    }

    public ulong Upload<T>(T[] values)
        where T : unmanaged
    {
        var p = Allocate(values.Length * sizeof(T));
        values.AsSpan().CopyTo(new Span<T>((void*)p, values.Length));
        return p;
    }

    public T[] Download<T>(ulong p, int count)
        where T : unmanaged
        => new ReadOnlySpan<T>((void*)p, count).ToArray();

    public bool TryFind(ulong address, out ulong start, out ulong end)
    {
        foreach (var (s, e) in _allocations)
        {
            if (address >= s && address < e)
            {
                (start, end) = (s, e);
                return true;
            }
        }

        (start, end) = (0, 0);
        return false;
    }

    /// <summary>Takes allocation <paramref name="p"/> out of the table, as a free does (its memory stays until Dispose, so a stray write harms nothing).</summary>
    public void Forget(ulong p)
    {
        _allocations.RemoveAll(a => a.Start == p);
        _forgotten.Add(p);
    }

    public void Dispose()
    {
        foreach (var p in _allocations.Select(a => a.Start).Concat(_forgotten))
        {
            NativeMemory.Free((void*)p);
        }
    }
}

/// <summary>A kernel's parameter block, packed as cuLaunchKernel packs it.</summary>
internal sealed class Params
{
    private readonly List<byte> _bytes = [];

    public Params Add<T>(T value)
        where T : unmanaged
    {
        var size = System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        while (_bytes.Count % size != 0)
        {
            _bytes.Add(0);
        }

        var bytes = new byte[size];
        MemoryMarshal.Write(bytes, in value);
        _bytes.AddRange(bytes);
        return this;
    }

    public byte[] ToArray() => [.. _bytes];
}
