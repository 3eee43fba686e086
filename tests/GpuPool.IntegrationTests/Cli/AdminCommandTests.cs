using GpuPool.Client;
using GpuPool.Client.Admin;
using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Cli;

/// <summary><c>gpupool quota</c>, <c>priority</c> and <c>drain</c> as an admin runs them against <c>gpupool up</c>, and a restart that keeps them.</summary>
public sealed class AdminCommandTests
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Quotas_and_classes_set_from_the_cli_apply_and_survive_a_restart_of_up()
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        try
        {
            var (up, scheduler, _) = await UpProcessFixture.StartUpAsync(configDir);
            await using (up)
            {
                await using var set = await CliProcess.RunAsync(configDir, CommandTimeout, "quota", "set", "team-a", "--milli-gpus", "300", "--memory", "2GiB", "--leases", "4", "--classes", "normal,batch");
                Assert.True(set.ExitCode != 0, "a quota naming a class that does not exist was accepted");
                Assert.Contains("priority class 'batch' does not exist", set.Stdout + set.Stderr, StringComparison.Ordinal);

                await using var cls = await CliProcess.RunAsync(configDir, CommandTimeout, "priority", "set", "batch", "--value", "10", "--preemptible");
                Assert.True(cls.ExitCode == 0, cls.Stdout + cls.Stderr);
                await using var again = await CliProcess.RunAsync(configDir, CommandTimeout, "quota", "set", "team-a", "--milli-gpus", "300", "--memory", "2GiB", "--leases", "4", "--classes", "normal,batch");
                Assert.True(again.ExitCode == 0, again.Stdout + again.Stderr);
                var row = SpectreTable.Parse(again.Stdout)[0];
                Assert.Equal(("team-a", "300", "2GiB", "4"), (row.Column(0), row.Column(1), row.Column(2), row.Column(3)));

                await using var over = await CliProcess.RunAsync(configDir, CommandTimeout, "lease", "--tenant", "team-a", "--memory", "64MiB", "--share", "400");
                Assert.True(over.ExitCode != 0, "a lease past the tenant's quota was granted");
                Assert.Contains("larger than tenant 'team-a''s whole quota", over.Stdout + over.Stderr, StringComparison.Ordinal);

                await using var wrongToken = await CliProcess.RunAsync(configDir, CommandTimeout, "quota", "rm", "team-a", "--admin-token", "nope");
                Assert.True(wrongToken.ExitCode != 0);
                Assert.Contains("the bearer token is neither this pool's admin credential nor a tenant token it issued", wrongToken.Stdout + wrongToken.Stderr, StringComparison.Ordinal);

                await up.InterruptAsync();
                Assert.True(await up.WaitForExitAsync(TimeSpan.FromSeconds(20)), "gpupool up did not stop");
            }

            var (restarted, scheduler2, _) = await UpProcessFixture.StartUpAsync(configDir);
            await using (restarted)
            {
                using var client = UpProcessFixture.AdminClient(configDir, scheduler2);
                var admin = new PoolAdmin(client, null);
                var quota = await admin.GetQuotaAsync("team-a");
                Assert.Equal((300u, 2UL << 30, 4u), (quota.MaxMilliGpus, quota.MaxMemoryBytes, quota.MaxLeases));
                Assert.Contains(await admin.ListPriorityClassesAsync(), c => c.Name == "batch" && c.Value == 10 && c.Preemptible);

                await using var ls = await CliProcess.RunAsync(configDir, CommandTimeout, "quota", "ls");
                Assert.Equal("team-a", SpectreTable.Parse(ls.Stdout)[0].Column(0));
                await restarted.InterruptAsync();
                await restarted.WaitForExitAsync(TimeSpan.FromSeconds(20));
            }

            Assert.NotEqual("", scheduler);
        }
        finally
        {
            Directory.Delete(configDir, recursive: true);
        }
    }

    [Fact]
    public async Task Drain_by_broker_id_reports_the_leases_still_running_and_undo_returns_it()
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        try
        {
            var (up, scheduler, _) = await UpProcessFixture.StartUpAsync(configDir);
            await using (up)
            {
                using var client = UpProcessFixture.AdminClient(configDir, scheduler);
                var broker = (await client.ListClusterAsync()).Brokers[0].BrokerId;
                await using var lease = await client.AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = 1UL << 20, ComputeShare = 10 });

                await using var drain = await CliProcess.RunAsync(configDir, CommandTimeout, "drain", broker);
                Assert.True(drain.ExitCode == 0, drain.Stdout + drain.Stderr);
                Assert.Contains($"drained {broker}: no new leases go there; 1 lease still running", drain.Stdout, StringComparison.Ordinal);
                await Poll.UntilAsync(async () => (await client.ListClusterAsync()).Draining.Contains(broker), TimeSpan.FromSeconds(5), "the leader knows the broker is drained");
                var refused = await Assert.ThrowsAsync<GpuPool.Protocol.Errors.GpuPoolException>(() => client.AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = 1UL << 20, ComputeShare = 10 }));
                Assert.Equal(GpuPool.Protocol.V1.ErrorCode.ResourceExhausted, refused.Code);

                await using var undo = await CliProcess.RunAsync(configDir, CommandTimeout, "drain", broker, "--undo");
                Assert.True(undo.ExitCode == 0, undo.Stdout + undo.Stderr);
                await Poll.UntilAsync(async () => (await client.ListClusterAsync()).Draining.Count == 0, TimeSpan.FromSeconds(5), "the broker is back in service");
                await using var granted = await client.AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = 1UL << 20, ComputeShare = 10 });

                await up.InterruptAsync();
                await up.WaitForExitAsync(TimeSpan.FromSeconds(20));
            }
        }
        finally
        {
            Directory.Delete(configDir, recursive: true);
        }
    }
}
