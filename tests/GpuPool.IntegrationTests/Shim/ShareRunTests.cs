using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.V1;
using Xunit.Abstractions;

namespace GpuPool.IntegrationTests.Shim;

/// <summary>
/// Compute shares held for unmodified CUDA programs: `gpupool run --share` of a driver-API program (share_load, matrix
/// products in a loop) on a pool whose one cpu device has a single execution slot, with each lease's device time read
/// from what the broker publishes at its heartbeats (what `gpupool ls` shows).
/// </summary>
public sealed class ShareRunTests(OneSlotPoolFixture pool, ITestOutputHelper output) : IClassFixture<OneSlotPoolFixture>, IDisposable
{
    private readonly string _configDir = Directory.CreateTempSubdirectory("gpupool-it-share-").FullName;

    [Fact]
    public async Task Two_programs_run_with_shares_750_and_250_split_the_device_3_to_1()
    {
        await using var big = Start("share-a", 750, []);
        await using var small = Start("share-b", 250, []);
        await big.WaitForLineAsync(l => l == "running", GpuPoolRun.Timeout);
        await small.WaitForLineAsync(l => l == "running", GpuPoolRun.Timeout);

        var first = await UsageAsync("share-a", "share-b");
        await Task.Delay(TimeSpan.FromSeconds(8));
        var last = await UsageAsync("share-a", "share-b");

        var a = last.Times[0] - first.Times[0];
        var b = last.Times[1] - first.Times[1];
        output.WriteLine($"750: {a.TotalMilliseconds:0} ms, 250: {b.TotalMilliseconds:0} ms over {(last.At - first.At).TotalMilliseconds:0} ms between heartbeats; ratio {a / b:0.00}");
        Assert.InRange(a / b, 2.7, 3.3);
        await AssertExitsAsync(big);
        await AssertExitsAsync(small);
    }

    [Fact]
    public async Task A_program_run_with_a_capped_share_of_250_gets_a_quarter_of_an_idle_device()
    {
        await using var capped = Start("share-capped", 250, ["--share-mode", "capped"]);
        await capped.WaitForLineAsync(l => l == "running", GpuPoolRun.Timeout);

        var first = await UsageAsync("share-capped");
        await Task.Delay(TimeSpan.FromSeconds(6));
        var last = await UsageAsync("share-capped");

        var share = (last.Times[0] - first.Times[0]) / (last.At - first.At);
        output.WriteLine($"capped 250: {share:P1} of the device");
        Assert.InRange(share, 0.20, 0.30);
        await AssertExitsAsync(capped);
    }

    private CliProcess Start(string tenant, int share, string[] options)
        => GpuPoolRun.Start(pool, _configDir, ["--tenant", tenant, .. options], [ShimArtifacts.Program("share_load"), ShimArtifacts.KernelsPtx, "480", "14"], memory: "64MiB", share: share);

    /// <summary>
    /// The device time of each tenant's lease at one heartbeat of the broker, and the heartbeat's time: waits for a
    /// heartbeat that carries every lease (all figures of one heartbeat were read at once).
    /// </summary>
    private async Task<(TimeSpan[] Times, DateTimeOffset At)> UsageAsync(params string[] tenants)
    {
        (TimeSpan[] Times, DateTimeOffset At)? found = null;
        await Poll.UntilAsync(
            async () =>
            {
                var view = await pool.Client.ListClusterAsync();
                var broker = Assert.Single(view.Brokers);
                var usage = broker.Devices.SelectMany(d => d.LeaseUsage).ToDictionary(u => u.LeaseId);
                var leases = tenants.Select(t => view.Leases.FirstOrDefault(l => l.Tenant == t)).ToArray();
                if (leases.Any(l => l is null || !usage.ContainsKey(l.LeaseId)))
                {
                    return false;
                }

                found = ([.. leases.Select(l => Protocol.Units.FromNanoseconds(usage[l!.LeaseId].DeviceTimeNs))], broker.Heartbeat.ToDateTimeOffset());
                return true;
            },
            TimeSpan.FromSeconds(10),
            $"a heartbeat carrying the leases of {string.Join(", ", tenants)}");
        return found!.Value;
    }

    private static async Task AssertExitsAsync(CliProcess run)
    {
        Assert.True(await run.WaitForExitAsync(GpuPoolRun.Timeout), $"the program did not exit: {GpuPoolRun.Describe(run)}");
        Assert.True(run.ExitCode == 0, GpuPoolRun.Describe(run));
        Assert.Matches(@"kernels \d+", run.Stdout);
    }

    public void Dispose() => Directory.Delete(_configDir, recursive: true);
}
