using GpuPool.Client;
using GpuPool.Coordination.Etcd;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.V1;
using Grpc.Core;
using GpuPool.Scheduler;
using GpuPool.Scheduler.Hosting;
using GpuPool.Testing.Etcd;
using Grpc.Net.Client;

namespace GpuPool.IntegrationTests.Scheduling;

/// <summary>What the scheduler answers to requests it must refuse, and to a store it cannot reach.</summary>
public sealed class SchedulerBadInputTests
{
    private const ulong MiB = 1UL << 20;

    [Fact]
    public async Task A_gang_that_also_names_a_slice_or_more_devices_than_a_host_can_have_is_refused()
    {
        await using var pool = await MultiPool.StartAsync([2], configure: o => o.OpenTenants = true);
        using var channel = GrpcChannel.ForAddress(pool.Schedulers[0].Endpoint);
        var leases = new Leases.LeasesClient(channel);
        var admin = new Metadata { { "authorization", "Bearer " + pool.AdminToken } };

        var both = await Assert.ThrowsAsync<GpuPoolException>(() => Call(() => leases.AllocateAsync(new AllocateRequest { Tenant = "default", WholeDevices = 1, MemoryBytes = MiB }, admin).ResponseAsync));
        var huge = await Assert.ThrowsAsync<GpuPoolException>(() => Call(() => leases.AllocateAsync(new AllocateRequest { Tenant = "default", WholeDevices = 65 }, admin).ResponseAsync));
        var share = await Assert.ThrowsAsync<GpuPoolException>(() => Call(() => leases.AllocateAsync(new AllocateRequest { Tenant = "default", MemoryBytes = MiB, ComputeShare = 0 }, admin).ResponseAsync));

        Assert.Equal((ErrorCode.InvalidArgument, "ask for either a slice (memory_bytes and compute_share) or whole devices (whole_devices), not both"), (both.Code, both.Message));
        Assert.Equal((ErrorCode.InvalidArgument, "whole_devices 65 is more than the 64 devices one host can have"), (huge.Code, huge.Message));
        Assert.Equal(ErrorCode.InvalidArgument, share.Code);
        Assert.Empty((await pool.Client().ListClusterAsync()).Leases);
    }

    [Fact]
    public async Task A_keepalive_with_a_token_signed_by_another_key_is_refused_and_the_lease_lives_on()
    {
        await using var pool = await MultiPool.StartAsync([1], configure: o => o.OpenTenants = true);
        await using var lease = await pool.Client().AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = MiB, ComputeShare = 100 });
        using var otherKey = LeaseToken.CreateKey();
        var forged = LeaseToken.Sign(new LeaseClaims(lease.Id, "default", lease.Record.BrokerId, 0, MiB, 100, DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeMilliseconds()), otherKey);
        using var channel = GrpcChannel.ForAddress(pool.Schedulers[0].Endpoint);
        var leases = new Leases.LeasesClient(channel);
        var admin = new Metadata { { "authorization", "Bearer " + pool.AdminToken } };

        var keepalive = await Assert.ThrowsAsync<GpuPoolException>(() => Call(() => leases.KeepAliveAsync(new KeepAliveRequest { LeaseId = lease.Id, Token = forged }, admin).ResponseAsync));
        var release = await Assert.ThrowsAsync<GpuPoolException>(() => Call(() => leases.ReleaseAsync(new ReleaseRequest { LeaseId = lease.Id, Token = forged }, admin).ResponseAsync));

        Assert.Equal(ErrorCode.Unauthenticated, keepalive.Code);
        Assert.Contains("signature does not verify", keepalive.Message, StringComparison.Ordinal);
        Assert.Equal(ErrorCode.Unauthenticated, release.Code);
        Assert.Single((await pool.Client().ListClusterAsync()).Leases, l => l.LeaseId == lease.Id);
    }

    [Fact]
    public async Task When_the_store_cannot_be_reached_allocate_answers_unavailable_and_nothing_is_allocated()
    {
        await using var etcd = await EtcdCluster.StartAsync(size: 1);
        await using var store = new EtcdClusterStore(EtcdClusterStoreOptions.FromEndpoints(etcd.Endpoints) with { RequestTimeout = TimeSpan.FromSeconds(2) });
        using var key = LeaseToken.CreateKey();
        // No broker checks: b0 is a record with no process behind it, and the test needs it placeable.
        await using var scheduler = await SchedulerHost.StartAsync(new SchedulerOptions { Port = 0, SigningKey = key, OpenTenants = true, AdminToken = "bad-input-admin", LeaderTtl = TimeSpan.FromSeconds(3), BrokerCheckInterval = TimeSpan.Zero }, store);
        var broker = new BrokerRecord { BrokerId = "b0", Host = "h0", Endpoint = "http://127.0.0.1:1" };
        broker.Devices.Add(new DeviceInfo { Index = 0, Name = "GpuPool CPU device", MemoryTotalBytes = 1UL << 30, ComputeCapacity = 1000 });
        await store.PutAsync(StoreKeys.Brokers + "b0", Google.Protobuf.MessageExtensions.ToByteArray(broker));
        using var client = new GpuPoolClient(scheduler.Endpoint, new GpuPoolClientOptions { BearerToken = "bad-input-admin" });
        await Poll.UntilAsync(async () => (await client.ListClusterAsync()).Devices.Count == 1, TimeSpan.FromSeconds(10), "the leader sees the broker");
        await using (await client.AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = MiB, ComputeShare = 100 }))
        {
        }

        etcd.Members[0].Kill();
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => client.AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = MiB, ComputeShare = 100 }));

        Assert.Equal(ErrorCode.Unavailable, error.Code);
        etcd.Members[0].Start();
        await etcd.WaitHealthyAsync(TimeSpan.FromSeconds(30));

        // Nothing was written while the store was away (the first lease was released before), and once it is
        // back, allocation works again.
        Assert.Empty((await store.ListAsync(StoreKeys.Leases)).Entries);
        await Poll.UntilAsync(
            async () =>
            {
                try
                {
                    await using var again = await client.AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = MiB, ComputeShare = 100 });
                    return true;
                }
                catch (GpuPoolException ex) when (ex.Code == ErrorCode.Unavailable)
                {
                    return false;
                }
            },
            TimeSpan.FromSeconds(30),
            "allocation works again once the store is back");
    }

    private static async Task<T> Call<T>(Func<Task<T>> call)
    {
        try
        {
            return await call();
        }
        catch (Grpc.Core.RpcException ex)
        {
            throw GpuPoolException.FromRpc(ex, "call");
        }
    }
}
