using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Shim;

/// <summary>
/// cuModuleGetGlobal through the shim (Shim/native/module_globals.c under `gpupool run`): a module variable's address and
/// size come from the broker, copies to and from it pass the shim's own checks up to its end and no further, a kernel
/// writes it, and it goes with its module. And a module with a kernel the cpu backend cannot run loads; only that
/// kernel's launch is refused, at the next synchronize.
/// </summary>
public sealed class ModuleGlobalShimTests(PoolFixture pool) : IClassFixture<PoolFixture>, IDisposable
{
    private readonly string _configDir = Directory.CreateTempSubdirectory("gpupool-it-globals-").FullName;

    [Fact]
    public async Task Module_variables_behave_as_the_driver_says_through_the_shim()
    {
        var run = await GpuPoolRun.RunProgramAsync(pool, _configDir, "module_globals");

        Assert.True(run.ExitCode == 0, GpuPoolRun.Describe(run));
        foreach (var line in new[]
        {
            "case get_global: CUDA_SUCCESS ok",
            "case constant_holds_its_initializer: 2.5 ok",
            "case variable_round_trips: 16 ints ok",
            "case copy_past_the_variable: CUDA_ERROR_INVALID_VALUE ok",
            "case get_global_unknown_name: CUDA_ERROR_NOT_FOUND ok",
            "case free_a_variable: CUDA_ERROR_INVALID_VALUE ok",
            "case kernel_wrote_the_variable: 16 floats of 3.0 ok",
            "case unload_gives_the_memory_back: all of it ok",
            "case copy_to_a_variable_of_an_unloaded_module: CUDA_ERROR_INVALID_VALUE ok",
            "case every_thread_counted: 32 threads ok",
        })
        {
            Assert.Contains(line + "\n", run.Stdout, StringComparison.Ordinal);
        }

        Assert.Contains("module_globals: 33 cases, 0 mismatches", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("PASS module_globals:", run.Stdout, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    public void Dispose() => Directory.Delete(_configDir, recursive: true);
}
