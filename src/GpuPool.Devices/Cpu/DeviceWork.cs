using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using GpuPool.Devices.Cpu.Kernels;

namespace GpuPool.Devices.Cpu;

/// <summary>Host-to-device copy of bytes the caller hands over (the gRPC message keeps them alive).</summary>
internal sealed class CopyToDeviceWork(OpTag tag, ulong dst, ReadOnlyMemory<byte> data, IDisposable? owner) : StreamWork(tag)
{
    public override double Cost => Math.Max(1, data.Length / 4.0);

    public override void Run(CpuContext context)
        => data.Span.CopyTo(context.Memory.Resolve(dst, (ulong)data.Length, "copy to device destination"));

    public override void Finish() => owner?.Dispose();
}

/// <summary>Device-to-host copy: hands the bytes to the sink, or the error that stopped it.</summary>
internal sealed class CopyToHostWork(OpTag tag, ulong src, ulong bytes, ICopyToHostSink sink) : StreamWork(tag)
{
    public override double Cost => Math.Max(1, bytes / 4.0);

    public override void Run(CpuContext context)
        => sink.OnData(context.Memory.Resolve(src, bytes, "copy to host source"));

    /// <summary>
    /// Device memory is host memory here: a sink that can send it from where it is gets it as memory, and the stream
    /// waits for it without holding a thread (the memory stays valid: freeing waits for the stream).
    /// </summary>
    public override unsafe ValueTask RunAsync(CpuContext context)
    {
        var memory = context.Memory.Resolve(src, bytes, "copy to host source");
        if (!sink.AcceptsMemory)
        {
            sink.OnData(memory);
            return default;
        }

        return sink.OnMemoryAsync((nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(memory)), memory.Length);
    }

    public override void Fail(StickyError error, bool ownFailure) => sink.OnError(error);
}

internal sealed class CopyDeviceToDeviceWork(OpTag tag, ulong dst, ulong src, ulong bytes) : StreamWork(tag)
{
    private const ulong Chunk = 1UL << 30;

    public override double Cost => Math.Max(1, bytes / 4.0);

    public override void Run(CpuContext context)
    {
        // Check both whole ranges first so a bad copy writes nothing.
        if (bytes <= Chunk)
        {
            context.Memory.Resolve(src, bytes, "device copy source").CopyTo(context.Memory.Resolve(dst, bytes, "device copy destination"));
            return;
        }

        context.Memory.Resolve(src, Chunk, "device copy source");
        context.Memory.Resolve(src + bytes - Chunk, Chunk, "device copy source");
        context.Memory.Resolve(dst, Chunk, "device copy destination");
        context.Memory.Resolve(dst + bytes - Chunk, Chunk, "device copy destination");
        var backward = dst > src && dst < src + bytes;
        for (ulong done = 0; done < bytes; done += Chunk)
        {
            var n = Math.Min(Chunk, bytes - done);
            var offset = backward ? bytes - done - n : done;
            context.Memory.Resolve(src + offset, n, "device copy source").CopyTo(context.Memory.Resolve(dst + offset, n, "device copy destination"));
        }
    }
}

internal sealed class MemsetWork(OpTag tag, ulong dst, uint value, int elementSize, ulong count) : StreamWork(tag)
{
    public override double Cost => Math.Max(1, count * (ulong)elementSize / 4.0);

    public override void Run(CpuContext context)
    {
        var span = context.Memory.Resolve(dst, checked(count * (ulong)elementSize), "memset destination");
        switch (elementSize)
        {
            case 1:
                span.Fill((byte)value);
                break;
            case 2:
                MemoryMarshal.Cast<byte, ushort>(span).Fill((ushort)value);
                break;
            default:
                MemoryMarshal.Cast<byte, uint>(span).Fill(value);
                break;
        }
    }
}

/// <summary>A built-in kernel launch; the parameter block was checked against the signature when enqueued.</summary>
internal sealed class LaunchWork(OpTag tag, KernelDef kernel, ReadOnlyMemory<byte> parameters) : StreamWork(tag)
{
    public override double Cost => kernel.Cost(parameters.Span);

    public override void Run(CpuContext context)
    {
        var call = new KernelCall(kernel, parameters.Span, context.Memory);
        try
        {
            kernel.Body(ref call);
        }
        catch (ArgumentException ex)
        {
            throw new DeviceException(DeviceErrorCode.LaunchFailed, $"kernel {kernel.Name} failed: {ex.Message}", ex);
        }
    }
}
