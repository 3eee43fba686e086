using System.Runtime.InteropServices;
using GpuPool.Ptx.Engine;

namespace GpuPool.Ptx.Tests.Engine;

/// <summary>Allocations in host memory that a launch may touch, found as the broker's allocation table finds them.</summary>
internal sealed unsafe class HostMemory : IPtxMemory, IDisposable
{
    private readonly List<(ulong Start, ulong End)> _allocations = [];

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

    public void Dispose()
    {
        foreach (var (s, _) in _allocations)
        {
            NativeMemory.Free((void*)s);
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
