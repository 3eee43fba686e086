using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// Context limits and cache configuration, and the per-function settings. A remote slice has nothing to tune with
/// them: they are remembered per context (per function) and read back as set, with the driver's defaults until then.
/// The one setting with an effect is a function's CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, which the launch
/// check of dynamic shared memory uses.
/// </summary>
internal static unsafe partial class Cuda
{
    // ---- Limits ----

    [UnmanagedCallersOnly(EntryPoint = "cuCtxSetLimit")]
    internal static CuResult CtxSetLimit(int limit, nuint value)
    {
        try
        {
            var driver = Driver.Instance;
            var ctx = Driver.Current();
            var stored = ContextLimits.Check(driver.Device, limit, value);
            lock (driver.Gate)
            {
                ctx.Limits[limit] = stored;
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxSetLimit", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuCtxGetLimit")]
    internal static CuResult CtxGetLimit(nuint* value, int limit)
    {
        try
        {
            NotNull(value, "pvalue");
            var driver = Driver.Instance;
            var ctx = Driver.Current();
            var fallback = ContextLimits.Default(driver.Device, limit);
            lock (driver.Gate)
            {
                *value = (nuint)ctx.Limits.GetValueOrDefault(limit, fallback);
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxGetLimit", ex);
        }
    }

    // ---- Cache and shared memory configuration ----

    [UnmanagedCallersOnly(EntryPoint = "cuCtxGetCacheConfig")]
    internal static CuResult CtxGetCacheConfig(int* config)
    {
        try
        {
            NotNull(config, "pconfig");
            var driver = Driver.Instance;
            var ctx = Driver.Current();
            lock (driver.Gate)
            {
                *config = ctx.CacheConfig;
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxGetCacheConfig", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuCtxSetCacheConfig")]
    internal static CuResult CtxSetCacheConfig(int config)
    {
        try
        {
            var driver = Driver.Instance;
            var ctx = Driver.Current();
            CheckCacheConfig(config);
            lock (driver.Gate)
            {
                ctx.CacheConfig = config;
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxSetCacheConfig", ex);
        }
    }

    /// <summary>Four-byte banks, as the driver reports on every device since compute capability 5, where the bank size is fixed.</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuCtxGetSharedMemConfig")]
    internal static CuResult CtxGetSharedMemConfig(int* config)
    {
        try
        {
            NotNull(config, "pConfig");
            _ = Driver.Instance;
            _ = Driver.Current();
            *config = SharedMemFourByteBanks;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxGetSharedMemConfig", ex);
        }
    }

    /// <summary>Accepted and without effect, as on a device whose bank size is fixed: cuCtxGetSharedMemConfig still says four bytes.</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuCtxSetSharedMemConfig")]
    internal static CuResult CtxSetSharedMemConfig(int config)
    {
        try
        {
            _ = Driver.Instance;
            _ = Driver.Current();
            CheckSharedMemConfig(config);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxSetSharedMemConfig", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuFuncSetCacheConfig")]
    internal static CuResult FuncSetCacheConfig(nint function, int config)
    {
        try
        {
            var driver = Driver.Instance;
            var f = ResolveFunction(driver, function);
            CheckCacheConfig(config);
            f.CacheConfig = config;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuFuncSetCacheConfig", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuFuncSetSharedMemConfig")]
    internal static CuResult FuncSetSharedMemConfig(nint function, int config)
    {
        try
        {
            var driver = Driver.Instance;
            var f = ResolveFunction(driver, function);
            CheckSharedMemConfig(config);
            f.SharedMemConfig = config;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuFuncSetSharedMemConfig", ex);
        }
    }

    /// <summary>
    /// The two settable attributes: the dynamic shared memory a launch may ask for (up to the device's opt-in
    /// limit), which the launch check then uses, and the preferred carveout (-1, or a percentage), remembered.
    /// </summary>
    [UnmanagedCallersOnly(EntryPoint = "cuFuncSetAttribute")]
    internal static CuResult FuncSetAttribute(nint function, int attribute, int value)
    {
        try
        {
            var driver = Driver.Instance;
            var f = ResolveFunction(driver, function);
            switch (attribute)
            {
                case 8:
                    var optIn = driver.Device.Attribute(97);
                    if (value < 0 || value > optIn)
                    {
                        throw new CudaException(CuResult.InvalidValue, $"CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES must be 0..{optIn} (the device's opt-in limit), not {value}");
                    }

                    f.MaxDynamicSharedBytes = value;
                    break;
                case 9:
                    if (value is < -1 or > 100)
                    {
                        throw new CudaException(CuResult.InvalidValue, $"CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT must be -1 or 0..100, not {value}");
                    }

                    f.PreferredCarveout = value;
                    break;
                default:
                    throw new CudaException(CuResult.InvalidValue, $"function attribute {attribute} cannot be set (only MAX_DYNAMIC_SHARED_SIZE_BYTES and PREFERRED_SHARED_MEMORY_CARVEOUT)");
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuFuncSetAttribute", ex);
        }
    }

    private const int SharedMemFourByteBanks = 1;

    private static void CheckCacheConfig(int config)
    {
        // CU_FUNC_CACHE_PREFER_NONE, _SHARED, _L1, _EQUAL.
        if (config is < 0 or > 3)
        {
            throw new CudaException(CuResult.InvalidValue, $"{config} is not a CUfunc_cache");
        }
    }

    private static void CheckSharedMemConfig(int config)
    {
        // CU_SHARED_MEM_CONFIG_DEFAULT_BANK_SIZE, _FOUR_BYTE_BANK_SIZE, _EIGHT_BYTE_BANK_SIZE.
        if (config is < 0 or > 2)
        {
            throw new CudaException(CuResult.InvalidValue, $"{config} is not a CUsharedconfig");
        }
    }

    // ---- Context identity and the L2 cache ----

    [UnmanagedCallersOnly(EntryPoint = "cuCtxGetId")]
    internal static CuResult CtxGetId(nint context, ulong* id)
    {
        try
        {
            NotNull(id, "ctxId");
            var driver = Driver.Instance;
            *id = (context == 0 ? Driver.Current() : driver.ResolveContext(context)).Id;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxGetId", ex);
        }
    }

    /// <summary>There is no persisting L2 cache to reset on a remote slice: success, nothing done.</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuCtxResetPersistingL2Cache")]
    internal static CuResult CtxResetPersistingL2Cache()
    {
        try
        {
            _ = Driver.Instance;
            _ = Driver.Current();
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxResetPersistingL2Cache", ex);
        }
    }
}
