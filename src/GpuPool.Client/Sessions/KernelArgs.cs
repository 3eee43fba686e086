using System.Buffers.Binary;

namespace GpuPool.Client;

/// <summary>
/// Packs kernel parameters the way cuLaunchKernel lays them out: each value at an offset aligned to
/// its size, device pointers as 8-byte addresses. A launch has taken the bytes once its task completes, so one instance
/// can then be refilled (<see cref="Clear"/>) and launched again without allocating.
/// </summary>
public sealed class KernelArgs
{
    private byte[] _buffer = new byte[64];
    private int _length;

    public int Length => _length;

    /// <summary>
    /// Arguments already packed the cuLaunchKernel way (for example a C program's parameter buffer, or one the
    /// caller laid out from the kernel's signature); the bytes are copied.
    /// </summary>
    public static KernelArgs FromPacked(ReadOnlySpan<byte> packed)
    {
        var args = new KernelArgs();
        if (packed.Length > args._buffer.Length)
        {
            args._buffer = new byte[packed.Length];
        }

        packed.CopyTo(args._buffer);
        args._length = packed.Length;
        return args;
    }

    public KernelArgs I32(int value)
    {
        BinaryPrimitives.WriteInt32LittleEndian(Slot(4), value);
        return this;
    }

    public KernelArgs F32(float value)
    {
        BinaryPrimitives.WriteSingleLittleEndian(Slot(4), value);
        return this;
    }

    public KernelArgs U64(ulong value)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(Slot(8), value);
        return this;
    }

    public KernelArgs Ptr(DevicePtr ptr) => U64(ptr.Address);

    /// <summary>The packed bytes, valid until the arguments are changed.</summary>
    public ReadOnlyMemory<byte> Packed => _buffer.AsMemory(0, _length);

    /// <summary>Empties the arguments, to pack another launch's into the same buffer.</summary>
    public KernelArgs Clear()
    {
        _length = 0;
        return this;
    }

    private Span<byte> Slot(int size)
    {
        var offset = (_length + size - 1) / size * size;
        if (offset + size > _buffer.Length)
        {
            Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, offset + size));
        }

        _buffer.AsSpan(_length, offset - _length).Clear();
        _length = offset + size;
        return _buffer.AsSpan(offset, size);
    }
}
