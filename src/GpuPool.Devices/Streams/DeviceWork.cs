using GpuPool.Devices.Contexts;

namespace GpuPool.Devices.Streams;

/// <summary>Host-to-device copy of bytes the caller hands over (its message, or <paramref name="owner"/>, keeps them alive).</summary>
internal sealed class CopyToDeviceWork(OpTag tag, ulong dst, ReadOnlyMemory<byte> data, IDisposable? owner) : StreamWork(tag)
{
    public override double SlotCost(DeviceContext context) => context.Copies.CopyCost((ulong)data.Length);

    public override void Run(DeviceContext context, WorkStream stream)
    {
        context.Allocations.Check(dst, (ulong)data.Length, RangeNames.CopyToDevice);
        context.Copies.CopyToDevice(stream, dst, data.Span);
    }

    public override void Finish() => owner?.Dispose();
}

/// <summary>Device-to-host copy: hands the bytes to the sink, or the error that stopped it (a failure is never left sticky: the client waits on it).</summary>
internal sealed class CopyToHostWork(OpTag tag, ulong src, ulong bytes, ICopyToHostSink sink) : StreamWork(tag)
{
    public override double SlotCost(DeviceContext context) => context.Copies.CopyCost(bytes);

    public override ValueTask RunAsync(DeviceContext context, WorkStream stream)
    {
        context.Allocations.Check(src, bytes, RangeNames.CopyToHost);
        return context.Copies.CopyToHostAsync(stream, src, bytes, sink);
    }

    public override void Fail(StickyError error) => sink.OnError(error);
}

internal sealed class CopyDeviceToDeviceWork(OpTag tag, ulong dst, ulong src, ulong bytes) : StreamWork(tag)
{
    public override double SlotCost(DeviceContext context) => context.Copies.CopyCost(bytes);

    public override void Run(DeviceContext context, WorkStream stream)
    {
        // Both whole ranges first, so a bad copy writes nothing.
        context.Allocations.Check(src, bytes, RangeNames.DeviceCopySource);
        context.Allocations.Check(dst, bytes, RangeNames.DeviceCopyDestination);
        if (bytes != 0 && dst != src)
        {
            context.Copies.CopyDeviceToDevice(stream, dst, src, bytes);
        }
    }
}

/// <summary>Memset of 1-, 2- or 4-byte elements (the size was checked when it was enqueued).</summary>
internal sealed class MemsetWork(OpTag tag, ulong dst, uint value, int elementSize, ulong count) : StreamWork(tag)
{
    public override double SlotCost(DeviceContext context) => Math.Max(1, count * (ulong)elementSize / 4.0);

    public override void Run(DeviceContext context, WorkStream stream)
    {
        ulong bytes;
        try
        {
            bytes = checked(count * (ulong)elementSize);
        }
        catch (OverflowException)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"memset of {count} elements of {elementSize} bytes is more than any memory holds");
        }

        context.Allocations.Check(dst, bytes, RangeNames.Memset);
        if (count != 0)
        {
            context.Copies.Memset(stream, dst, value, elementSize, count);
        }
    }
}

/// <summary>A kernel launch; its function, shape and parameter block size were checked when it was enqueued.</summary>
internal sealed class LaunchWork(OpTag tag, IKernelFunction function, LaunchDims dims, ReadOnlyMemory<byte> parameters) : StreamWork(tag)
{
    public override double SlotCost(DeviceContext context) => function.Cost(dims, parameters.Span);

    public override void Run(DeviceContext context, WorkStream stream) => context.Kernels.Launch(stream, function, dims, parameters.Span);
}
