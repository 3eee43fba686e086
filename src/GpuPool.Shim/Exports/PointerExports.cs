using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// Pointer attributes, answered from the allocation map (device memory) and the host ranges (cuMemAllocHost,
/// cuMemHostAlloc, cuMemHostRegister). A device address is looked up first: device addresses are the broker's and
/// could coincide with one of this process's own. Device memory is never managed, lives on device 0, and is not
/// reachable from the host; host memory is not mapped into the device. A pointer the shim does not know is
/// CUDA_ERROR_INVALID_VALUE for cuPointerGetAttribute (CU_POINTER_ATTRIBUTE_MAPPED reads 0), and zeros with
/// CUDA_SUCCESS for cuPointerGetAttributes, as the driver answers.
/// </summary>
internal static unsafe partial class Cuda
{
    private const int LastPointerAttribute = 20;

    private readonly record struct PointerInfo(bool Known, bool Device, ulong Base, ulong Size, Context? Owner, ulong BufferId, MemPoolObject? Pool, uint HostFlags);

    [UnmanagedCallersOnly(EntryPoint = "cuPointerGetAttribute")]
    internal static CuResult PointerGetAttribute(void* data, int attribute, ulong pointer)
    {
        try
        {
            NotNull(data, "data");
            var driver = Driver.Instance;
            PointerAttribute(Describe(driver, pointer), attribute, pointer, data, strict: true);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuPointerGetAttribute", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuPointerGetAttributes")]
    internal static CuResult PointerGetAttributes(uint count, int* attributes, void** data, ulong pointer)
    {
        try
        {
            if (count > 0)
            {
                NotNull(attributes, "attributes");
                NotNull(data, "data");
            }

            var driver = Driver.Instance;
            var info = Describe(driver, pointer);
            for (var i = 0; i < count; i++)
            {
                if (data[i] is not null)
                {
                    PointerAttribute(info, attributes[i], pointer, data[i], strict: false);
                }
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuPointerGetAttributes", ex);
        }
    }

    private static PointerInfo Describe(Driver driver, ulong pointer)
    {
        if (pointer != 0 && driver.Allocations.Find(pointer) is { } device)
        {
            return new PointerInfo(true, true, device.Base, device.Size, device.Owner, device.BufferId, device.Pool, 0);
        }

        if (pointer != 0 && driver.HostMemory.Find((nuint)pointer) is { } host)
        {
            return new PointerInfo(true, false, host.Start, host.Size, host.Owner, host.BufferId, null, host.Flags);
        }

        return default;
    }

    /// <summary>
    /// Writes one attribute in its C type (booleans and enums as 4 bytes, addresses, sizes and ids as 8). Where the
    /// driver fails (<paramref name="strict"/>, cuPointerGetAttribute) the value is an error; cuPointerGetAttributes
    /// writes zeros instead.
    /// </summary>
    private static void PointerAttribute(PointerInfo p, int attribute, ulong pointer, void* data, bool strict)
    {
        if (attribute is < 1 or > LastPointerAttribute)
        {
            throw new CudaException(CuResult.InvalidValue, $"{attribute} is not a CUpointer_attribute");
        }

        if (!p.Known)
        {
            if (strict && attribute != 13)
            {
                throw new CudaException(CuResult.InvalidValue, $"0x{pointer:x} is neither device memory nor host memory of this process that CUDA knows (allocated, registered)");
            }

            WritePointerAttribute(attribute, data, 0);
            return;
        }

        ulong value = attribute switch
        {
            1 => (ulong)(p.Owner?.Handle ?? 0),             // CONTEXT
            2 => p.Device ? 2u : 1u,                          // MEMORY_TYPE: CU_MEMORYTYPE_DEVICE or _HOST
            3 when p.Device => pointer,                       // DEVICE_POINTER
            3 => strict ? throw NotReachable(pointer, "the device") : 0UL,
            4 when !p.Device => pointer,                      // HOST_POINTER
            4 => strict ? throw NotReachable(pointer, "the host") : 0UL,
            5 => strict ? throw new CudaException(CuResult.NotSupported, "P2P tokens: the memory is on a remote device") : 0UL,
            7 or 20 => p.BufferId,                            // BUFFER_ID, MEMORY_BLOCK_ID
            11 or 19 => p.Base,                               // RANGE_START_ADDR, MAPPING_BASE_ADDR
            12 or 18 => p.Size,                               // RANGE_SIZE, MAPPING_SIZE
            13 => p.Device ? 1u : 0u,                         // MAPPED: backed device memory; host memory is not mapped
            16 => !p.Device && (p.HostFlags & HostRegisterReadOnly) != 0 ? 1u : 3u, // ACCESS_FLAGS: READ or READWRITE
            17 => (ulong)(p.Pool?.Handle ?? 0),               // MEMPOOL_HANDLE
            _ => 0,                                           // SYNC_MEMOPS, IS_MANAGED, DEVICE_ORDINAL, IPC, handle types, RDMA
        };
        WritePointerAttribute(attribute, data, value);
    }

    private static CudaException NotReachable(ulong pointer, string side)
        => new(CuResult.InvalidValue, $"0x{pointer:x} cannot be reached from {side} (the device is remote: no mapped or unified memory)");

    private static void WritePointerAttribute(int attribute, void* data, ulong value)
    {
        switch (attribute)
        {
            case 2 or 6 or 8 or 9 or 10 or 13 or 15 or 16:
                *(uint*)data = (uint)value;
                break;
            case 5:
                // CUDA_POINTER_ATTRIBUTE_P2P_TOKENS: two tokens, 16 bytes.
                new Span<byte>(data, 16).Clear();
                break;
            default:
                *(ulong*)data = value;
                break;
        }
    }
}
