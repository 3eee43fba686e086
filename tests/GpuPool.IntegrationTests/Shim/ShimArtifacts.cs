namespace GpuPool.IntegrationTests.Shim;

/// <summary>
/// What the build made for the shim's tests: the NativeAOT shim and the C programs linked against it. Missing
/// ones fail the test with the command that builds them; they are never skipped.
/// </summary>
internal static class ShimArtifacts
{
    public const string BuildCommand = "./build.sh --target=Samples";

    /// <summary>What builds NVIDIA's samples (and, as root, installs the CUDA toolkit they need).</summary>
    public const string CudaSamplesBuildCommand = "./build.sh --target=CudaSamples";

    public static string RepoRoot { get; } = FindRoot();

    /// <summary>artifacts/shim/libgpupool-cuda.so, or a failed test.</summary>
    public static string Shim => Require(Path.Combine(RepoRoot, "artifacts", "shim", "libgpupool-cuda.so"), "the libcuda shim");

    /// <summary>A program built from native/samples or Shim/native, or a failed test.</summary>
    public static string Program(string name) => Require(Path.Combine(RepoRoot, "artifacts", "samples", name), $"the program {name}");

    /// <summary>artifacts/cuda-samples: NVIDIA's samples, and the modules some of them load from their working directory.</summary>
    public static string CudaSamples => Path.Combine(RepoRoot, "artifacts", "cuda-samples");

    /// <summary>One of NVIDIA's samples as the CudaSamples task compiled it, or a failed test.</summary>
    public static string CudaSample(string name) => Require(
        Path.Combine(CudaSamples, name),
        $"NVIDIA's sample {name}",
        CudaSamplesBuildCommand,
        " (it needs nvcc: as root it installs nvidia-cuda-toolkit, nvidia-cuda-samples and python3-pycuda from Debian's contrib and non-free sections)");

    /// <summary>
    /// The built-in kernels' PTX module, checked in under native/kernels/ptx: the one image whose kernels the cpu backend
    /// runs as its built-in C# (any other module with kernels of the same names runs what its own PTX says).
    /// </summary>
    public static string KernelsPtx => Path.Combine(RepoRoot, "native", "kernels", "ptx", "gpupool_kernels.ptx");

    /// <summary>A folder holding libcuda.so.1 → the shim, to put first on LD_LIBRARY_PATH as `gpupool run` does.</summary>
    public static string LibraryFolder()
    {
        var folder = Directory.CreateTempSubdirectory("gpupool-shim-it-").FullName;
        File.CreateSymbolicLink(Path.Combine(folder, "libcuda.so.1"), Shim);
        return folder;
    }

    private static string Require(string path, string what, string buildCommand = BuildCommand, string note = "")
    {
        Assert.True(File.Exists(path), $"{what} is not built ({path} is missing): run `{buildCommand}` first{note}.");
        return path;
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "GpuPool.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"no GpuPool.sln above {AppContext.BaseDirectory}");
    }
}
