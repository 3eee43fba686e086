using System.Runtime.InteropServices;
using GpuPool.Client;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// Device memory (on the broker, within the lease's limit), host memory (local: pinned memory has no meaning
/// across the network), copies and memsets. Copies to the device, device-to-device copies and memsets are
/// fire-and-forget; a copy to the host waits for its bytes (the Async form lets them land later, and the next
/// synchronizing call waits for them). Every device range is checked against this process's allocations first,
/// so a null, freed or out-of-range pointer is CUDA_ERROR_INVALID_VALUE at once, as with the driver.
/// </summary>
internal static unsafe partial class Cuda
{
    /// <summary>Copies larger than this are sent in pieces (a Memory covers at most 2 GiB).</summary>
    private const int CopyPiece = 1 << 30;

    [UnmanagedCallersOnly(EntryPoint = "cuMemGetInfo_v2")]
    internal static CuResult MemGetInfo(nuint* free, nuint* total)
    {
        try
        {
            var driver = Driver.Instance;
            _ = Driver.Current();
            var (f, t) = driver.Wait(driver.Session.MemGetInfoAsync(), "cuMemGetInfo");
            if (free is not null)
            {
                *free = (nuint)f;
            }

            if (total is not null)
            {
                *total = (nuint)t;
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuMemGetInfo", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuMemAlloc_v2")]
    internal static CuResult MemAlloc(ulong* pointer, nuint bytes)
    {
        try
        {
            NotNull(pointer, "dptr");
            if (bytes == 0)
            {
                throw new CudaException(CuResult.InvalidValue, "bytesize is 0");
            }

            var driver = Driver.Instance;
            var ctx = Driver.Current();
            *pointer = Remember(driver, ctx, driver.Wait(driver.Session.AllocAsync(bytes), "cuMemAlloc").Address, bytes, pool: null);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuMemAlloc", ex);
        }
    }

    /// <summary>Enters a new allocation in the allocation map and its context's set; returns its address.</summary>
    private static ulong Remember(Driver driver, Context ctx, ulong ptr, ulong bytes, MemPoolObject? pool)
    {
        driver.Allocations.Add(ptr, bytes, ctx, pool);
        lock (driver.Gate)
        {
            ctx.Allocations.Add(ptr);
        }

        pool?.Allocated(bytes);
        return ptr;
    }

    [UnmanagedCallersOnly(EntryPoint = "cuMemFree_v2")]
    internal static CuResult MemFree(ulong pointer)
    {
        try
        {
            var driver = Driver.Instance;
            _ = Driver.Current();
            if (pointer == 0)
            {
                // free(NULL) semantics, as NVIDIA's driver has (cuBLAS frees a null pointer at its initialization).
                return CuResult.Success;
            }

            if (driver.Allocations.Find(pointer) is { Module: not null } variable && variable.Base == pointer)
            {
                throw new CudaException(CuResult.InvalidValue, $"0x{pointer:x} is a module variable (cuModuleGetGlobal), which goes when its module is unloaded, not with cuMemFree");
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
            driver.Wait(driver.Session.FreeAsync(new DevicePtr(pointer)), "cuMemFree");
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuMemFree", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuMemGetAddressRange_v2")]
    internal static CuResult MemGetAddressRange(ulong* baseAddress, nuint* size, ulong pointer)
    {
        try
        {
            var driver = Driver.Instance;
            var entry = driver.Allocations.Find(pointer) ?? throw new CudaException(CuResult.NotFound, $"0x{pointer:x} is not inside a device allocation of this process");
            if (baseAddress is not null)
            {
                *baseAddress = entry.Base;
            }

            if (size is not null)
            {
                *size = (nuint)entry.Size;
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuMemGetAddressRange", ex);
        }
    }

    // ---- Host memory: local to the program ----

    /// <summary>
    /// Whether host memory is what the driver calls page-locked (cuMemAllocHost, cuMemHostAlloc, cuMemHostRegister):
    /// the only memory an asynchronous copy to the host may land in later.
    /// </summary>
    private static bool IsPinned(Driver driver, byte* pointer, nuint bytes) => driver.HostMemory.IsPinned((nuint)pointer, bytes);

    [UnmanagedCallersOnly(EntryPoint = "cuMemAllocHost_v2")]
    internal static CuResult MemAllocHost(void** pointer, nuint bytes) => AllocHost("cuMemAllocHost", pointer, bytes, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuMemHostAlloc")]
    internal static CuResult MemHostAlloc(void** pointer, nuint bytes, uint flags) => AllocHost("cuMemHostAlloc", pointer, bytes, flags);

    private static CuResult AllocHost(string call, void** pointer, nuint bytes, uint flags)
    {
        try
        {
            NotNull(pointer, "pp");
            var driver = Driver.Instance;
            var ctx = Driver.Current();
            if (bytes == 0)
            {
                throw new CudaException(CuResult.InvalidValue, "bytesize is 0");
            }

            if ((flags & ~0x7u) != 0)
            {
                throw new CudaException(CuResult.InvalidValue, $"0x{flags:x} is not a set of CU_MEMHOSTALLOC flags");
            }

            if ((flags & 0x2) != 0)
            {
                throw new CudaException(CuResult.NotSupported, "CU_MEMHOSTALLOC_DEVICEMAP: host memory cannot be mapped into a remote device");
            }

            var p = NativeMemory.AlignedAlloc(bytes, 4096);
            if (p is null)
            {
                throw new CudaException(CuResult.OutOfMemory, $"cannot allocate {bytes} bytes of host memory");
            }

            driver.HostMemory.Add((nuint)p, bytes, flags, registered: false, ctx);
            *pointer = p;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuMemFreeHost")]
    internal static CuResult MemFreeHost(void* pointer)
    {
        try
        {
            var driver = Driver.Instance;
            if (pointer is null)
            {
                return CuResult.Success;    // free(NULL), as the driver's
            }

            if (driver.HostMemory.Remove((nuint)pointer, registered: false) is null)
            {
                throw new CudaException(CuResult.InvalidValue, $"0x{(ulong)pointer:x} was not allocated with cuMemAllocHost or cuMemHostAlloc (or was freed already)");
            }

            NativeMemory.AlignedFree(pointer);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuMemFreeHost", ex);
        }
    }

    // ---- Copies ----

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyHtoD_v2")]
    internal static CuResult MemcpyHtoD(ulong dst, byte* src, nuint bytes) => CopyToDevice("cuMemcpyHtoD", dst, src, bytes, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyHtoDAsync_v2")]
    internal static CuResult MemcpyHtoDAsync(ulong dst, byte* src, nuint bytes, nint stream) => CopyToDevice("cuMemcpyHtoDAsync", dst, src, bytes, stream);

    private static CuResult CopyToDevice(string call, ulong dst, byte* src, nuint bytes, nint stream)
    {
        try
        {
            var driver = Driver.Instance;
            _ = Driver.Current();
            var s = driver.ResolveStream(stream);
            if (bytes == 0)
            {
                return CuResult.Success;
            }

            NotNull(src, "srcHost");
            driver.Allocations.CheckRange(dst, bytes, call);
            for (nuint offset = 0; offset < bytes; offset += CopyPiece)
            {
                var n = (int)Math.Min(CopyPiece, bytes - offset);
                var source = new NativeBuffer(src + offset, n).Memory;
                driver.Wait(driver.Session.CopyToDeviceAsync(new DevicePtr(dst + offset), source, s), call);
            }

            driver.NoteWork(s);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyDtoH_v2")]
    internal static CuResult MemcpyDtoH(byte* dst, ulong src, nuint bytes) => CopyToHost("cuMemcpyDtoH", dst, src, bytes, 0, async: false);

    /// <summary>
    /// Asynchronous only into pinned memory (cuMemAllocHost): into pageable memory the driver returns once the copy
    /// is done, and programs may count on that, so the shim does too.
    /// </summary>
    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyDtoHAsync_v2")]
    internal static CuResult MemcpyDtoHAsync(byte* dst, ulong src, nuint bytes, nint stream) => CopyToHost("cuMemcpyDtoHAsync", dst, src, bytes, stream, async: true);

    private static CuResult CopyToHost(string call, byte* dst, ulong src, nuint bytes, nint stream, bool async)
    {
        try
        {
            var driver = Driver.Instance;
            _ = Driver.Current();
            var s = driver.ResolveStream(stream);
            if (bytes == 0)
            {
                return CuResult.Success;
            }

            NotNull(dst, "dstHost");
            driver.Allocations.CheckRange(src, bytes, call);
            for (nuint offset = 0; offset < bytes; offset += CopyPiece)
            {
                var n = (int)Math.Min(CopyPiece, bytes - offset);
                var copy = driver.Session.CopyToHostAsync(new DevicePtr(src + offset), new NativeBuffer(dst + offset, n).Memory, s).AsTask();
                if (async && IsPinned(driver, dst, bytes))
                {
                    driver.TrackCopy(s, copy);
                    driver.NoteWork(s);
                }
                else
                {
                    driver.Wait(copy, call);
                }
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyDtoD_v2")]
    internal static CuResult MemcpyDtoD(ulong dst, ulong src, nuint bytes) => CopyDeviceToDevice("cuMemcpyDtoD", dst, src, bytes, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyDtoDAsync_v2")]
    internal static CuResult MemcpyDtoDAsync(ulong dst, ulong src, nuint bytes, nint stream) => CopyDeviceToDevice("cuMemcpyDtoDAsync", dst, src, bytes, stream);

    /// <summary>
    /// The unified form. Device addresses are the broker's and may coincide with addresses of this process's own
    /// memory, so the direction cannot be told from a pointer: only device-to-device copies are served (the
    /// device reports no unified addressing); anything else is CUDA_ERROR_NOT_SUPPORTED.
    /// </summary>
    [UnmanagedCallersOnly(EntryPoint = "cuMemcpy")]
    internal static CuResult Memcpy(ulong dst, ulong src, nuint bytes) => CopyUnified("cuMemcpy", dst, src, bytes, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyAsync")]
    internal static CuResult MemcpyAsync(ulong dst, ulong src, nuint bytes, nint stream) => CopyUnified("cuMemcpyAsync", dst, src, bytes, stream);

    private static CuResult CopyUnified(string call, ulong dst, ulong src, nuint bytes, nint stream)
    {
        try
        {
            var driver = Driver.Instance;
            if (bytes > 0 && (driver.Allocations.Find(dst) is null || driver.Allocations.Find(src) is null))
            {
                throw new CudaException(CuResult.NotSupported, "only device-to-device copies are served (no unified addressing): use cuMemcpyHtoD or cuMemcpyDtoH for host memory");
            }

            return CopyDeviceToDevice(call, dst, src, bytes, stream);
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }

    private static CuResult CopyDeviceToDevice(string call, ulong dst, ulong src, nuint bytes, nint stream)
    {
        try
        {
            var driver = Driver.Instance;
            _ = Driver.Current();
            var s = driver.ResolveStream(stream);
            if (bytes == 0)
            {
                return CuResult.Success;
            }

            driver.Allocations.CheckRange(dst, bytes, call + " destination");
            driver.Allocations.CheckRange(src, bytes, call + " source");
            driver.Wait(driver.Session.CopyDeviceToDeviceAsync(new DevicePtr(dst), new DevicePtr(src), bytes, s), call);
            driver.NoteWork(s);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }

    // ---- Memset ----

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD8_v2")]
    internal static CuResult MemsetD8(ulong dst, byte value, nuint count) => Memset("cuMemsetD8", dst, value, count, 1, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD16_v2")]
    internal static CuResult MemsetD16(ulong dst, ushort value, nuint count) => Memset("cuMemsetD16", dst, value, count, 2, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD32_v2")]
    internal static CuResult MemsetD32(ulong dst, uint value, nuint count) => Memset("cuMemsetD32", dst, value, count, 4, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD8Async")]
    internal static CuResult MemsetD8Async(ulong dst, byte value, nuint count, nint stream) => Memset("cuMemsetD8Async", dst, value, count, 1, stream);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD16Async")]
    internal static CuResult MemsetD16Async(ulong dst, ushort value, nuint count, nint stream) => Memset("cuMemsetD16Async", dst, value, count, 2, stream);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD32Async")]
    internal static CuResult MemsetD32Async(ulong dst, uint value, nuint count, nint stream) => Memset("cuMemsetD32Async", dst, value, count, 4, stream);

    private static CuResult Memset(string call, ulong dst, uint value, nuint count, int elementSize, nint stream)
    {
        try
        {
            var driver = Driver.Instance;
            _ = Driver.Current();
            var s = driver.ResolveStream(stream);
            if (count == 0)
            {
                return CuResult.Success;
            }

            if (dst % (ulong)elementSize != 0)
            {
                throw new CudaException(CuResult.InvalidValue, $"{call}: 0x{dst:x} is not aligned to {elementSize} bytes");
            }

            if (count > ulong.MaxValue / (ulong)elementSize)
            {
                throw new CudaException(CuResult.InvalidValue, $"{call}: {count} elements is too many");
            }

            driver.Allocations.CheckRange(dst, count * (ulong)elementSize, call);
            driver.Wait(driver.Session.MemsetAsync(new DevicePtr(dst), value, count, elementSize, s), call);
            driver.NoteWork(s);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }
}
