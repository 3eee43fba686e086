using System.Buffers;
using GpuPool.Devices.Contexts;
using GpuPool.Devices.Cuda.Native;
using GpuPool.Devices.Streams;

namespace GpuPool.Devices.Cuda;

/// <summary>
/// A lease's copies and memsets on a GPU, on the stream's thread. Copies between host and device go through the bounded
/// pool of pinned buffers chunk by chunk, two buffers at a time so the next chunk is filled while the last is on its way.
/// </summary>
internal sealed unsafe class CudaCopies(CudaContext context, PinnedStagingPool staging) : ICopyEngine
{
    /// <summary>Copies take no kernel slot: they run on the copy engines, beside kernels.</summary>
    public bool CopiesTakeSlots => false;

    public void CopyToDevice(WorkStream stream, ulong dst, ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            return;
        }

        var first = staging.Rent();
        var two = staging.TryRent(out var second);
        try
        {
            long chunk = staging.BufferBytes;
            var count = (int)((data.Length + chunk - 1) / chunk);
            for (var i = 0; i < count; i++)
            {
                // With two buffers the next chunk is filled while the previous one is on its way to the device.
                var buffer = two && i % 2 == 1 ? second : first;
                if (i > 0 && !two)
                {
                    context.Synchronize(stream, "copy to device");
                }

                var offset = i * chunk;
                var n = (int)Math.Min(chunk, data.Length - offset);
                data.Slice((int)offset, n).CopyTo(buffer.Span);
                if (i > 0 && two)
                {
                    context.Synchronize(stream, "copy to device");
                }

                context.Check(CuApi.cuMemcpyHtoDAsync_v2(dst + (ulong)offset, (void*)buffer.Pointer, (nuint)n, stream.Handle), "cuMemcpyHtoDAsync_v2");
            }

            context.Synchronize(stream, "copy to device");
        }
        finally
        {
            // After a failure a copy may still be reading a buffer: let the stream settle before the buffers go back.
            Settle(stream, first, two, second);
        }
    }

    public ValueTask CopyToHostAsync(WorkStream stream, ulong src, ulong bytes, ICopyToHostSink sink)
    {
        if (bytes == 0)
        {
            if (sink.AcceptsChunks)
            {
                sink.OnChunk(0, [], last: true);
            }
            else
            {
                sink.OnData([]);
            }

            return default;
        }

        byte[]? gathered = null;
        if (!sink.AcceptsChunks)
        {
            // A sink that wants the copy whole gets it from managed memory; the device still only sees the staging buffers.
            gathered = bytes <= int.MaxValue
                ? ArrayPool<byte>.Shared.Rent((int)bytes)
                : throw new DeviceException(DeviceErrorCode.InvalidArgument, $"a copy of {bytes} bytes to the host is larger than one buffer can hold (2 GiB)");
        }

        var first = staging.Rent();
        var two = staging.TryRent(out var second);
        try
        {
            ulong chunk = (ulong)staging.BufferBytes;
            var count = (bytes + chunk - 1) / chunk;
            PinnedBuffer BufferOf(ulong i) => two && i % 2 == 1 ? second : first;
            void Submit(ulong i)
            {
                var n = Math.Min(chunk, bytes - (i * chunk));
                context.Check(CuApi.cuMemcpyDtoHAsync_v2((void*)BufferOf(i).Pointer, src + (i * chunk), (nuint)n, stream.Handle), "cuMemcpyDtoHAsync_v2");
            }

            Submit(0);
            for (ulong i = 0; i < count; i++)
            {
                context.Synchronize(stream, "copy to host");

                // With two buffers the next chunk comes from the device while this one goes to the sink.
                if (two && i + 1 < count)
                {
                    Submit(i + 1);
                }

                var offset = i * chunk;
                var n = (int)Math.Min(chunk, bytes - offset);
                var piece = BufferOf(i).Span[..n];
                if (gathered is not null)
                {
                    piece.CopyTo(gathered.AsSpan((int)offset));
                }
                else
                {
                    sink.OnChunk(offset, piece, last: i + 1 == count);
                }

                if (!two && i + 1 < count)
                {
                    Submit(i + 1);
                }
            }

            if (gathered is not null)
            {
                sink.OnData(gathered.AsSpan(0, (int)bytes));
            }

            return default;
        }
        finally
        {
            Settle(stream, first, two, second);
            if (gathered is not null)
            {
                ArrayPool<byte>.Shared.Return(gathered);
            }
        }
    }

    public void CopyDeviceToDevice(WorkStream stream, ulong dst, ulong src, ulong bytes)
    {
        if (dst >= src + bytes || src >= dst + bytes)
        {
            context.Check(CuApi.cuMemcpyDtoDAsync_v2(dst, src, (nuint)bytes, stream.Handle), "cuMemcpyDtoDAsync_v2");
            context.Synchronize(stream, "device copy");
            return;
        }

        // Overlapping ranges, which the driver's copy leaves undefined: through the host, chunk by chunk, in the order
        // that reads every byte before it is overwritten (as memmove, and as the cpu backend does).
        var buffer = staging.Rent();
        try
        {
            ulong chunk = (ulong)buffer.Length;
            var backward = dst > src;
            for (ulong done = 0; done < bytes; done += chunk)
            {
                var n = Math.Min(chunk, bytes - done);
                var offset = backward ? bytes - done - n : done;
                context.Check(CuApi.cuMemcpyDtoHAsync_v2((void*)buffer.Pointer, src + offset, (nuint)n, stream.Handle), "cuMemcpyDtoHAsync_v2", "overlapping device copy");
                context.Synchronize(stream, "overlapping device copy");
                context.Check(CuApi.cuMemcpyHtoDAsync_v2(dst + offset, (void*)buffer.Pointer, (nuint)n, stream.Handle), "cuMemcpyHtoDAsync_v2", "overlapping device copy");
                context.Synchronize(stream, "overlapping device copy");
            }
        }
        finally
        {
            Settle(stream, buffer, two: false, default);
        }
    }

    public void Memset(WorkStream stream, ulong dst, uint value, int elementSize, ulong count)
    {
        var result = elementSize switch
        {
            1 => CuApi.cuMemsetD8Async(dst, (byte)value, (nuint)count, stream.Handle),
            2 => CuApi.cuMemsetD16Async(dst, (ushort)value, (nuint)count, stream.Handle),
            _ => CuApi.cuMemsetD32Async(dst, value, (nuint)count, stream.Handle),
        };
        context.Check(result, elementSize switch { 1 => "cuMemsetD8Async", 2 => "cuMemsetD16Async", _ => "cuMemsetD32Async" });
        context.Synchronize(stream, "memset");
    }

    /// <summary>Waits for the stream (a failed copy may still be using a buffer), then gives the buffers back.</summary>
    private void Settle(WorkStream stream, PinnedBuffer first, bool two, PinnedBuffer second)
    {
        _ = CuApi.cuStreamSynchronize(stream.Handle);
        staging.Return(first);
        if (two)
        {
            staging.Return(second);
        }
    }
}
