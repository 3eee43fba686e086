using System.Buffers.Binary;
using GpuPool.Devices.Contexts;

namespace GpuPool.Devices.Cpu.Kernels;

/// <summary>The type of one kernel parameter, with its size and alignment in the launch parameter block.</summary>
public enum ParamKind
{
    I32,
    F32,
    U64,
    Ptr,
}

public readonly record struct KernelParam(string Name, ParamKind Kind)
{
    public int Size => Kind is ParamKind.I32 or ParamKind.F32 ? 4 : 8;

    public override string ToString() => $"{Name}:{Kind.ToString().ToLowerInvariant()}";
}

internal delegate void KernelBody(ref KernelCall call);

/// <summary>
/// A built-in kernel: its name (the same as the PTX entry in native/kernels), its parameter list laid out
/// the way cuLaunchKernel packs it, and its CPU body.
/// </summary>
internal sealed class KernelDef
{
    public KernelDef(string name, KernelParam[] parameters, KernelBody body)
    {
        Name = name;
        Params = parameters;
        Body = body;
        Offsets = new int[parameters.Length];
        var offset = 0;
        for (var i = 0; i < parameters.Length; i++)
        {
            var size = parameters[i].Size;
            offset = (offset + size - 1) / size * size;
            Offsets[i] = offset;
            offset += size;
        }

        ParamBytes = offset;
        Signature = $"{name}({string.Join(", ", parameters)})";
    }

    public string Name { get; }

    public KernelParam[] Params { get; }

    public int[] Offsets { get; }

    public int ParamBytes { get; }

    public string Signature { get; }

    public KernelBody Body { get; }
}

/// <summary>One running launch: decodes parameters by index and resolves pointer parameters through the lease's host memory.</summary>
internal readonly ref struct KernelCall
{
    private readonly KernelDef _def;
    private readonly ReadOnlySpan<byte> _params;
    private readonly HostMemory _memory;

    public KernelCall(KernelDef def, ReadOnlySpan<byte> parameters, HostMemory memory)
    {
        _def = def;
        _params = parameters;
        _memory = memory;
    }

    public float F32(int index) => BinaryPrimitives.ReadSingleLittleEndian(_params[_def.Offsets[index]..]);

    public ulong U64(int index) => BinaryPrimitives.ReadUInt64LittleEndian(_params[_def.Offsets[index]..]);

    /// <summary>An element-count parameter (u64), checked to fit one span.</summary>
    public int Count(int index)
    {
        var n = U64(index);
        if (n > int.MaxValue)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"kernel {_def.Name} parameter {_def.Params[index].Name}: {n} elements is more than one launch can address");
        }

        return (int)n;
    }

    /// <summary>A dimension parameter (i32), checked to be non-negative.</summary>
    public int Dim(int index)
    {
        var v = BinaryPrimitives.ReadInt32LittleEndian(_params[_def.Offsets[index]..]);
        if (v < 0)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"kernel {_def.Name} parameter {_def.Params[index].Name}: {v} is negative");
        }

        return v;
    }

    /// <summary>The <paramref name="count"/> elements that pointer parameter <paramref name="index"/> names, bounds-checked.</summary>
    public Span<T> Ptr<T>(int index, long count)
        where T : unmanaged
        => _memory.Resolve<T>(U64(index), count, RangeName.KernelParameter(_def.Name, _def.Params[index].Name));
}
