using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// The profiler's start and stop marks (cudaProfilerStart/Stop): no profiler watches a remote slice from the
/// client, so they succeed and do nothing, as the driver's do when no profiler is attached.
/// </summary>
internal static unsafe partial class Cuda
{
    [UnmanagedCallersOnly(EntryPoint = "cuProfilerStart")]
    internal static CuResult ProfilerStart() => Driver.IsInitialized ? CuResult.Success : CuResult.NotInitialized;

    /// <summary>The profiler's configuration (deprecated since CUDA 11.0): nothing to configure, so nothing is done.</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuProfilerInitialize")]
    internal static CuResult ProfilerInitialize(byte* configFile, byte* outputFile, int outputMode) => Driver.IsInitialized ? CuResult.Success : CuResult.NotInitialized;

    [UnmanagedCallersOnly(EntryPoint = "cuProfilerStop")]
    internal static CuResult ProfilerStop() => Driver.IsInitialized ? CuResult.Success : CuResult.NotInitialized;
}
