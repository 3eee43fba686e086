using System.Buffers;

namespace GpuPool.Shim.Internal;

/// <summary>The program's own host memory as <see cref="Memory{T}"/>, so the SDK copies straight from and into it.</summary>
internal sealed unsafe class NativeBuffer(byte* pointer, int length) : MemoryManager<byte>
{
    public override Span<byte> GetSpan() => new(pointer, length);

    public override MemoryHandle Pin(int elementIndex = 0) => new(pointer + elementIndex);

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
    }
}
