using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Shim;

/// <summary>
/// A broker that goes away while a CUDA program runs on it: the program gets CUDA_ERROR_LAUNCH_FAILED-class errors
/// from then on and exits; nothing hangs. Each test has its own pool, since it stops the broker.
/// </summary>
public sealed class BrokerLossTests(PoolFixture pool) : IClassFixture<PoolFixture>, IDisposable
{
    private static readonly TimeSpan ExitTimeout = TimeSpan.FromSeconds(30);
    private readonly string _configDir = Directory.CreateTempSubdirectory("gpupool-it-loss-").FullName;

    [Fact]
    public async Task A_broker_that_stops_mid_run_fails_the_programs_calls_with_launch_failed()
    {
        await using var run = GpuPoolRun.Start(pool, _configDir, [], [ShimArtifacts.Program("broker_loss"), ShimArtifacts.KernelsPtx]);
        await run.WaitForLineAsync(l => l == "running", GpuPoolRun.Timeout);

        await pool.Broker.DisposeAsync();

        Assert.True(await run.WaitForExitAsync(ExitTimeout), $"the program did not exit within {ExitTimeout.TotalSeconds:0} s of the broker stopping:\n{run.Stdout}\n{run.Stderr}");
        Assert.True(run.ExitCode == 3, GpuPoolRun.Describe(run));
        Assert.Matches(@"lost: .* returned CUDA_ERROR_LAUNCH_FAILED\n", run.Stdout);
        Assert.Contains("later: cuMemAlloc returned CUDA_ERROR_LAUNCH_FAILED", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("gpupool shim: the device session is lost", run.Stderr, StringComparison.Ordinal);
    }

    public void Dispose() => Directory.Delete(_configDir, recursive: true);
}

/// <summary>
/// A broker that stops answering without closing anything (a frozen host, a dead network path): calls wait at
/// most GPUPOOL_SHIM_TIMEOUT, then fail, and the program exits. The lease is held by the test, as `gpupool run`
/// would hold it, and the program is pointed at the broker through a proxy by the same variables.
/// </summary>
public sealed class SilentBrokerTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    [Fact]
    public async Task A_broker_that_stops_answering_times_out_instead_of_hanging()
    {
        await using var lease = await pool.LeaseAsync();
        using var proxy = new FreezingProxy(lease.Record.BrokerFastPathTcp);
        var libraries = ShimArtifacts.LibraryFolder();
        try
        {
            await using var program = new NativeProcess(
                ShimArtifacts.Program("broker_loss"),
                new Dictionary<string, string?>
                {
                    ["LD_LIBRARY_PATH"] = libraries,
                    ["GPUPOOL_LEASE_ID"] = lease.Id,
                    ["GPUPOOL_BROKER"] = lease.Record.BrokerEndpoint,
                    ["GPUPOOL_BROKER_TCP"] = proxy.Endpoint,
                    ["GPUPOOL_TRANSPORT"] = "tcp",
                    ["GPUPOOL_TOKEN"] = lease.Token,
                    ["GPUPOOL_SHIM_TIMEOUT"] = "2",
                },
                ShimArtifacts.KernelsPtx);
            await program.WaitForLineAsync("running", GpuPoolRun.Timeout);

            proxy.Freeze();

            Assert.True(await program.WaitForExitAsync(TimeSpan.FromSeconds(30)), $"the program hung:\n{program.Stdout}\n{program.Stderr}");
            Assert.True(program.ExitCode == 3, $"exit {program.ExitCode}\n{program.Stdout}\n{program.Stderr}");
            Assert.Matches(@"lost: .* returned CUDA_ERROR_LAUNCH_TIMEOUT\n", program.Stdout);
            Assert.Contains("the broker did not answer within 2 s", program.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(libraries, recursive: true);
        }
    }
}
