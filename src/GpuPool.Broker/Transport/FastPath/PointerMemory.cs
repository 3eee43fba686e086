using System.Buffers;

namespace GpuPool.Broker.Transport.FastPath;

/// <summary>
/// Memory over bytes the device owns (native memory, or a pinned staging buffer), reused for every chunk a connection
/// sends from or receives into device memory, so that such a chunk allocates nothing.
/// </summary>
internal sealed unsafe class PointerMemory : MemoryManager<byte>
{
    private byte* _pointer;
    private int _length;

    public void Reset(nint pointer, int length)
    {
        _pointer = (byte*)pointer;
        _length = length;
    }

    public override Span<byte> GetSpan() => new(_pointer, _length);

    public override MemoryHandle Pin(int elementIndex = 0) => new(_pointer + elementIndex);

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
    }
}
