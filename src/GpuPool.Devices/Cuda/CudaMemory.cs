using GpuPool.Devices.Contexts;
using GpuPool.Devices.Cuda.Native;

namespace GpuPool.Devices.Cuda;

/// <summary>A lease's device memory on a GPU: cuMemAlloc'd, zeroed before it is handed out, never host memory.</summary>
internal sealed class CudaMemory(CudaContext context) : IDeviceMemory
{
    /// <summary>Bytes for the device are received into pinned staging and copied by DMA.</summary>
    public bool IsHostMemory => false;

    public Allocation Allocate(ulong bytes, ulong used, ulong limit) => context.OnLiveContext(() =>
    {
        var result = CuApi.cuMemAlloc_v2(out var p, (nuint)bytes);
        if (result == CudaErrors.OutOfMemory)
        {
            throw new DeviceException(DeviceErrorCode.OutOfMemory,
                $"cannot allocate {bytes} bytes: the lease is within its limit ({used} of {limit} bytes in use), but the device itself is out of memory (cuMemAlloc_v2: {CudaErrors.Describe(result)})");
        }

        context.Check(result, "cuMemAlloc_v2");

        // New memory is zeroed, so no lease reads what another left behind.
        result = CuApi.cuMemsetD8Async(p, 0, (nuint)bytes, context.Housekeeping);
        if (result == CudaErrors.Success)
        {
            result = CuApi.cuStreamSynchronize(context.Housekeeping);
        }

        if (result != CudaErrors.Success)
        {
            _ = CuApi.cuMemFree_v2(p);
            context.Check(result, "cuMemsetD8Async", "zeroing a new allocation");
        }

        return new Allocation(p, bytes, 0);
    });

    public void Free(Allocation allocation) => context.OnLiveContext(() => context.Check(CuApi.cuMemFree_v2(allocation.Base), "cuMemFree_v2"));

    /// <summary>Nothing to do: destroying the context freed its memory.</summary>
    public void FreeAtClose(Allocation[] allocations)
    {
    }

    public Span<byte> HostView(ulong pointer, ulong length, RangeName what)
        => throw new DeviceException(DeviceErrorCode.NotSupported, $"{what}: device memory on a GPU is not host memory");
}
