using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// Registration of the program's own host memory. Page-locking has no effect across the network, so a registration
/// is a remembered range: copies to and from it behave as with memory from cuMemAllocHost (an asynchronous copy to
/// the host lands in it later). Mapping host memory into the device's address space has no meaning for a remote
/// device: CU_MEMHOSTREGISTER_DEVICEMAP and cuMemHostGetDevicePointer are CUDA_ERROR_NOT_SUPPORTED.
/// </summary>
internal static unsafe partial class Cuda
{
    private const uint HostRegisterPortable = 0x1;
    private const uint HostRegisterDeviceMap = 0x2;
    private const uint HostRegisterIoMemory = 0x4;
    private const uint HostRegisterReadOnly = 0x8;

    [UnmanagedCallersOnly(EntryPoint = "cuMemHostRegister")]
    internal static CuResult MemHostRegisterV1(void* pointer, nuint bytes, uint flags) => HostRegister("cuMemHostRegister", pointer, bytes, flags);

    [UnmanagedCallersOnly(EntryPoint = "cuMemHostRegister_v2")]
    internal static CuResult MemHostRegister(void* pointer, nuint bytes, uint flags) => HostRegister("cuMemHostRegister", pointer, bytes, flags);

    private static CuResult HostRegister(string call, void* pointer, nuint bytes, uint flags)
    {
        try
        {
            var driver = Driver.Instance;
            var ctx = Driver.Current();
            NotNull(pointer, "p");
            if (bytes == 0)
            {
                throw new CudaException(CuResult.InvalidValue, "bytesize is 0");
            }

            if ((flags & ~(HostRegisterPortable | HostRegisterDeviceMap | HostRegisterIoMemory | HostRegisterReadOnly)) != 0)
            {
                throw new CudaException(CuResult.InvalidValue, $"0x{flags:x} is not a set of CU_MEMHOSTREGISTER flags");
            }

            if ((flags & HostRegisterDeviceMap) != 0)
            {
                return Unsupported(call, "CU_MEMHOSTREGISTER_DEVICEMAP: host memory cannot be mapped into a remote device");
            }

            if ((flags & HostRegisterIoMemory) != 0)
            {
                return Unsupported(call, "CU_MEMHOSTREGISTER_IOMEMORY: another device's memory cannot be reached from a remote device");
            }

            driver.HostMemory.Register((nuint)pointer, bytes, flags, ctx);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuMemHostUnregister")]
    internal static CuResult MemHostUnregister(void* pointer)
    {
        try
        {
            var driver = Driver.Instance;
            NotNull(pointer, "p");
            if (driver.HostMemory.Remove((nuint)pointer, registered: true) is null)
            {
                throw new CudaException(CuResult.HostMemoryNotRegistered, $"0x{(ulong)pointer:x} is not the start of a range registered with cuMemHostRegister");
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuMemHostUnregister", ex);
        }
    }

    /// <summary>The flags host memory was allocated (cuMemHostAlloc) or registered (cuMemHostRegister) with.</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuMemHostGetFlags")]
    internal static CuResult MemHostGetFlags(uint* flags, void* pointer)
    {
        try
        {
            NotNull(flags, "pFlags");
            var driver = Driver.Instance;
            var range = driver.HostMemory.Find((nuint)pointer) ?? throw new CudaException(CuResult.InvalidValue,
                $"0x{(ulong)pointer:x} is not host memory from cuMemAllocHost, cuMemHostAlloc or cuMemHostRegister");
            *flags = range.Flags;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuMemHostGetFlags", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuMemHostGetDevicePointer_v2")]
    internal static CuResult MemHostGetDevicePointer(ulong* pointer, void* host, uint flags)
    {
        if (pointer is not null)
        {
            *pointer = 0;
        }

        return Unsupported("cuMemHostGetDevicePointer", "mapped host memory: host memory cannot be mapped into a remote device");
    }
}
