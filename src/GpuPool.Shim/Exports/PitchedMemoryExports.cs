using System.Runtime.InteropServices;
using GpuPool.Client;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// Pitched allocations, 2D and 3D copies and 2D memsets, on top of the SDK's linear copies and memsets: a copy
/// whose rows are contiguous on both sides (the width equals both pitches) is one copy, otherwise one copy per row
/// (per slice when the slices are contiguous). Host and device memory only: CUDA arrays (textures) do not exist
/// here, so CU_MEMORYTYPE_ARRAY is CUDA_ERROR_NOT_SUPPORTED. The whole device range of a copy or memset, from its
/// first row to the end of its last, is checked against the allocation map before anything is sent.
/// </summary>
internal static unsafe partial class Cuda
{
    private const int MemoryTypeHost = 1;
    private const int MemoryTypeDevice = 2;
    private const int MemoryTypeArray = 3;
    private const int MemoryTypeUnified = 4;

    /// <summary>CUDA_MEMCPY2D, as in cuda.h.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct Memcpy2DParams
    {
        public nuint SrcXInBytes;
        public nuint SrcY;
        public int SrcMemoryType;
        public void* SrcHost;
        public ulong SrcDevice;
        public nint SrcArray;
        public nuint SrcPitch;
        public nuint DstXInBytes;
        public nuint DstY;
        public int DstMemoryType;
        public void* DstHost;
        public ulong DstDevice;
        public nint DstArray;
        public nuint DstPitch;
        public nuint WidthInBytes;
        public nuint Height;
    }

    /// <summary>CUDA_MEMCPY3D, as in cuda.h.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct Memcpy3DParams
    {
        public nuint SrcXInBytes;
        public nuint SrcY;
        public nuint SrcZ;
        public nuint SrcLod;
        public int SrcMemoryType;
        public void* SrcHost;
        public ulong SrcDevice;
        public nint SrcArray;
        public void* Reserved0;
        public nuint SrcPitch;
        public nuint SrcHeight;
        public nuint DstXInBytes;
        public nuint DstY;
        public nuint DstZ;
        public nuint DstLod;
        public int DstMemoryType;
        public void* DstHost;
        public ulong DstDevice;
        public nint DstArray;
        public void* Reserved1;
        public nuint DstPitch;
        public nuint DstHeight;
        public nuint WidthInBytes;
        public nuint Height;
        public nuint Depth;
    }

    /// <summary>One side of a pitched copy: host or device memory, its base address, where the copy starts in it, and its pitch and height.</summary>
    internal readonly record struct PitchedSide(bool Device, ulong Address, ulong X, ulong Y, ulong Z, ulong Pitch, ulong Height, string Name)
    {
        /// <summary>The offset of the copy's first byte from the base address.</summary>
        public ulong First => checked(X + (Y * Pitch) + (Z * SliceStride));

        public ulong SliceStride => checked(Pitch * Height);

        /// <summary>The bytes from the copy's first byte to the end of its last row.</summary>
        public ulong Extent(ulong width, ulong height, ulong depth) => checked(((depth - 1) * SliceStride) + ((height - 1) * Pitch) + width);
    }

    // ---- Pitched allocation ----

    [UnmanagedCallersOnly(EntryPoint = "cuMemAllocPitch_v2")]
    internal static CuResult MemAllocPitch(ulong* pointer, nuint* pitch, nuint widthInBytes, nuint height, uint elementSizeBytes)
    {
        try
        {
            NotNull(pointer, "dptr");
            NotNull(pitch, "pPitch");
            var driver = Driver.Instance;
            var ctx = Driver.Current();
            if (elementSizeBytes is not (4 or 8 or 16))
            {
                throw new CudaException(CuResult.InvalidValue, $"ElementSizeBytes must be 4, 8 or 16, not {elementSizeBytes}");
            }

            if (widthInBytes == 0 || height == 0)
            {
                throw new CudaException(CuResult.InvalidValue, $"a {widthInBytes} x {height} allocation is empty");
            }

            var align = driver.Device.PitchAlignment;
            ulong rowPitch, bytes;
            try
            {
                rowPitch = checked(((ulong)widthInBytes + align - 1) / align * align);
                bytes = checked(rowPitch * height);
            }
            catch (OverflowException)
            {
                throw new CudaException(CuResult.InvalidValue, $"a {widthInBytes} x {height} allocation is too large");
            }

            if (rowPitch > (ulong)driver.Device.Attribute(11))
            {
                throw new CudaException(CuResult.InvalidValue, $"a pitch of {rowPitch} bytes is more than the device's largest ({driver.Device.Attribute(11)})");
            }

            *pointer = Remember(driver, ctx, driver.Wait(driver.Session.AllocAsync(bytes), "cuMemAllocPitch").Address, bytes, pool: null);
            *pitch = (nuint)rowPitch;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuMemAllocPitch", ex);
        }
    }

    // ---- 2D and 3D copies ----

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpy2D_v2")]
    internal static CuResult Memcpy2D(Memcpy2DParams* copy) => Copy2D("cuMemcpy2D", copy, 0, async: false);

    /// <summary>The driver's unaligned variant exists for arrays and old hardware; here it is cuMemcpy2D.</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuMemcpy2DUnaligned_v2")]
    internal static CuResult Memcpy2DUnaligned(Memcpy2DParams* copy) => Copy2D("cuMemcpy2DUnaligned", copy, 0, async: false);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpy2DAsync_v2")]
    internal static CuResult Memcpy2DAsync(Memcpy2DParams* copy, nint stream) => Copy2D("cuMemcpy2DAsync", copy, stream, async: true);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpy3D_v2")]
    internal static CuResult Memcpy3D(Memcpy3DParams* copy) => Copy3D("cuMemcpy3D", copy, 0, async: false);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpy3DAsync_v2")]
    internal static CuResult Memcpy3DAsync(Memcpy3DParams* copy, nint stream) => Copy3D("cuMemcpy3DAsync", copy, stream, async: true);

    private static CuResult Copy2D(string call, Memcpy2DParams* p, nint stream, bool async)
    {
        try
        {
            NotNull(p, "pCopy");
            var driver = Driver.Instance;
            _ = Driver.Current();
            var s = driver.ResolveStream(stream);
            var src = Side(driver, "source", p->SrcMemoryType, p->SrcHost, p->SrcDevice, p->SrcArray, p->SrcXInBytes, p->SrcY, 0, p->SrcPitch, 0);
            var dst = Side(driver, "destination", p->DstMemoryType, p->DstHost, p->DstDevice, p->DstArray, p->DstXInBytes, p->DstY, 0, p->DstPitch, 0);
            PitchedCopy(driver, call, src, dst, p->WidthInBytes, p->Height, 1, s, async);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }

    private static CuResult Copy3D(string call, Memcpy3DParams* p, nint stream, bool async)
    {
        try
        {
            NotNull(p, "pCopy");
            var driver = Driver.Instance;
            _ = Driver.Current();
            var s = driver.ResolveStream(stream);
            if (p->Reserved0 is not null || p->Reserved1 is not null)
            {
                throw new CudaException(CuResult.InvalidValue, "reserved0 and reserved1 must be NULL");
            }

            var src = Side(driver, "source", p->SrcMemoryType, p->SrcHost, p->SrcDevice, p->SrcArray, p->SrcXInBytes, p->SrcY, p->SrcZ, p->SrcPitch, p->SrcHeight);
            var dst = Side(driver, "destination", p->DstMemoryType, p->DstHost, p->DstDevice, p->DstArray, p->DstXInBytes, p->DstY, p->DstZ, p->DstPitch, p->DstHeight);
            PitchedCopy(driver, call, src, dst, p->WidthInBytes, p->Height, p->Depth, s, async);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }

    /// <summary>
    /// The memory one side of a copy names. CU_MEMORYTYPE_UNIFIED needs unified addressing, which the device does not
    /// have, so the address is looked up instead: a device allocation, else host memory the shim knows.
    /// </summary>
    private static PitchedSide Side(Driver driver, string name, int type, void* host, ulong device, nint array, nuint x, nuint y, nuint z, nuint pitch, nuint height)
    {
        switch (type)
        {
            case MemoryTypeHost:
                NotNull(host, name + " host pointer");
                return new PitchedSide(false, (ulong)host, x, y, z, pitch, height, name);
            case MemoryTypeDevice:
                return new PitchedSide(true, device, x, y, z, pitch, height, name);
            case MemoryTypeArray:
                throw new CudaException(CuResult.NotSupported, $"the {name} is a CUDA array: arrays and textures are not supported by the GpuPool shim");
            case MemoryTypeUnified:
                if (driver.Allocations.Find(device) is not null)
                {
                    return new PitchedSide(true, device, x, y, z, pitch, height, name);
                }

                if (driver.HostMemory.Find((nuint)device) is not null)
                {
                    return new PitchedSide(false, device, x, y, z, pitch, height, name);
                }

                throw new CudaException(CuResult.NotSupported, $"the {name} is CU_MEMORYTYPE_UNIFIED memory the shim does not know (no unified addressing): name it as host or device memory");
            default:
                throw new CudaException(CuResult.InvalidValue, $"{type} is not a CUmemorytype");
        }
    }

    private static void PitchedCopy(Driver driver, string call, PitchedSide src, PitchedSide dst, ulong width, ulong height, ulong depth, DeviceStream s, bool async)
    {
        if (width == 0 || height == 0 || depth == 0)
        {
            return;
        }

        ulong srcFirst, dstFirst, srcExtent, dstExtent;
        try
        {
            CheckLayout(driver, call, src, width, height, depth);
            CheckLayout(driver, call, dst, width, height, depth);
            (srcFirst, dstFirst) = (src.First, dst.First);
            (srcExtent, dstExtent) = (src.Extent(width, height, depth), dst.Extent(width, height, depth));
            _ = checked(src.Address + srcFirst + srcExtent);
            _ = checked(dst.Address + dstFirst + dstExtent);
        }
        catch (OverflowException)
        {
            throw new CudaException(CuResult.InvalidValue, $"{call}: the copy's offsets, pitches and sizes overflow");
        }

        if (src.Device)
        {
            driver.Allocations.CheckRange(src.Address + srcFirst, srcExtent, call + " source");
        }

        if (dst.Device)
        {
            driver.Allocations.CheckRange(dst.Address + dstFirst, dstExtent, call + " destination");
        }

        var pieces = Pieces(src, dst, width, height, depth);
        switch (src.Device, dst.Device)
        {
            case (false, true):
                foreach (var (from, to, bytes) in pieces)
                {
                    SendToDevice(driver, call, dst.Address + to, (byte*)(src.Address + from), bytes, s);
                }

                driver.NoteWork(s);
                break;
            case (true, true):
                foreach (var (from, to, bytes) in pieces)
                {
                    driver.Wait(driver.Session.CopyDeviceToDeviceAsync(new DevicePtr(dst.Address + to), new DevicePtr(src.Address + from), bytes, s), call);
                }

                driver.NoteWork(s);
                break;
            case (true, false):
                var landLater = async && driver.HostMemory.IsPinned((nuint)(dst.Address + dstFirst), (nuint)dstExtent);
                var copies = new List<Task>();
                foreach (var (from, to, bytes) in pieces)
                {
                    for (ulong offset = 0; offset < bytes; offset += CopyPiece)
                    {
                        var n = (int)Math.Min(CopyPiece, bytes - offset);
                        var buffer = new NativeBuffer((byte*)(dst.Address + to + offset), n).Memory;
                        copies.Add(driver.Session.CopyToHostAsync(new DevicePtr(src.Address + from + offset), buffer, s).AsTask());
                    }
                }

                foreach (var copy in copies)
                {
                    if (landLater)
                    {
                        driver.TrackCopy(s, copy);
                    }
                    else
                    {
                        driver.Wait(copy, call);
                    }
                }

                if (landLater)
                {
                    driver.NoteWork(s);
                }

                break;
            default:
                // Host to host: the bytes move here, once the stream's earlier work (a copy into the source) is done.
                driver.Wait(driver.Session.SynchronizeStreamAsync(s), call);
                driver.WaitCopies(s);
                foreach (var (from, to, bytes) in pieces)
                {
                    Buffer.MemoryCopy((void*)(src.Address + from), (void*)(dst.Address + to), bytes, bytes);
                }

                break;
        }
    }

    /// <summary>A row must fit in the pitch, and with several slices a slice's rows in the side's height.</summary>
    private static void CheckLayout(Driver driver, string call, PitchedSide side, ulong width, ulong height, ulong depth)
    {
        if ((height > 1 || depth > 1) && checked(side.X + width) > side.Pitch)
        {
            throw new CudaException(CuResult.InvalidValue, $"{call}: the {side.Name} pitch ({side.Pitch} bytes) is smaller than a row ({side.X} + {width} bytes)");
        }

        if (depth > 1 && checked(side.Y + height) > side.Height)
        {
            throw new CudaException(CuResult.InvalidValue, $"{call}: the {side.Name} height ({side.Height} rows) is smaller than a slice ({side.Y} + {height} rows)");
        }

        if (side.Device && side.Pitch > (ulong)driver.Device.Attribute(11))
        {
            throw new CudaException(CuResult.InvalidValue, $"{call}: the {side.Name} pitch ({side.Pitch} bytes) is more than the device's largest");
        }
    }

    /// <summary>The copy as contiguous pieces (source offset, destination offset, bytes): as few as the layouts allow.</summary>
    internal static List<(ulong From, ulong To, ulong Bytes)> Pieces(PitchedSide src, PitchedSide dst, ulong width, ulong height, ulong depth)
    {
        var rowsContiguous = height == 1 || (src.Pitch == width && dst.Pitch == width);
        var slice = width * height;
        var slicesContiguous = rowsContiguous && (depth == 1 || (src.SliceStride == slice && dst.SliceStride == slice));
        var pieces = new List<(ulong, ulong, ulong)>();
        if (slicesContiguous)
        {
            pieces.Add((src.First, dst.First, slice * depth));
        }
        else if (rowsContiguous)
        {
            for (ulong z = 0; z < depth; z++)
            {
                pieces.Add((src.First + (z * src.SliceStride), dst.First + (z * dst.SliceStride), slice));
            }
        }
        else
        {
            for (ulong z = 0; z < depth; z++)
            {
                for (ulong y = 0; y < height; y++)
                {
                    pieces.Add((src.First + (z * src.SliceStride) + (y * src.Pitch), dst.First + (z * dst.SliceStride) + (y * dst.Pitch), width));
                }
            }
        }

        return pieces;
    }

    /// <summary>A fire-and-forget copy of host bytes to the device, in pieces the SDK takes (a Memory covers at most 2 GiB).</summary>
    private static void SendToDevice(Driver driver, string call, ulong dst, byte* src, ulong bytes, DeviceStream s)
    {
        for (ulong offset = 0; offset < bytes; offset += CopyPiece)
        {
            var n = (int)Math.Min(CopyPiece, bytes - offset);
            driver.Wait(driver.Session.CopyToDeviceAsync(new DevicePtr(dst + offset), new NativeBuffer(src + offset, n).Memory, s), call);
        }
    }

    // ---- 2D memsets ----

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD2D8_v2")]
    internal static CuResult MemsetD2D8(ulong dst, nuint pitch, byte value, nuint width, nuint height) => Memset2D("cuMemsetD2D8", dst, pitch, value, width, height, 1, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD2D16_v2")]
    internal static CuResult MemsetD2D16(ulong dst, nuint pitch, ushort value, nuint width, nuint height) => Memset2D("cuMemsetD2D16", dst, pitch, value, width, height, 2, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD2D32_v2")]
    internal static CuResult MemsetD2D32(ulong dst, nuint pitch, uint value, nuint width, nuint height) => Memset2D("cuMemsetD2D32", dst, pitch, value, width, height, 4, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD2D8Async")]
    internal static CuResult MemsetD2D8Async(ulong dst, nuint pitch, byte value, nuint width, nuint height, nint stream) => Memset2D("cuMemsetD2D8Async", dst, pitch, value, width, height, 1, stream);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD2D16Async")]
    internal static CuResult MemsetD2D16Async(ulong dst, nuint pitch, ushort value, nuint width, nuint height, nint stream) => Memset2D("cuMemsetD2D16Async", dst, pitch, value, width, height, 2, stream);

    [UnmanagedCallersOnly(EntryPoint = "cuMemsetD2D32Async")]
    internal static CuResult MemsetD2D32Async(ulong dst, nuint pitch, uint value, nuint width, nuint height, nint stream) => Memset2D("cuMemsetD2D32Async", dst, pitch, value, width, height, 4, stream);

    /// <summary>Width in elements, pitch in bytes: one memset when the rows are contiguous, otherwise one per row.</summary>
    private static CuResult Memset2D(string call, ulong dst, nuint pitch, uint value, nuint width, nuint height, int elementSize, nint stream)
    {
        try
        {
            var driver = Driver.Instance;
            _ = Driver.Current();
            var s = driver.ResolveStream(stream);
            if (width == 0 || height == 0)
            {
                return CuResult.Success;
            }

            if (dst % (ulong)elementSize != 0 || (height > 1 && pitch % (nuint)elementSize != 0))
            {
                throw new CudaException(CuResult.InvalidValue, $"{call}: 0x{dst:x} and the pitch ({pitch}) must be multiples of {elementSize} bytes");
            }

            ulong row, extent;
            try
            {
                row = checked((ulong)width * (ulong)elementSize);
                extent = checked(((height - 1) * (ulong)pitch) + row);
            }
            catch (OverflowException)
            {
                throw new CudaException(CuResult.InvalidValue, $"{call}: {width} x {height} elements is too many");
            }

            if (height > 1 && row > pitch)
            {
                throw new CudaException(CuResult.InvalidValue, $"{call}: the pitch ({pitch} bytes) is smaller than a row ({row} bytes)");
            }

            driver.Allocations.CheckRange(dst, extent, call);
            if (height == 1 || row == pitch)
            {
                driver.Wait(driver.Session.MemsetAsync(new DevicePtr(dst), value, (ulong)width * height, elementSize, s), call);
            }
            else
            {
                for (ulong y = 0; y < height; y++)
                {
                    driver.Wait(driver.Session.MemsetAsync(new DevicePtr(dst + (y * pitch)), value, width, elementSize, s), call);
                }
            }

            driver.NoteWork(s);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }
}
