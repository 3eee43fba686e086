using System.Runtime.InteropServices;
using GpuPool.Client;
using GpuPool.Modules.Ptx;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// Kernel launches, fire-and-forget, and the occupancy calculator. Parameters come either as kernelParams (one
/// pointer per parameter: sizes and offsets from the module's PTX) or as the <c>extra</c> array's packed buffer
/// (CU_LAUNCH_PARAM_BUFFER_POINTER / _SIZE), whose size must match the PTX signature.
/// </summary>
internal static unsafe partial class Cuda
{
    /// <summary>The driver API's limit on a launch's parameter block (and the wire's).</summary>
    private const int MaxParamBytes = 4096;

    /// <summary>Each calling thread's parameter block, reused: a launch waits until the SDK has taken its bytes.</summary>
    [ThreadStatic]
    private static byte[]? t_packed;

    private const nint LaunchParamEnd = 0;
    private const nint LaunchParamBufferPointer = 1;
    private const nint LaunchParamBufferSize = 2;

    [UnmanagedCallersOnly(EntryPoint = "cuLaunchKernel")]
    internal static CuResult LaunchKernel(
        nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
        uint sharedMemBytes, nint stream, void** kernelParams, nint* extra)
        => Launch("cuLaunchKernel", function, (gridX, gridY, gridZ), (blockX, blockY, blockZ), sharedMemBytes, stream, kernelParams, extra);

    /// <summary>A launch, checked here (geometry, shared memory, parameters) and sent fire-and-forget.</summary>
    private static CuResult Launch(string call, nint function, (uint X, uint Y, uint Z) grid, (uint X, uint Y, uint Z) blockDim, uint sharedMemBytes, nint stream, void** kernelParams, nint* extra)
    {
        try
        {
            var driver = Driver.Instance;
            _ = Driver.Current();
            var f = ResolveFunction(driver, function);
            var s = driver.ResolveStream(stream);
            var (gridX, gridY, gridZ) = grid;
            var (blockX, blockY, blockZ) = blockDim;
            CheckGeometry(driver.Device, f, grid, blockDim, sharedMemBytes);

            var signature = f.Signature;
            var block = t_packed ??= new byte[MaxParamBytes];
            Span<byte> packed = block;
            if (signature.ParamBytes > MaxParamBytes)
            {
                throw new CudaException(CuResult.InvalidValue, $"kernel {signature.Name} takes {signature.ParamBytes} bytes of parameters, more than the {MaxParamBytes} a launch carries");
            }

            packed = packed[..signature.ParamBytes];
            packed.Clear();
            if (kernelParams is not null && extra is not null)
            {
                throw new CudaException(CuResult.InvalidValue, "kernelParams and extra are both given: pass one");
            }

            if (extra is not null)
            {
                PackExtra(signature, extra, packed);
            }
            else if (signature.Params.Count > 0)
            {
                if (kernelParams is null)
                {
                    throw new CudaException(CuResult.InvalidValue, $"kernel {signature} takes parameters but kernelParams and extra are both null");
                }

                for (var i = 0; i < signature.Params.Count; i++)
                {
                    var value = kernelParams[i];
                    if (value is null)
                    {
                        throw new CudaException(CuResult.InvalidValue, $"kernelParams[{i}] ({signature.Params[i].Name} of {signature.Name}) is null");
                    }

                    new ReadOnlySpan<byte>(value, signature.Params[i].Size).CopyTo(packed[signature.Offsets[i]..]);
                }
            }

            driver.Wait(
                driver.Session.LaunchAsync(f.Remote, new Dim3(gridX, gridY, gridZ), new Dim3(blockX, blockY, blockZ), block.AsMemory(0, signature.ParamBytes), s, sharedMemBytes),
                call);
            driver.NoteWork(s);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }

    private static void CheckGeometry(DeviceProperties d, FunctionObject f, (uint X, uint Y, uint Z) grid, (uint X, uint Y, uint Z) block, uint sharedMemBytes)
    {
        var name = f.Signature.Name;
        if (grid.X == 0 || grid.Y == 0 || grid.Z == 0)
        {
            throw new CudaException(CuResult.InvalidValue, $"launch of {name}: grid ({grid.X}, {grid.Y}, {grid.Z}) has a zero dimension");
        }

        if (block.X == 0 || block.Y == 0 || block.Z == 0)
        {
            throw new CudaException(CuResult.InvalidValue, $"launch of {name}: block ({block.X}, {block.Y}, {block.Z}) has a zero dimension");
        }

        if (grid.X > d.MaxGrid.X || grid.Y > d.MaxGrid.Y || grid.Z > d.MaxGrid.Z)
        {
            throw new CudaException(CuResult.InvalidValue, $"launch of {name}: grid ({grid.X}, {grid.Y}, {grid.Z}) is larger than the device allows ({d.MaxGrid.X}, {d.MaxGrid.Y}, {d.MaxGrid.Z})");
        }

        if (block.X > d.MaxBlock.X || block.Y > d.MaxBlock.Y || block.Z > d.MaxBlock.Z || (ulong)block.X * block.Y * block.Z > (ulong)d.MaxThreadsPerBlock)
        {
            throw new CudaException(CuResult.InvalidValue, $"launch of {name}: block ({block.X}, {block.Y}, {block.Z}) is larger than the device allows ({d.MaxBlock.X}, {d.MaxBlock.Y}, {d.MaxBlock.Z}; {d.MaxThreadsPerBlock} threads)");
        }

        // The function's CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES (cuFuncSetAttribute), else the device's per-block limit.
        var sharedLimit = f.DynamicSharedLimit(d);
        if (sharedMemBytes > sharedLimit)
        {
            throw new CudaException(CuResult.InvalidValue, $"launch of {name}: {sharedMemBytes} bytes of dynamic shared memory is more than the {sharedLimit} the function may have (CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)");
        }
    }

    /// <summary>Reads the <c>extra</c> array: a buffer pointer and a pointer to its size, ended by CU_LAUNCH_PARAM_END.</summary>
    private static void PackExtra(KernelSignature signature, nint* extra, Span<byte> packed)
    {
        void* buffer = null;
        nuint* sizePointer = null;
        for (var i = 0; ; i += 2)
        {
            if (i > 64)
            {
                throw new CudaException(CuResult.InvalidValue, "the extra array has no CU_LAUNCH_PARAM_END within 32 entries");
            }

            var key = extra[i];
            if (key == LaunchParamEnd)
            {
                break;
            }

            switch (key)
            {
                case LaunchParamBufferPointer:
                    buffer = (void*)extra[i + 1];
                    break;
                case LaunchParamBufferSize:
                    sizePointer = (nuint*)extra[i + 1];
                    break;
                default:
                    throw new CudaException(CuResult.InvalidValue, $"the extra array holds an unknown key 0x{key:x}");
            }
        }

        if (sizePointer is null)
        {
            throw new CudaException(CuResult.InvalidValue, "the extra array has no CU_LAUNCH_PARAM_BUFFER_SIZE");
        }

        var size = *sizePointer;
        if (size != 0 && buffer is null)
        {
            throw new CudaException(CuResult.InvalidValue, "the extra array has a buffer size but no CU_LAUNCH_PARAM_BUFFER_POINTER");
        }

        // The exact size, or that size rounded up to the largest alignment, as a C struct of the parameters has.
        if (size != (nuint)signature.ParamBytes && size != (nuint)signature.PaddedBytes)
        {
            throw new CudaException(CuResult.InvalidValue,
                $"kernel {signature} takes {signature.ParamBytes} bytes of parameters, but the extra buffer holds {size}");
        }

        if (signature.ParamBytes > 0)
        {
            new ReadOnlySpan<byte>(buffer, signature.ParamBytes).CopyTo(packed);
        }
    }

    // ---- Occupancy, from the cached device properties (the kernels' register and shared use is not known: 32 registers, no static shared memory) ----

    [UnmanagedCallersOnly(EntryPoint = "cuOccupancyMaxActiveBlocksPerMultiprocessor")]
    internal static CuResult OccupancyMaxActiveBlocks(int* blocks, nint function, int blockSize, nuint dynamicShared)
        => MaxActiveBlocks("cuOccupancyMaxActiveBlocksPerMultiprocessor", blocks, function, blockSize, dynamicShared, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags")]
    internal static CuResult OccupancyMaxActiveBlocksWithFlags(int* blocks, nint function, int blockSize, nuint dynamicShared, uint flags)
        => MaxActiveBlocks("cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags", blocks, function, blockSize, dynamicShared, flags);

    private static CuResult MaxActiveBlocks(string call, int* blocks, nint function, int blockSize, nuint dynamicShared, uint flags)
    {
        try
        {
            NotNull(blocks, "numBlocks");
            var driver = Driver.Instance;
            _ = ResolveFunction(driver, function);
            if (flags > 1)
            {
                throw new CudaException(CuResult.InvalidValue, $"0x{flags:x} is not a set of occupancy flags");
            }

            if (blockSize <= 0)
            {
                throw new CudaException(CuResult.InvalidValue, $"blockSize must be positive, not {blockSize}");
            }

            *blocks = ActiveBlocks(driver.Device, blockSize, dynamicShared);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuOccupancyMaxPotentialBlockSize")]
    internal static CuResult OccupancyMaxPotentialBlockSize(int* minGridSize, int* blockSize, nint function, nint sharedForBlockSize, nuint dynamicShared, int blockSizeLimit)
        => PotentialBlockSize("cuOccupancyMaxPotentialBlockSize", minGridSize, blockSize, function, sharedForBlockSize, dynamicShared, blockSizeLimit, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuOccupancyMaxPotentialBlockSizeWithFlags")]
    internal static CuResult OccupancyMaxPotentialBlockSizeWithFlags(int* minGridSize, int* blockSize, nint function, nint sharedForBlockSize, nuint dynamicShared, int blockSizeLimit, uint flags)
        => PotentialBlockSize("cuOccupancyMaxPotentialBlockSizeWithFlags", minGridSize, blockSize, function, sharedForBlockSize, dynamicShared, blockSizeLimit, flags);

    /// <summary>The block size with the most resident threads per multiprocessor (largest on a tie), and the grid that fills the device with it.</summary>
    private static CuResult PotentialBlockSize(string call, int* minGridSize, int* blockSize, nint function, nint sharedForBlockSize, nuint dynamicShared, int blockSizeLimit, uint flags)
    {
        try
        {
            NotNull(minGridSize, "minGridSize");
            NotNull(blockSize, "blockSize");
            var driver = Driver.Instance;
            _ = ResolveFunction(driver, function);
            if (flags > 1 || blockSizeLimit < 0)
            {
                throw new CudaException(CuResult.InvalidValue, "bad flags or blockSizeLimit");
            }

            var d = driver.Device;
            var limit = blockSizeLimit == 0 ? d.MaxThreadsPerBlock : Math.Min(blockSizeLimit, d.MaxThreadsPerBlock);
            var sharedFor = (delegate* unmanaged<int, nuint>)sharedForBlockSize;
            int bestSize = 0, bestBlocks = 0, bestThreads = -1;
            for (var size = RoundUp(limit, d.WarpSize); size > 0; size -= d.WarpSize)
            {
                var candidate = Math.Min(size, limit);
                var shared = sharedFor is null ? dynamicShared : sharedFor(candidate);
                var active = ActiveBlocks(d, candidate, shared);
                if (active * candidate > bestThreads)
                {
                    (bestSize, bestBlocks, bestThreads) = (candidate, active, active * candidate);
                }
            }

            *blockSize = bestSize;
            *minGridSize = bestBlocks * d.Multiprocessors;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }

    private static int ActiveBlocks(DeviceProperties d, int blockSize, nuint dynamicShared)
    {
        if (blockSize > d.MaxThreadsPerBlock || (long)dynamicShared > d.MaxSharedPerBlock)
        {
            return 0;
        }

        var byThreads = d.MaxThreadsPerMultiprocessor / RoundUp(blockSize, d.WarpSize);
        var byShared = dynamicShared == 0 ? int.MaxValue : (int)Math.Min(int.MaxValue, d.SharedPerMultiprocessor / (long)dynamicShared);
        return Math.Max(0, Math.Min(d.MaxBlocksPerMultiprocessor, Math.Min(byThreads, byShared)));
    }

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;
}
