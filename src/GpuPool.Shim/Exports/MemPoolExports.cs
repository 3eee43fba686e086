using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// Stream-ordered allocation with the device's one memory pool, its default pool. cuMemAllocAsync allocates at once
/// (memory that is ready before its stream reaches the allocation is stream-ordered too); cuMemFreeAsync takes the
/// pointer out of the allocation map at once and has the broker free it once the work queued before it has
/// completed (Driver.FreeInStreamOrder), so a kernel queued before the free never loses its memory. Pools other than
/// the default one are not created, so any other CUmemoryPool is CUDA_ERROR_INVALID_VALUE.
/// </summary>
internal static unsafe partial class Cuda
{
    [UnmanagedCallersOnly(EntryPoint = "cuMemAllocAsync")]
    internal static CuResult MemAllocAsync(ulong* pointer, nuint bytes, nint stream) => AllocAsync("cuMemAllocAsync", pointer, bytes, null, stream);

    [UnmanagedCallersOnly(EntryPoint = "cuMemAllocFromPoolAsync")]
    internal static CuResult MemAllocFromPoolAsync(ulong* pointer, nuint bytes, nint pool, nint stream) => AllocAsync("cuMemAllocFromPoolAsync", pointer, bytes, pool, stream);

    /// <summary><paramref name="pool"/>: null for the device's current pool (cuMemAllocAsync), else the pool named.</summary>
    private static CuResult AllocAsync(string call, ulong* pointer, nuint bytes, nint? pool, nint stream)
    {
        try
        {
            NotNull(pointer, "dptr");
            var driver = Driver.Instance;
            var ctx = Driver.Current();
            var from = pool is { } named ? ResolvePool(driver, named) : driver.DefaultPool;
            _ = driver.ResolveStream(stream);
            if (bytes == 0)
            {
                throw new CudaException(CuResult.InvalidValue, "bytesize is 0");
            }

            *pointer = Remember(driver, ctx, driver.AllocateFromPool(bytes, call), bytes, from);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuMemFreeAsync")]
    internal static CuResult MemFreeAsync(ulong pointer, nint stream) => FreeAsync(pointer, stream);

    private static CuResult FreeAsync(ulong pointer, nint stream)
    {
        try
        {
            var driver = Driver.Instance;
            _ = Driver.Current();
            var s = driver.ResolveStream(stream);
            if (pointer == 0)
            {
                throw new CudaException(CuResult.InvalidValue, "the pointer is null");
            }

            var entry = driver.Allocations.Remove(pointer) ?? throw new CudaException(CuResult.InvalidValue,
                driver.Allocations.Find(pointer) is { } inside
                    ? $"0x{pointer:x} points inside the allocation at 0x{inside.Base:x}, not at its start"
                    : $"0x{pointer:x} is not a device allocation of this process (freed already, or never allocated)");
            lock (driver.Gate)
            {
                entry.Owner.Allocations.Remove(pointer);
            }

            entry.Pool?.Freed(entry.Size);
            driver.FreeInStreamOrder(pointer);
            driver.NoteWork(s);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuMemFreeAsync", ex);
        }
    }

    // ---- The device's pool ----

    [UnmanagedCallersOnly(EntryPoint = "cuDeviceGetDefaultMemPool")]
    internal static CuResult DeviceGetDefaultMemPool(nint* pool, int device) => GetPool("cuDeviceGetDefaultMemPool", pool, device);

    /// <summary>The current pool is always the default pool: it is the only one.</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuDeviceGetMemPool")]
    internal static CuResult DeviceGetMemPool(nint* pool, int device) => GetPool("cuDeviceGetMemPool", pool, device);

    private static CuResult GetPool(string call, nint* pool, int device)
    {
        try
        {
            NotNull(pool, "pool");
            var driver = Driver.Instance;
            CheckDevice(device);
            *pool = driver.DefaultPool.Handle;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuDeviceSetMemPool")]
    internal static CuResult DeviceSetMemPool(int device, nint pool)
    {
        try
        {
            var driver = Driver.Instance;
            CheckDevice(device);
            _ = ResolvePool(driver, pool);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuDeviceSetMemPool", ex);
        }
    }

    /// <summary>Nothing is held in reserve (freed memory goes back to the lease), so there is nothing to trim.</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuMemPoolTrimTo")]
    internal static CuResult MemPoolTrimTo(nint pool, nuint minBytesToKeep)
    {
        try
        {
            _ = ResolvePool(Driver.Instance, pool);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuMemPoolTrimTo", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuMemPoolGetAttribute")]
    internal static CuResult MemPoolGetAttribute(nint pool, int attribute, void* value)
    {
        try
        {
            NotNull(value, "value");
            var p = ResolvePool(Driver.Instance, pool);
            lock (p.Gate)
            {
                switch (attribute)
                {
                    case 1: *(int*)value = p.ReuseFollowEventDependencies; break;
                    case 2: *(int*)value = p.ReuseAllowOpportunistic; break;
                    case 3: *(int*)value = p.ReuseAllowInternalDependencies; break;
                    case 4: *(ulong*)value = p.ReleaseThreshold; break;
                    case 5 or 7: *(ulong*)value = p.Used; break;         // RESERVED_MEM_CURRENT (nothing is held beyond what is used), USED_MEM_CURRENT
                    case 6: *(ulong*)value = p.ReservedHigh; break;
                    case 8: *(ulong*)value = p.UsedHigh; break;
                    default: throw new CudaException(CuResult.InvalidValue, $"{attribute} is not a CUmemPool_attribute");
                }
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuMemPoolGetAttribute", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuMemPoolSetAttribute")]
    internal static CuResult MemPoolSetAttribute(nint pool, int attribute, void* value)
    {
        try
        {
            NotNull(value, "value");
            var p = ResolvePool(Driver.Instance, pool);
            lock (p.Gate)
            {
                switch (attribute)
                {
                    case 1: p.ReuseFollowEventDependencies = *(int*)value != 0 ? 1 : 0; break;
                    case 2: p.ReuseAllowOpportunistic = *(int*)value != 0 ? 1 : 0; break;
                    case 3: p.ReuseAllowInternalDependencies = *(int*)value != 0 ? 1 : 0; break;
                    case 4: p.ReleaseThreshold = *(ulong*)value; break;
                    case 6 or 8:
                        // A high watermark may only be reset, to the current use.
                        if (*(ulong*)value != 0)
                        {
                            throw new CudaException(CuResult.InvalidValue, "a pool's high watermark can only be reset, by setting it to 0");
                        }

                        if (attribute == 6)
                        {
                            p.ReservedHigh = p.Used;
                        }
                        else
                        {
                            p.UsedHigh = p.Used;
                        }

                        break;
                    default:
                        throw new CudaException(CuResult.InvalidValue, $"pool attribute {attribute} cannot be set");
                }
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuMemPoolSetAttribute", ex);
        }
    }

    private static MemPoolObject ResolvePool(Driver driver, nint handle)
        => handle != 0 && driver.MemPools.TryGet(handle, out var pool)
            ? pool
            : throw new CudaException(CuResult.InvalidValue, $"0x{(ulong)handle:x} is not a memory pool (the device's default pool is the only one)");
}
