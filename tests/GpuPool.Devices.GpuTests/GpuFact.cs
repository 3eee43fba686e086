using GpuPool.Devices.Cuda;

namespace GpuPool.Devices.GpuTests;

/// <summary>Whether this run asked for the GPU tests (GPUPOOL_GPU_TESTS=1), and the cuda backend they share.</summary>
internal static class Gpu
{
    public const string Variable = "GPUPOOL_GPU_TESTS";

    public const string SkipReason = "needs an NVIDIA GPU: set GPUPOOL_GPU_TESTS=1 on a machine with one (see docs/operations.md)";

    private static readonly Lazy<(CudaBackend? Backend, string Reason)> Shared = new(() =>
        CudaBackend.TryCreate(CudaOptions.FromEnvironment(), out var backend, out var reason) ? (backend, "") : (null, reason));

    public static bool Requested => Environment.GetEnvironmentVariable(Variable) == "1";

    /// <summary>The cuda backend; fails the test, saying why, when it cannot start.</summary>
    public static CudaBackend Backend
    {
        get
        {
            var (backend, reason) = Shared.Value;
            Assert.True(backend is not null, $"{Variable}=1 asks for the GPU tests, but the cuda backend cannot start: {reason}");
            return backend;
        }
    }

    /// <summary>For the command-line run: the backend, or why not.</summary>
    public static (CudaBackend? Backend, string Reason) TryBackend() => Shared.Value;
}

/// <summary>A fact that runs only when GPUPOOL_GPU_TESTS=1; otherwise it is reported as skipped.</summary>
public sealed class GpuFactAttribute : FactAttribute
{
    public GpuFactAttribute()
    {
        if (!Gpu.Requested)
        {
            Skip = Gpu.SkipReason;
        }
    }
}

/// <summary>A theory that runs only when GPUPOOL_GPU_TESTS=1; otherwise it is reported as skipped.</summary>
public sealed class GpuTheoryAttribute : TheoryAttribute
{
    public GpuTheoryAttribute()
    {
        if (!Gpu.Requested)
        {
            Skip = Gpu.SkipReason;
        }
    }
}
