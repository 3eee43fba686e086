using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Shim;

/// <summary>The shim without `gpupool run`: leasing for itself from GPUPOOL_SCHEDULER, or saying what is missing.</summary>
public sealed class StandaloneShimTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    [Fact]
    public async Task With_a_scheduler_address_the_shim_leases_by_itself_and_gives_the_lease_back_at_exit()
    {
        var libraries = ShimArtifacts.LibraryFolder();
        try
        {
            await using var program = new NativeProcess(
                ShimArtifacts.Program("vector_add"),
                new Dictionary<string, string?>
                {
                    ["LD_LIBRARY_PATH"] = libraries,
                    ["GPUPOOL_SCHEDULER"] = pool.Scheduler.Endpoint,
                    ["GPUPOOL_MEMORY"] = "128MiB",
                    ["GPUPOOL_SHARE"] = "250",
                    ["GPUPOOL_TENANT"] = "standalone",
                    ["GPUPOOL_TENANT_TOKEN"] = pool.AdminToken,
                },
                ShimArtifacts.KernelsPtx);

            Assert.True(await program.WaitForExitAsync(GpuPoolRun.Timeout), "the program hung");
            Assert.True(program.ExitCode == 0, $"exit {program.ExitCode}\n{program.Stdout}\n{program.Stderr}");
            Assert.Contains("device 0 is GpuPool CPU device, 128 MiB", program.Stdout, StringComparison.Ordinal);
            Assert.Contains("PASS vector_add:", program.Stdout, StringComparison.Ordinal);

            // Released by the exit handler, not left to its TTL: gone at once.
            Assert.DoesNotContain((await pool.Client.ListClusterAsync()).Leases, l => l.Tenant == "standalone");
        }
        finally
        {
            Directory.Delete(libraries, recursive: true);
        }
    }

    [Fact]
    public async Task Without_configuration_cuInit_fails_with_no_device_and_says_what_to_set()
    {
        var libraries = ShimArtifacts.LibraryFolder();
        try
        {
            await using var program = new NativeProcess(ShimArtifacts.Program("vector_add"), new Dictionary<string, string?> { ["LD_LIBRARY_PATH"] = libraries }, ShimArtifacts.KernelsPtx);

            Assert.True(await program.WaitForExitAsync(GpuPoolRun.Timeout), "the program hung");
            Assert.Equal(1, program.ExitCode);
            Assert.Contains("cuInit(0) returned CUDA_ERROR_NO_DEVICE", program.Stderr, StringComparison.Ordinal);
            Assert.Contains("gpupool shim: cuInit: CUDA_ERROR_NO_DEVICE: no lease is configured: run the program with `gpupool run -- PROGRAM`", program.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(libraries, recursive: true);
        }
    }
}
