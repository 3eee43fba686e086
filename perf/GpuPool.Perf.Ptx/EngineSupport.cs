using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using GpuPool.Ptx.Engine;

namespace GpuPool.Perf.Ptx;

/// <summary>The nvcc-made PTX of Cuda/*.cu, embedded in this assembly.</summary>
internal static class CudaPtx
{
    public static string Text(string name)
    {
        using var stream = typeof(CudaPtx).Assembly.GetManifestResourceStream(name + ".ptx")
            ?? throw new InvalidOperationException($"{name}.ptx is not embedded; see Cuda/ in this project");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>The kernel <paramref name="entry"/> of Cuda/<paramref name="name"/>.ptx, compiled now so no benchmark pays for it.</summary>
    public static PtxKernel Kernel(string name, string entry)
    {
        var kernel = PtxModuleProgram.Compile(Text(name)).Kernels[entry];
        kernel.EnsureCompiled();
        return kernel;
    }
}

/// <summary>Native allocations a launch may touch; the few a benchmark makes are found by a linear search, as in the engine's tests.</summary>
internal sealed unsafe class NativeBuffers : IPtxMemory, IDisposable
{
    private readonly List<(ulong Start, ulong End)> _allocations = [];

    public ulong Allocate<T>(int count)
        where T : unmanaged
    {
        var bytes = (nuint)Math.Max(count * sizeof(T), 1);
        var p = (ulong)NativeMemory.AlignedAlloc(bytes, 64);
        NativeMemory.Clear((void*)p, bytes);
        _allocations.Add((p, p + bytes));
        return p;
    }

    public static Span<T> Span<T>(ulong address, int count)
        where T : unmanaged
        => new((void*)address, count);

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
            NativeMemory.AlignedFree((void*)s);
        }

        _allocations.Clear();
    }
}

/// <summary>A kernel's parameter block, packed as cuLaunchKernel packs it: each value at an offset aligned to its size.</summary>
internal sealed class ParamBlock
{
    private readonly List<byte> _bytes = [];

    public ParamBlock Add<T>(T value)
        where T : unmanaged
    {
        var size = Unsafe.SizeOf<T>();
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
