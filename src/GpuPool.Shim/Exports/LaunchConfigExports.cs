using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// cuLaunchKernelEx: a launch described by a CUlaunchConfig with launch attributes. Attributes that are hints or
/// have no effect on a remote slice (priority, access policy window, synchronization policy, memory sync domains,
/// preferences) are accepted and ignored; those that change what the launch means and that the shim cannot do
/// (cooperative launches, thread block clusters, programmatic dependent launches, completion events) are
/// CUDA_ERROR_NOT_SUPPORTED with one line on stderr. cuLaunchCooperativeKernel is CUDA_ERROR_NOT_SUPPORTED too: grid
/// synchronization needs every block resident at once, which a shared, remote device cannot promise.
/// </summary>
internal static unsafe partial class Cuda
{
    /// <summary>CUlaunchConfig, as in cuda.h.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct LaunchConfig
    {
        public uint GridDimX;
        public uint GridDimY;
        public uint GridDimZ;
        public uint BlockDimX;
        public uint BlockDimY;
        public uint BlockDimZ;
        public uint SharedMemBytes;
        public nint Stream;
        public LaunchAttribute* Attrs;
        public uint NumAttrs;
    }

    /// <summary>CUlaunchAttribute: the id, padding to 8 bytes, and a 64-byte value union.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 72)]
    internal struct LaunchAttribute
    {
        public int Id;
        public int Pad;
        public fixed byte Value[64];
    }

    [UnmanagedCallersOnly(EntryPoint = "cuLaunchKernelEx")]
    internal static CuResult LaunchKernelEx(LaunchConfig* config, nint function, void** kernelParams, nint* extra) => LaunchEx(config, function, kernelParams, extra);

    private static CuResult LaunchEx(LaunchConfig* config, nint function, void** kernelParams, nint* extra)
    {
        try
        {
            NotNull(config, "config");
            _ = Driver.Instance;
            if (config->NumAttrs > 0)
            {
                NotNull(config->Attrs, "config->attrs");
            }

            for (var i = 0; i < config->NumAttrs; i++)
            {
                CheckLaunchAttribute(&config->Attrs[i]);
            }
        }
        catch (Exception ex)
        {
            return Errors.Report("cuLaunchKernelEx", ex);
        }

        return Launch(
            "cuLaunchKernelEx", function, (config->GridDimX, config->GridDimY, config->GridDimZ), (config->BlockDimX, config->BlockDimY, config->BlockDimZ),
            config->SharedMemBytes, config->Stream, kernelParams, extra);
    }

    private static void CheckLaunchAttribute(LaunchAttribute* attribute)
    {
        var value = attribute->Value;
        switch (attribute->Id)
        {
            case 0:     // IGNORE
            case 1:     // ACCESS_POLICY_WINDOW: an L2 hint
            case 3:     // SYNCHRONIZATION_POLICY: how the host waits; waits here are on the network
            case 5:     // CLUSTER_SCHEDULING_POLICY_PREFERENCE
            case 6:     // PROGRAMMATIC_STREAM_SERIALIZATION: allows overlap, never requires it
            case 8:     // PRIORITY: no stream priorities
            case 9:     // MEM_SYNC_DOMAIN_MAP
            case 10:    // MEM_SYNC_DOMAIN
            case 11:    // PREFERRED_CLUSTER_DIMENSION: a preference
            case 14:    // PREFERRED_SHARED_MEMORY_CARVEOUT: a preference
                return;
            case 2 when *(int*)value == 0:
                return;
            case 2:
                throw LaunchUnsupported("CU_LAUNCH_ATTRIBUTE_COOPERATIVE: cooperative launches (grid-wide synchronization) are not supported on a remote slice");
            case 4 when ((uint*)value)[0] <= 1 && ((uint*)value)[1] <= 1 && ((uint*)value)[2] <= 1:
                return;
            case 4:
                throw LaunchUnsupported("CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION: thread block clusters are not supported");
            case 7:
                throw LaunchUnsupported("CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_EVENT: programmatic dependent launch is not supported");
            case 12:
                throw LaunchUnsupported("CU_LAUNCH_ATTRIBUTE_LAUNCH_COMPLETION_EVENT is not supported");
            case 13:
                throw LaunchUnsupported("CU_LAUNCH_ATTRIBUTE_DEVICE_UPDATABLE_KERNEL_NODE: graphs are not supported");
            default:
                throw new CudaException(CuResult.InvalidValue, $"{attribute->Id} is not a CUlaunchAttributeID");
        }
    }

    /// <summary>CUDA_ERROR_NOT_SUPPORTED with the reason on stderr, once per reason whatever GPUPOOL_SHIM_LOG says.</summary>
    private static CudaException LaunchUnsupported(string what)
    {
        ShimLog.OnceAlways("unsupported:" + what, $"cuLaunchKernelEx: not supported by GpuPool ({what}); it returns CUDA_ERROR_NOT_SUPPORTED");
        return new CudaException(CuResult.NotSupported, what);
    }

    [UnmanagedCallersOnly(EntryPoint = "cuLaunchCooperativeKernel")]
    internal static CuResult LaunchCooperativeKernel(
        nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ, uint sharedMemBytes, nint stream, void** kernelParams)
        => CooperativeUnsupported();

    private static CuResult CooperativeUnsupported()
        => Unsupported("cuLaunchCooperativeKernel", "cooperative launches (grid-wide synchronization) need every block resident at once, which a shared remote device cannot promise");
}
