using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Cli;

/// <summary>
/// <c>gpupool lease --devices N</c> (a gang of whole devices on one host) and <c>gpupool priority set --min-runtime</c>,
/// as a user runs them against <c>gpupool up</c> with two cpu devices, each a real child process.
/// </summary>
public sealed class GangAndClassCommandTests
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Lease_devices_asks_for_whole_devices_on_one_host_and_refuses_what_cannot_be_met_in_one_sentence()
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        try
        {
            var (up, _, broker) = await UpProcessFixture.StartUpAsync(configDir, "--devices", "2", "--device-memory", "1GiB");
            await using (up)
            {
                await using var withMemory = await CliProcess.RunAsync(configDir, CommandTimeout, "lease", "--devices", "2", "--memory", "512MiB", "--share", "500");
                Assert.True(withMemory.ExitCode == 2, $"exit code {withMemory.ExitCode}; stdout:\n{withMemory.Stdout}\nstderr:\n{withMemory.Stderr}");
                Assert.Contains("error: --devices 2 asks for whole devices, each with all of its memory and compute: leave out --memory and --share", withMemory.Stdout + withMemory.Stderr, StringComparison.Ordinal);

                await using var zero = await CliProcess.RunAsync(configDir, CommandTimeout, "lease", "--devices", "0");
                Assert.True(zero.ExitCode != 0, "a gang of no devices was asked for");
                Assert.Contains("--devices '0' must be a whole number of devices from 1 to 1024", zero.Stdout + zero.Stderr, StringComparison.Ordinal);

                await using var tooBig = await CliProcess.RunAsync(configDir, CommandTimeout, "lease", "--devices", "3");
                Assert.True(tooBig.ExitCode == 1, $"exit code {tooBig.ExitCode}; stdout:\n{tooBig.Stdout}\nstderr:\n{tooBig.Stderr}");
                Assert.Contains("error: no host of this pool has 3 devices", tooBig.Stdout + tooBig.Stderr, StringComparison.Ordinal);
                Assert.DoesNotContain("   at ", tooBig.Stdout + tooBig.Stderr, StringComparison.Ordinal);

                await using var gang = await CliProcess.RunAsync(configDir, CommandTimeout, "lease", "--devices", "2", "--ttl", "5s");
                Assert.True(gang.ExitCode == 0, $"exit code {gang.ExitCode}; stdout:\n{gang.Stdout}\nstderr:\n{gang.Stderr}");
                var table = SpectreTable.Parse(gang.Stdout)[0];
                Assert.Equal(broker + broker, table.Column(4));
                Assert.Equal("01", table.Column(5));
                Assert.Equal("1GiB1GiB", table.Column(6));
                Assert.Equal("10001000", table.Column(7));
                Assert.Equal(2, gang.Stdout.Split('\n').Count(l => l.StartsWith("token: ", StringComparison.Ordinal)));

                await up.InterruptAsync();
                Assert.True(await up.WaitForExitAsync(TimeSpan.FromSeconds(20)), "gpupool up did not stop");
            }
        }
        finally
        {
            Directory.Delete(configDir, recursive: true);
        }
    }

    [Fact]
    public async Task Priority_set_takes_a_minimum_runtime_that_priority_ls_shows_and_refuses_one_past_the_longest_lease_ttl()
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        try
        {
            var (up, _, _) = await UpProcessFixture.StartUpAsync(configDir);
            await using (up)
            {
                await using var set = await CliProcess.RunAsync(configDir, CommandTimeout, "priority", "set", "batch", "--value", "10", "--preemptible", "--min-runtime", "5m");
                Assert.True(set.ExitCode == 0, set.Stdout + set.Stderr);

                await using var tooLong = await CliProcess.RunAsync(configDir, CommandTimeout, "priority", "set", "batch", "--value", "10", "--min-runtime", "25h");
                Assert.True(tooLong.ExitCode == 1, $"exit code {tooLong.ExitCode}; stdout:\n{tooLong.Stdout}\nstderr:\n{tooLong.Stderr}");
                Assert.Contains("error: the minimum runtime of priority class 'batch' (90000 s) is longer than this scheduler's longest lease TTL (86400 s): give at most that, or 0 for none", tooLong.Stdout + tooLong.Stderr, StringComparison.Ordinal);

                await using var ls = await CliProcess.RunAsync(configDir, CommandTimeout, "priority", "ls");
                Assert.True(ls.ExitCode == 0, ls.Stdout + ls.Stderr);
                var table = SpectreTable.Parse(ls.Stdout)[0];

                // Highest first: high, normal, batch, low; only batch has a minimum runtime, and the refused change left it as it was.
                Assert.Equal("highnormalbatchlow", table.Column(0));
                Assert.Equal("nonoyesyes", table.Column(2));
                Assert.Equal("--5m-", table.Column(3));

                await up.InterruptAsync();
                Assert.True(await up.WaitForExitAsync(TimeSpan.FromSeconds(20)), "gpupool up did not stop");
            }
        }
        finally
        {
            Directory.Delete(configDir, recursive: true);
        }
    }
}
