using GpuPool.Client;
using GpuPool.Coordination;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests.Scheduling;

/// <summary>Several brokers and scheduler replicas: gangs, drains, brokers that die, and leader failover.</summary>
public sealed class PoolTopologyTests
{
    private const ulong MiB = 1UL << 20;

    private static Task<MultiPool> StartAsync(int[] devices, int replicas = 1)
        => MultiPool.StartAsync(devices, replicas, o => o.OpenTenants = true);

    [Fact]
    public async Task A_gang_goes_to_one_host_with_the_fewest_free_devices_that_still_has_enough()
    {
        await using var pool = await StartAsync([4, 2]);
        var client = pool.Client();

        var pair = await client.AllocateGangAsync(new LeaseRequest { Tenant = "default", WholeDevices = 2 });
        var triple = await client.AllocateGangAsync(new LeaseRequest { Tenant = "default", WholeDevices = 3 });

        Assert.Equal(["b1", "b1"], pair.Select(l => l.Record.BrokerId));
        Assert.Equal(["b0", "b0", "b0"], triple.Select(l => l.Record.BrokerId));
        Assert.Equal(3, triple.Select(l => l.Record.DeviceIndex).Distinct().Count());
        Assert.All(triple, l => Assert.Equal((MultiPool.DeviceMemory, 1000u), (l.Record.MemoryBytes, l.Record.ComputeShare)));
        var tooBig = await Assert.ThrowsAsync<GpuPoolException>(() => client.AllocateGangAsync(new LeaseRequest { Tenant = "default", WholeDevices = 5 }));
        Assert.Equal("no host of this pool has 5 devices", tooBig.Message);

        // Members end as one: releasing one releases the gang.
        await triple[0].ReleaseAsync();
        await Poll.UntilAsync(async () => (await client.ListClusterAsync()).Leases.Count == 2, TimeSpan.FromSeconds(5), "the whole gang is gone");
        foreach (var lease in pair.Concat(triple))
        {
            await lease.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_drained_broker_gets_no_new_leases_until_it_is_returned_to_service()
    {
        await using var pool = await StartAsync([1, 1]);
        var client = pool.Client();
        var admin = pool.Admin();

        var drained = await admin.DrainAsync("b0");
        Assert.Equal(["b0"], drained.BrokerIds);
        await Poll.UntilAsync(async () => (await client.ListClusterAsync()).Draining.Contains("b0"), TimeSpan.FromSeconds(5), "the leader knows b0 is drained");
        var leases = new List<Lease>();
        for (var i = 0; i < 3; i++)
        {
            leases.Add(await client.AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = MiB, ComputeShare = 100 }));
        }

        Assert.All(leases, l => Assert.Equal("b1", l.Record.BrokerId));
        await admin.DrainAsync("b0", undo: true);
        await Poll.UntilAsync(async () => (await client.ListClusterAsync()).Draining.Count == 0, TimeSpan.FromSeconds(5), "b0 is back in service");
        // b1 has 3 MiB taken, so only b0 has room for 1022 MiB.
        await using var onB0 = await client.AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = 1022 * MiB, ComputeShare = 100 });
        Assert.Equal("b0", onB0.Record.BrokerId);
        var unknown = await Assert.ThrowsAsync<GpuPoolException>(() => admin.DrainAsync("nowhere"));
        Assert.Equal(ErrorCode.NotFound, unknown.Code);
        var malformed = await Assert.ThrowsAsync<GpuPoolException>(() => admin.DrainAsync("b0/../b1", undo: true));
        Assert.Equal((ErrorCode.InvalidArgument, "broker id or host 'b0/../b1' must be 1-128 letters, digits, '-', '_' or '.'"), (malformed.Code, malformed.Message));
        foreach (var lease in leases)
        {
            await lease.DisposeAsync();
        }
    }

    [Fact]
    public async Task When_a_broker_dies_its_leases_are_lost_and_their_holders_told_why()
    {
        await using var pool = await StartAsync([1, 1]);
        var client = pool.Client();
        var admin = pool.Admin();
        await admin.DrainAsync("b1");
        await Poll.UntilAsync(async () => (await client.ListClusterAsync()).Draining.Contains("b1"), TimeSpan.FromSeconds(5), "b1 is drained");
        var doomed = await client.AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = MiB, ComputeShare = 100, Ttl = TimeSpan.FromSeconds(2) });
        Assert.Equal("b0", doomed.Record.BrokerId);
        await admin.DrainAsync("b1", undo: true);

        await pool.StopBrokerAsync("b0");

        await Poll.UntilAsync(() => doomed.Lost.IsCancellationRequested, TimeSpan.FromSeconds(15), "the holder learns the lease is lost");
        Assert.Equal(ErrorCode.LeaseEnded, doomed.LostReason!.Code);
        Assert.Contains("its broker b0 stopped heartbeating", doomed.LostReason.Message, StringComparison.Ordinal);

        // The reason is kept in a tombstone (which the store forgets after SchedulerOptions.TombstoneTtl: unit-tested on a fake clock).
        Assert.NotNull(await pool.Store.GetAsync(StoreKeys.Tombstones + doomed.Id));
        await using var survivor = await client.AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = MiB, ComputeShare = 100 });
        Assert.Equal("b1", survivor.Record.BrokerId);
        await doomed.DisposeAsync();
    }

    [Fact]
    public async Task Brokers_register_as_a_service_with_a_passing_check_and_deregister_when_they_stop()
    {
        await using var pool = await StartAsync([1, 2]);

        var services = await pool.Store.ListServicesAsync(GpuPool.Broker.Registration.BrokerRegistration.ServiceName);
        Assert.Equal(["b0", "b1"], services.Select(s => s.Id));
        Assert.All(services, s => Assert.Equal(ServiceHealth.Passing, s.Health));
        Assert.Equal("2", services.Single(s => s.Id == "b1").Meta["devices"]);

        await pool.StopBrokerAsync("b0");
        Assert.Equal(["b1"], (await pool.Store.ListServicesAsync(GpuPool.Broker.Registration.BrokerRegistration.ServiceName)).Select(s => s.Id));
    }

    [Fact]
    public async Task A_standby_forwards_allocations_and_takes_over_when_the_leader_stops()
    {
        await using var pool = await StartAsync([2], replicas: 2);
        var leader = pool.Leader;
        var standby = pool.Schedulers.Single(s => s != leader);
        var viaStandby = pool.Client(standby);

        await using var forwarded = await viaStandby.AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = MiB, ComputeShare = 500, Ttl = TimeSpan.FromSeconds(3) });
        var view = await viaStandby.ListClusterAsync();
        Assert.Equal(leader.Endpoint, view.Leader);
        Assert.Equal(standby.Endpoint, view.AnsweredBy);

        await pool.StopSchedulerAsync(leader);
        await Poll.UntilAsync(() => standby.IsLeader, TimeSpan.FromSeconds(10), "the standby leads");
        var takeover = DateTimeOffset.UtcNow;

        // The lease granted by the old leader lives on (a keepalive answered after the takeover pushes its expiry
        // past it), and the new leader allocates around it.
        await Poll.UntilAsync(() => forwarded.Expires >= takeover + TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(15), "the new leader answers a keepalive");
        Assert.False(forwarded.Lost.IsCancellationRequested, "a lease granted by the old leader was lost in the failover");
        await using var next = await viaStandby.AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = MiB, ComputeShare = 1000 });
        Assert.NotEqual(forwarded.Record.DeviceIndex, next.Record.DeviceIndex);
    }
}
