using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Shim;

/// <summary>
/// The samples in native/samples, unmodified C programs linked with -lcuda, run through `gpupool run` on a pool
/// with a cpu-backend broker: each checks its results against the host and prints its verdict.
/// </summary>
public sealed class ShimSampleTests(PoolFixture pool) : IClassFixture<PoolFixture>, IDisposable
{
    private readonly string _configDir = Directory.CreateTempSubdirectory("gpupool-it-shim-").FullName;

    [Theory]
    [InlineData("vector_add")]
    [InlineData("saxpy")]
    [InlineData("matmul")]
    [InlineData("streams_events")]
    public async Task Sample_passes_through_gpupool_run(string sample)
    {
        var run = await GpuPoolRun.RunProgramAsync(pool, _configDir, sample);

        Assert.True(run.ExitCode == 0, GpuPoolRun.Describe(run));
        Assert.Contains($"PASS {sample}:", run.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sample_runs_over_the_grpc_fallback_too()
    {
        var run = await GpuPoolRun.RunProgramAsync(pool, _configDir, "vector_add", "--transport", "grpc");

        Assert.True(run.ExitCode == 0, GpuPoolRun.Describe(run));
        Assert.Contains("PASS vector_add:", run.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Out_of_bounds_copy_gets_invalid_value_and_the_broker_keeps_serving()
    {
        var run = await GpuPoolRun.RunProgramAsync(pool, _configDir, "oob_copy");

        Assert.True(run.ExitCode == 0, GpuPoolRun.Describe(run));
        Assert.Matches(@"copy of 2048 bytes into a 1024-byte allocation\s+CUDA_ERROR_INVALID_VALUE\n", run.Stdout);
        Assert.Matches(@"the next synchronize reports the launch\s+CUDA_ERROR_ILLEGAL_ADDRESS\n", run.Stdout);
        Assert.Contains("after the errors: vector add on the same context, 0 wrong values", run.Stdout, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Modules_and_kernels_the_cpu_backend_cannot_run_get_not_supported_not_a_crash()
    {
        var run = await GpuPoolRun.RunProgramAsync(pool, _configDir, "unsupported_module");

        Assert.True(run.ExitCode == 0, GpuPoolRun.Describe(run));
        Assert.Matches(@"a cubin \(ELF\) header with nothing behind it\s+CUDA_ERROR_INVALID_IMAGE\n", run.Stdout);
        Assert.Matches(@"a fat binary with no entries \(no code at all\)\s+CUDA_ERROR_NOT_SUPPORTED\n", run.Stdout);
        Assert.Matches(@"bytes that are not a module\s+CUDA_ERROR_INVALID_IMAGE\n", run.Stdout);
        Assert.Matches(@"PTX with a kernel that uses wgmma\s+CUDA_ERROR_NOT_SUPPORTED\n", run.Stdout);
        Assert.Contains("PASS unsupported_module:", run.Stdout, StringComparison.Ordinal);

        // The program reports only the code; the broker's sentence is said once even without --verbose.
        Assert.Single(run.Stderr.Split('\n'), line => line.Contains("kernel my_custom_kernel, line 9: the cpu backend's PTX engine does not run the instruction wgmma", StringComparison.Ordinal));
    }

    [Fact]
    public async Task What_a_kernel_prints_comes_out_of_the_programs_stdout_at_the_synchronize_in_its_place()
    {
        var run = await GpuPoolRun.RunProgramAsync(pool, _configDir, "device_printf");

        Assert.True(run.ExitCode == 0, GpuPoolRun.Describe(run));
        var lines = run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).SkipWhile(l => !l.StartsWith("host:", StringComparison.Ordinal)).ToArray();
        Assert.Equal(
            ["host: before the launch", "host: launched, not yet synchronized", "device 0 0", "device 0 1", "device 0 2", "device 1 0", "device 1 1", "device 1 2", "host: synchronized", "PASS device_printf"],
            lines);
    }

    [Fact]
    public async Task The_shim_says_why_a_module_was_refused_when_asked_to_log()
    {
        var run = await GpuPoolRun.RunProgramAsync(pool, _configDir, "unsupported_module", "--verbose");

        Assert.True(run.ExitCode == 0, GpuPoolRun.Describe(run));
        Assert.Matches(
            @"cuModuleLoadData: CUDA_ERROR_NOT_SUPPORTED: kernel my_custom_kernel, line 9: the cpu backend's PTX engine does not run the instruction wgmma \(`wgmma\.fence\.sync\.aligned`\)",
            run.Stderr);
    }

    [Fact]
    public async Task A_child_forked_after_cuInit_is_refused_and_the_parent_and_its_threads_go_on()
    {
        var run = await GpuPoolRun.RunProgramAsync(pool, _configDir, "fork_threads");

        Assert.True(run.ExitCode == 0, GpuPoolRun.Describe(run));
        Assert.Contains("child: cuMemAlloc CUDA_ERROR_NOT_INITIALIZED, cuInit CUDA_ERROR_NOT_INITIALIZED", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("a lease serves one CUDA process, so the child cannot use CUDA", run.Stderr, StringComparison.Ordinal);
        Assert.Contains("PASS fork_threads:", run.Stdout, StringComparison.Ordinal);
    }

    public void Dispose() => Directory.Delete(_configDir, recursive: true);
}
