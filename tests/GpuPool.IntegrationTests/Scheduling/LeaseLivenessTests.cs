using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using Grpc.Core;
using Grpc.Net.Client;

namespace GpuPool.IntegrationTests.Scheduling;

/// <summary>
/// A lease lives as long as its holder's keepalives reach the leading scheduler within its TTL, end to end through
/// real servers: one expiry (record deleted, broker closing it, holder told why), keepalives and releases forwarded
/// by a standby, a failover, a gang, and lease ids that collide. The timing rules themselves (deadlines, renewals,
/// gangs, a full TTL at takeover) are unit-tested on a fake clock in GpuPool.Scheduler.Tests (LeaseLivenessTests,
/// AllocatorClockTests); these tests wait for conditions, never for a fixed time.
/// </summary>
public sealed class LeaseLivenessTests
{
    private const ulong MiB = 1UL << 20;

    private static LeaseRequest Slice(TimeSpan ttl) => new() { Tenant = "default", MemoryBytes = MiB, ComputeShare = 100, Ttl = ttl };

    private static async Task<bool> RecordExistsAsync(MultiPool pool, string leaseId)
        => await pool.Store.GetAsync(StoreKeys.Leases + leaseId) is not null;

    [Fact]
    public async Task A_lease_whose_keepalives_stop_ends_after_its_ttl_and_its_holder_learns_why()
    {
        await using var pool = await MultiPool.StartAsync([1], configure: o => o.OpenTenants = true);
        var client = pool.Client();
        // The kept lease's TTL leaves room for a loaded machine's late keepalives (1 s was once missed in CI).
        await using var kept = await client.AllocateAsync(Slice(TimeSpan.FromSeconds(5)));
        var abandoned = await client.AllocateAsync(Slice(TimeSpan.FromSeconds(1)));

        await abandoned.AbandonAsync();
        await Poll.UntilAsync(async () => !await RecordExistsAsync(pool, abandoned.Id), TimeSpan.FromSeconds(15), "the abandoned lease's record is deleted");

        Assert.False(kept.Lost.IsCancellationRequested, "a lease whose holder renews it was lost: " + kept.LostReason?.Message);
        var view = await client.ListClusterAsync();
        Assert.Equal([kept.Id], view.Leases.Select(l => l.LeaseId));
        Assert.Equal(MiB, Assert.Single(view.Devices).MemoryLeasedBytes);
        using var channel = GrpcChannel.ForAddress(pool.Leader.Endpoint);
        var rpc = await Assert.ThrowsAsync<RpcException>(() => new Leases.LeasesClient(channel).KeepAliveAsync(new KeepAliveRequest { LeaseId = abandoned.Id, Token = abandoned.Token }, new Metadata { { "authorization", "Bearer " + pool.AdminToken } }).ResponseAsync);
        var error = GpuPoolException.FromRpc(rpc, "keepalive");
        Assert.Equal(ErrorCode.LeaseEnded, error.Code);
        Assert.Equal($"lease {abandoned.Id} has ended: it expired: no keepalive from its holder for its TTL of 1 s; allocate a new lease", error.Message);
        var opened = await Assert.ThrowsAsync<GpuPoolException>(() => abandoned.OpenSessionAsync());
        Assert.Equal(ErrorCode.LeaseEnded, opened.Code);

        // The lease that kept renewing outlived the abandoned one and still works.
        await using var session = await kept.OpenSessionAsync();
        await session.AllocAsync(4096);
        await session.SynchronizeAsync();
    }

    [Fact]
    public async Task Keepalives_and_releases_sent_to_a_standby_reach_the_leader_and_a_release_returns_once_the_record_is_gone()
    {
        await using var pool = await MultiPool.StartAsync([1], replicas: 2, o => o.OpenTenants = true);
        var standby = pool.Schedulers.Single(s => !s.IsLeader);
        var lease = await pool.Client(standby).AllocateAsync(Slice(TimeSpan.FromSeconds(2)));
        var granted = lease.Expires;

        // A standby holds no deadlines: a keepalive it answers was renewed by the leader. (A TTL of 2 s, not 1 s: a
        // loaded machine may hold a keepalive back by a second.)
        await Poll.UntilAsync(() => lease.Expires > granted, TimeSpan.FromSeconds(15), "a keepalive sent to the standby is answered");
        Assert.False(lease.Lost.IsCancellationRequested, "a lease renewed through a standby was lost: " + lease.LostReason?.Message);
        Assert.True(await RecordExistsAsync(pool, lease.Id));

        await lease.ReleaseAsync();

        Assert.False(await RecordExistsAsync(pool, lease.Id), "ReleaseAsync returned before the lease's record was deleted");
        await lease.DisposeAsync();
    }

    [Fact]
    public async Task After_a_failover_the_new_leader_keeps_renewed_leases_and_ends_abandoned_ones()
    {
        await using var pool = await MultiPool.StartAsync([1], replicas: 2, o => o.OpenTenants = true);
        var leader = pool.Leader;
        var standby = pool.Schedulers.Single(s => s != leader);
        var client = pool.Client(standby);
        await using var kept = await client.AllocateAsync(Slice(TimeSpan.FromSeconds(2)));
        var abandoned = await client.AllocateAsync(Slice(TimeSpan.FromSeconds(3)));
        await abandoned.AbandonAsync();

        await pool.StopSchedulerAsync(leader);
        await Poll.UntilAsync(() => standby.IsLeader, TimeSpan.FromSeconds(10), "the standby leads");
        var takeover = DateTimeOffset.UtcNow;
        await Poll.UntilAsync(async () => !await RecordExistsAsync(pool, abandoned.Id), TimeSpan.FromSeconds(15), "the new leader ends the abandoned lease");

        // The new leader renews the kept lease: a keepalive answered after the takeover pushes its expiry past it.
        await Poll.UntilAsync(() => kept.Expires >= takeover + TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(15), "the new leader answers a keepalive");
        Assert.True(await RecordExistsAsync(pool, kept.Id), "the new leader ended a lease whose holder renews it");
        Assert.False(kept.Lost.IsCancellationRequested, "a lease renewed across the failover was lost: " + kept.LostReason?.Message);
        var view = await client.ListClusterAsync();
        Assert.Equal([kept.Id], view.Leases.Select(l => l.LeaseId));
    }

    [Fact]
    public async Task A_gang_whose_keepalives_stop_ends_with_every_member()
    {
        await using var pool = await MultiPool.StartAsync([3], configure: o => o.OpenTenants = true);
        var gang = await pool.Client().AllocateGangAsync(new LeaseRequest { Tenant = "default", WholeDevices = 2, Ttl = TimeSpan.FromSeconds(1) });

        foreach (var member in gang)
        {
            await member.AbandonAsync();
        }

        await Poll.UntilAsync(async () => !await RecordExistsAsync(pool, gang[0].Id) && !await RecordExistsAsync(pool, gang[1].Id), TimeSpan.FromSeconds(15), "the whole gang ends");
        Assert.Empty((await pool.Client().ListClusterAsync()).Leases);
    }

    [Fact]
    public async Task A_lease_id_that_collides_costs_only_its_own_grant_and_leaves_the_record_it_hit_alone()
    {
        // The third id handed out is one a record in the store already has (one the leader cannot parse, so it
        // knows nothing of it): only the store's absent-check can catch it.
        var calls = 0;
        await using var pool = await MultiPool.StartAsync([1], configure: o =>
        {
            o.OpenTenants = true;
            var random = o.NewLeaseId;
            o.NewLeaseId = () => Interlocked.Increment(ref calls) == 3 ? "l-taken" : random();
        });
        var stranger = "not a lease record"u8.ToArray();
        await pool.Store.PutAsync(StoreKeys.Leases + "l-taken", stranger);
        var client = pool.Client();

        var outcomes = await Task.WhenAll(Enumerable.Range(0, 8).Select(async _ =>
        {
            try
            {
                return (Lease: await client.AllocateAsync(Slice(TimeSpan.FromSeconds(30))), Error: (GpuPoolException?)null);
            }
            catch (GpuPoolException ex)
            {
                return (Lease: (Lease?)null, Error: ex);
            }
        }));

        var failed = Assert.Single(outcomes, o => o.Error is not null);
        Assert.Equal(ErrorCode.Unavailable, failed.Error!.Code);
        Assert.Equal("a lease id collided with an existing lease; retry", failed.Error.Message);
        var granted = outcomes.Where(o => o.Lease is not null).Select(o => o.Lease!).ToArray();
        Assert.Equal(7, granted.Length);
        Assert.Equal(stranger, (await pool.Store.GetAsync(StoreKeys.Leases + "l-taken"))!.Value.ToArray());
        var view = await client.ListClusterAsync();
        Assert.Equal(granted.Select(l => l.Id).Order(), view.Leases.Select(l => l.LeaseId).Order());
        Assert.Equal(7 * MiB, Assert.Single(view.Devices).MemoryLeasedBytes);
        foreach (var lease in granted)
        {
            await lease.DisposeAsync();
        }
    }
}
