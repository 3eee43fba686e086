using System.Buffers;
using System.Numerics;
using GpuPool.Devices.Contexts;

namespace GpuPool.Devices.Streams;

/// <summary>Host-to-device copy of bytes the caller hands over (its message, or the owner, keeps them alive until the copy is done).</summary>
internal sealed class CopyToDeviceWork(WorkPool<CopyToDeviceWork> pool) : PooledWork<CopyToDeviceWork>(pool)
{
    private ulong _dst;
    private ReadOnlyMemory<byte> _data;
    private IDisposable? _owner;

    public CopyToDeviceWork Init(OpTag tag, ulong dst, ReadOnlyMemory<byte> data, IDisposable? owner)
    {
        Tag = tag;
        (_dst, _data, _owner) = (dst, data, owner);
        return this;
    }

    public override bool TakesSlot(DeviceContext context) => context.Copies.CopiesTakeSlots;

    public override void Run(DeviceContext context, WorkStream stream)
    {
        context.Allocations.Check(_dst, (ulong)_data.Length, RangeNames.CopyToDevice);
        context.Copies.CopyToDevice(stream, _dst, _data.Span);
    }

    protected override void Release()
    {
        var owner = _owner;
        (_data, _owner) = (default, null);
        owner?.Dispose();
    }
}

/// <summary>Device-to-host copy: hands the bytes to the sink, or the error that stopped it (a failure is never left sticky: the client waits on it).</summary>
internal sealed class CopyToHostWork(WorkPool<CopyToHostWork> pool) : PooledWork<CopyToHostWork>(pool)
{
    private ulong _src;
    private ulong _bytes;
    private ICopyToHostSink? _sink;

    public CopyToHostWork Init(OpTag tag, ulong src, ulong bytes, ICopyToHostSink sink)
    {
        Tag = tag;
        (_src, _bytes, _sink) = (src, bytes, sink);
        return this;
    }

    public override bool TakesSlot(DeviceContext context) => context.Copies.CopiesTakeSlots;

    public override ValueTask RunAsync(DeviceContext context, WorkStream stream)
    {
        context.Allocations.Check(_src, _bytes, RangeNames.CopyToHost);
        return context.Copies.CopyToHostAsync(stream, _src, _bytes, _sink!);
    }

    public override void Fail(StickyError error) => _sink!.OnError(error);

    protected override void Release() => _sink = null;
}

internal sealed class CopyDeviceToDeviceWork(WorkPool<CopyDeviceToDeviceWork> pool) : PooledWork<CopyDeviceToDeviceWork>(pool)
{
    private ulong _dst;
    private ulong _src;
    private ulong _bytes;

    public CopyDeviceToDeviceWork Init(OpTag tag, ulong dst, ulong src, ulong bytes)
    {
        Tag = tag;
        (_dst, _src, _bytes) = (dst, src, bytes);
        return this;
    }

    public override bool TakesSlot(DeviceContext context) => context.Copies.CopiesTakeSlots;

    public override void Run(DeviceContext context, WorkStream stream)
    {
        // Both whole ranges first, so a bad copy writes nothing.
        context.Allocations.Check(_src, _bytes, RangeNames.DeviceCopySource);
        context.Allocations.Check(_dst, _bytes, RangeNames.DeviceCopyDestination);
        if (_bytes != 0 && _dst != _src)
        {
            context.Copies.CopyDeviceToDevice(stream, _dst, _src, _bytes);
        }
    }

    protected override void Release()
    {
    }
}

/// <summary>Memset of 1-, 2- or 4-byte elements (the size was checked when it was enqueued).</summary>
internal sealed class MemsetWork(WorkPool<MemsetWork> pool) : PooledWork<MemsetWork>(pool)
{
    private ulong _dst;
    private uint _value;
    private int _elementSize;
    private ulong _count;

    public MemsetWork Init(OpTag tag, ulong dst, uint value, int elementSize, ulong count)
    {
        Tag = tag;
        (_dst, _value, _elementSize, _count) = (dst, value, elementSize, count);
        return this;
    }

    public override bool TakesSlot(DeviceContext context) => true;

    public override void Run(DeviceContext context, WorkStream stream)
    {
        ulong bytes;
        try
        {
            bytes = checked(_count * (ulong)_elementSize);
        }
        catch (OverflowException)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"memset of {_count} elements of {_elementSize} bytes is more than any memory holds");
        }

        context.Allocations.Check(_dst, bytes, RangeNames.Memset);
        if (_count != 0)
        {
            context.Copies.Memset(stream, _dst, _value, _elementSize, _count);
        }
    }

    protected override void Release()
    {
    }
}

/// <summary>
/// A kernel launch; its function, shape and parameter block size were checked when it was enqueued. The block is copied
/// in, so the caller may reuse its memory as soon as the launch is enqueued.
/// </summary>
internal sealed class LaunchWork(WorkPool<LaunchWork> pool) : PooledWork<LaunchWork>(pool)
{
    /// <summary>A block up to this size stays with the item for its next launches; a larger one is rented for its launch alone.</summary>
    private const int KeptBlockBytes = 512;

    private byte[] _kept = [];
    private byte[]? _rented;
    private int _length;
    private IKernelFunction? _function;
    private LaunchDims _dims;

    private ReadOnlySpan<byte> Parameters => (_rented ?? _kept).AsSpan(0, _length);

    public LaunchWork Init(OpTag tag, IKernelFunction function, LaunchDims dims, ReadOnlySpan<byte> parameters)
    {
        Tag = tag;
        (_function, _dims, _length) = (function, dims, parameters.Length);
        if (parameters.Length > KeptBlockBytes)
        {
            _rented = ArrayPool<byte>.Shared.Rent(parameters.Length);
        }
        else if (parameters.Length > _kept.Length)
        {
            _kept = new byte[Math.Max(64, BitOperations.RoundUpToPowerOf2((uint)parameters.Length))];
        }

        parameters.CopyTo(_rented ?? _kept);
        return this;
    }

    public override bool TakesSlot(DeviceContext context) => true;

    public override void Run(DeviceContext context, WorkStream stream) => context.Kernels.Launch(stream, _function!, _dims, Parameters);

    protected override void Release()
    {
        _function = null;
        if (_rented is { } rented)
        {
            _rented = null;
            ArrayPool<byte>.Shared.Return(rented);
        }
    }
}
