namespace GpuPool.Shim.Internal;

/// <summary>
/// cuCtxSetLimit/cuCtxGetLimit: which CUlimit values exist, their defaults as the driver reports them on a fresh
/// context, and what a set stores. Nothing on a remote slice reads them (the kernels' stacks, printf FIFO and malloc
/// heap are the backend's business), so a context remembers what was set and reads it back.
/// </summary>
internal static class ContextLimits
{
    public const int StackSize = 0;
    public const int PrintfFifoSize = 1;
    public const int MallocHeapSize = 2;
    public const int DevRuntimeSyncDepth = 3;
    public const int DevRuntimePendingLaunchCount = 4;
    public const int MaxL2FetchGranularity = 5;
    public const int PersistingL2CacheSize = 6;

    /// <summary>CU_LIMIT_SHMEM_SIZE, CIG_ENABLED, CIG_SHMEM_FALLBACK_ENABLED (CIG contexts) and PER_BLOCK_MEMORY_SIZE: the shim has none of them.</summary>
    private const int LastKnown = 10;

    /// <summary>The value a context reads before anything was set; CUDA_ERROR_UNSUPPORTED_LIMIT for a limit this device does not have.</summary>
    public static ulong Default(DeviceProperties device, int limit)
    {
        Supported(device, limit);
        return limit switch
        {
            StackSize => 1024,
            PrintfFifoSize => 1 << 20,
            MallocHeapSize => 8 << 20,
            DevRuntimeSyncDepth => 2,
            DevRuntimePendingLaunchCount => 2048,
            MaxL2FetchGranularity => 64,
            _ => 0, // PERSISTING_L2_CACHE_SIZE
        };
    }

    /// <summary>Checks a cuCtxSetLimit and returns what the context stores (the driver clamps to what the device allows).</summary>
    public static ulong Check(DeviceProperties device, int limit, ulong value)
    {
        Supported(device, limit);
        switch (limit)
        {
            case MaxL2FetchGranularity:
                if (value > 128)
                {
                    throw new CudaException(CuResult.InvalidValue, $"CU_LIMIT_MAX_L2_FETCH_GRANULARITY is 0..128 bytes, not {value}");
                }

                return value;
            case PersistingL2CacheSize:
                var max = (ulong)Math.Max(0, device.Attribute(108));
                if (max == 0)
                {
                    throw new CudaException(CuResult.UnsupportedLimit, "the device has no persisting L2 cache (CU_DEVICE_ATTRIBUTE_MAX_PERSISTING_L2_CACHE_SIZE is 0)");
                }

                return Math.Min(value, max);
            default:
                return value;
        }
    }

    private static void Supported(DeviceProperties device, int limit)
    {
        if (limit is < 0 or > LastKnown)
        {
            throw new CudaException(CuResult.InvalidValue, $"{limit} is not a CUlimit");
        }

        if (limit > PersistingL2CacheSize)
        {
            throw new CudaException(CuResult.UnsupportedLimit, $"CUlimit {limit} belongs to CIG contexts, which the shim does not create");
        }

        if (limit == DevRuntimeSyncDepth && device.ComputeMajor >= 9)
        {
            throw new CudaException(CuResult.UnsupportedLimit, "CU_LIMIT_DEV_RUNTIME_SYNC_DEPTH does not exist on compute capability 9.0 and later");
        }
    }
}
