using GpuPool.Devices.Cuda.Native;

namespace GpuPool.Devices.Cuda;

/// <summary>
/// One item of work on a stream, run on the stream's own thread. Device work is submitted to the CUDA stream and
/// waited for before the next item (so a failure belongs to exactly this op), and is skipped while a sticky error
/// is pending.
/// </summary>
internal abstract class CudaWork(OpTag tag)
{
    public OpTag Tag { get; } = tag;

    /// <summary>False for bookkeeping (markers, event records and waits): it runs even while an error is pending.</summary>
    public virtual bool IsDeviceWork => true;

    /// <summary>Cost for the fair-share dispatcher; 0 takes no slot (copies run on the copy engines, beside kernels).</summary>
    public virtual double SlotCost => 0;

    /// <summary>Something to wait for before the work runs (an event of another stream).</summary>
    public virtual Task? WaitBefore => null;

    public abstract void Run(CudaContext context, CudaStream stream);

    /// <summary>Called instead of a successful run when the work is skipped or fails; <paramref name="error"/> is what the client will see.</summary>
    public virtual void Fail(StickyError error, bool ownFailure)
    {
    }

    /// <summary>Called once the work has run, failed or been skipped: releases what it holds.</summary>
    public virtual void Finish()
    {
    }
}

/// <summary>A failure found when the op was enqueued: it becomes the sticky error when the stream reaches it, keeping op order.</summary>
internal sealed class CudaFailedWork(OpTag tag, DeviceException error) : CudaWork(tag)
{
    public override void Run(CudaContext context, CudaStream stream) => throw error;
}

/// <summary>Completes when the stream reaches it: stream synchronize.</summary>
internal sealed class CudaMarkerWork() : CudaWork(default)
{
    public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override bool IsDeviceWork => false;

    public override void Run(CudaContext context, CudaStream stream) => Done.TrySetResult();

    public override void Finish() => Done.TrySetResult();
}

/// <summary>Stream wait event: the stream goes on once the event's record (as of the wait call) has completed on the device.</summary>
internal sealed class CudaWaitEventWork(OpTag tag, Task recorded) : CudaWork(tag)
{
    public override bool IsDeviceWork => false;

    public override Task? WaitBefore => recorded;

    public override void Run(CudaContext context, CudaStream stream)
    {
    }
}

/// <summary>Event record: records the CUevent on the stream, waits for it, and completes the event's host-side task.</summary>
internal sealed class CudaRecordWork(OpTag tag, CudaContext owner, CudaEvent evt, TaskCompletionSource completion) : CudaWork(tag)
{
    public override bool IsDeviceWork => false;

    public override void Run(CudaContext context, CudaStream stream) => context.RecordEvent(evt, stream, Tag);

    public override void Finish()
    {
        owner.EventRecordFinished(evt);
        completion.TrySetResult();
    }
}

/// <summary>Host-to-device copy of bytes the caller hands over, staged through pinned buffers.</summary>
internal sealed class CudaCopyToDeviceWork(OpTag tag, ulong dst, ReadOnlyMemory<byte> data, IDisposable? owner) : CudaWork(tag)
{
    public override void Run(CudaContext context, CudaStream stream)
    {
        context.Memory.Check(dst, (ulong)data.Length, "copy to device destination");
        context.CopyToDevice(stream, dst, data.Span);
    }

    public override void Finish() => owner?.Dispose();
}

/// <summary>Device-to-host copy: hands the bytes to the sink (in chunks where it takes them), or the error that stopped it.</summary>
internal sealed class CudaCopyToHostWork(OpTag tag, ulong src, ulong bytes, ICopyToHostSink sink) : CudaWork(tag)
{
    public override void Run(CudaContext context, CudaStream stream)
    {
        context.Memory.Check(src, bytes, "copy to host source");
        context.CopyToHost(stream, src, bytes, sink);
    }

    public override void Fail(StickyError error, bool ownFailure) => sink.OnError(error);
}

internal sealed class CudaCopyDeviceToDeviceWork(OpTag tag, ulong dst, ulong src, ulong bytes) : CudaWork(tag)
{
    public override void Run(CudaContext context, CudaStream stream)
    {
        // Check both whole ranges first so a bad copy writes nothing.
        context.Memory.Check(src, bytes, "device copy source");
        context.Memory.Check(dst, bytes, "device copy destination");
        context.CopyDeviceToDevice(stream, dst, src, bytes);
    }
}

internal sealed class CudaMemsetWork(OpTag tag, ulong dst, uint value, int elementSize, ulong count) : CudaWork(tag)
{
    public override double SlotCost => Math.Max(1, count * (ulong)elementSize / 4.0);

    public override void Run(CudaContext context, CudaStream stream)
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

        context.Memory.Check(dst, bytes, "memset destination");
        if (count == 0)
        {
            return;
        }

        var result = elementSize switch
        {
            1 => CuApi.cuMemsetD8Async(dst, (byte)value, (nuint)count, stream.Handle),
            2 => CuApi.cuMemsetD16Async(dst, (ushort)value, (nuint)count, stream.Handle),
            _ => CuApi.cuMemsetD32Async(dst, value, (nuint)count, stream.Handle),
        };
        context.Check(result, elementSize switch { 1 => "cuMemsetD8Async", 2 => "cuMemsetD16Async", _ => "cuMemsetD32Async" });
        context.Check(CuApi.cuStreamSynchronize(stream.Handle), "cuStreamSynchronize", "after memset");
    }
}

/// <summary>A kernel launch; the function, geometry and parameter block size were checked when it was enqueued.</summary>
internal sealed class CudaLaunchWork(OpTag tag, CudaFunction function, LaunchDims dims, ReadOnlyMemory<byte> parameters) : CudaWork(tag)
{
    public override double SlotCost => function.Builtin is { } kernel
        ? kernel.Cost(parameters.Span)
        : Math.Max(1.0, (double)dims.GridX * dims.GridY * dims.GridZ * dims.BlockX * dims.BlockY * dims.BlockZ);

    public override void Run(CudaContext context, CudaStream stream) => context.Launch(stream, function, dims, parameters.Span);
}
