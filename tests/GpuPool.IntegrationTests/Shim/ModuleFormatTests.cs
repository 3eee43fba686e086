using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Shim;

/// <summary>
/// The built-in kernels as nvcc builds them (a fat binary with sm_52 SASS and compute_52 PTX, a cubin), loaded
/// through the shim every way a program can and run on the cpu backend, which takes the fat binary's PTX.
/// </summary>
public sealed class ModuleFormatTests(PoolFixture pool, Nvcc nvcc) : IClassFixture<PoolFixture>, IClassFixture<Nvcc>, IDisposable
{
    private readonly string _configDir = Directory.CreateTempSubdirectory("gpupool-it-formats-").FullName;

    private static string KernelSource => Path.Combine(ShimArtifacts.RepoRoot, "native", "kernels", "gpupool_kernels.cu");

    [Fact]
    public async Task Fat_binary_library_and_link_load_and_run_and_broken_images_are_refused()
    {
        var fatbin = nvcc.PathOf("kernels.fatbin", KernelSource, "-fatbin", "-gencode", "arch=compute_52,code=sm_52", "-gencode", "arch=compute_52,code=compute_52");
        var cubin = nvcc.PathOf("kernels.cubin", KernelSource, "-cubin", "-arch=sm_52");

        var run = await GpuPoolRun.RunAsync(pool, _configDir, [], ShimArtifacts.Program("module_formats"), fatbin, cubin, ShimArtifacts.KernelsPtx);

        Assert.True(run.ExitCode == 0, GpuPoolRun.Describe(run));
        Assert.Matches(@"a second link input\s+CUDA_ERROR_NOT_SUPPORTED\n", run.Stdout);
        Assert.Matches(@"the cubin's kernel, at the next synchronize\s+CUDA_ERROR_NOT_SUPPORTED\n", run.Stdout);
        Assert.Contains("cannot run kernel add_f32: its module carries SASS only, no PTX", run.Stderr, StringComparison.Ordinal);
        Assert.Matches(@"a fat binary whose header claims 1 TiB\s+CUDA_ERROR_INVALID_IMAGE\n", run.Stdout);
        Assert.Matches(@"a cubin whose section headers lie past its end\s+CUDA_ERROR_INVALID_IMAGE\n", run.Stdout);
        Assert.Contains("PASS module_formats: 0 wrong sums", run.Stdout, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    public void Dispose() => Directory.Delete(_configDir, recursive: true);
}
