using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Shim;

/// <summary>`gpupool run` as a user runs it: a real CLI child process against a test pool, the program a real C binary.</summary>
internal static class GpuPoolRun
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    /// <summary>
    /// Starts <c>gpupool run [options] -- program args</c> against <paramref name="pool"/>: a lease of
    /// <paramref name="memory"/> and <paramref name="share"/> of a device (half by default), the program run in
    /// <paramref name="workingDirectory"/> (else this process's).
    /// </summary>
    public static CliProcess Start(
        PoolFixture pool, string configDir, string[] options, string[] programAndArgs, IReadOnlyDictionary<string, string?>? environment = null,
        string memory = "256MiB", string? workingDirectory = null, int share = 500)
    {
        _ = ShimArtifacts.Shim;
        string[] args = ["run", "--scheduler", pool.Scheduler.Endpoint, "--token", pool.AdminToken, "--memory", memory, "--share", share.ToString(System.Globalization.CultureInfo.InvariantCulture), .. options, "--", .. programAndArgs];
        return CliProcess.StartIn(workingDirectory ?? "", configDir, environment ?? new Dictionary<string, string?>(), args);
    }

    /// <summary>Runs to completion; fails the test if it takes longer than <see cref="Timeout"/>.</summary>
    public static async Task<CliProcess> RunAsync(PoolFixture pool, string configDir, string[] options, params string[] programAndArgs)
    {
        var run = Start(pool, configDir, options, programAndArgs);
        if (!await run.WaitForExitAsync(Timeout))
        {
            await run.DisposeAsync();
            Assert.Fail($"gpupool run -- {string.Join(' ', programAndArgs)} did not exit within {Timeout.TotalSeconds:0} s");
        }

        return run;
    }

    /// <summary>Runs one of the built C programs with the kernels' PTX as its first argument.</summary>
    public static Task<CliProcess> RunProgramAsync(PoolFixture pool, string configDir, string program, params string[] options)
        => RunAsync(pool, configDir, options, ShimArtifacts.Program(program), ShimArtifacts.KernelsPtx);

    public static string Describe(CliProcess run) => $"exit {run.ExitCode}\nstdout:\n{run.Stdout}\nstderr:\n{run.Stderr}";
}
