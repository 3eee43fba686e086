using GpuPool.Broker;
using GpuPool.Broker.Hosting;
using GpuPool.Coordination.Embedded;
using GpuPool.Devices.Cpu;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler;
using GpuPool.Scheduler.Hosting;

namespace GpuPool.IntegrationTests.Scheduling;

/// <summary>
/// The pool's key in the store: the first scheduler publishes its public half; a replica or a broker given another
/// key is refused at start with a sentence naming both fingerprints, and registers nothing; the pool's own key passes.
/// </summary>
public sealed class PoolKeyTests
{
    [Fact]
    public async Task A_scheduler_or_broker_with_another_pools_key_is_refused_at_start_and_the_pools_own_key_passes()
    {
        await using var store = new EmbeddedClusterStore();
        using var poolKey = LeaseToken.CreateKey();
        using var otherKey = LeaseToken.CreateKey();
        using var backend = new CpuBackend(1, 64UL << 20);
        await using var scheduler = await SchedulerHost.StartAsync(new SchedulerOptions { Port = 0, SigningKey = poolKey }, store);
        var published = await store.GetAsync(StoreKeys.SchedulerPublicKey);
        Assert.NotNull(published);
        Assert.Null(PoolKey.Mismatch(poolKey, published!.Value.Span, "test"));

        var replica = await Assert.ThrowsAsync<ArgumentException>(() => SchedulerHost.StartAsync(new SchedulerOptions { Port = 0, SigningKey = otherKey }, store));
        Assert.Contains($"this scheduler replica's key (fingerprint {PoolKey.Describe(otherKey)}) is not this pool's signing key (fingerprint {PoolKey.Describe(poolKey)}, in the store)", replica.Message, StringComparison.Ordinal);

        BrokerOptions Broker(string id, System.Security.Cryptography.ECDsa key) => new()
        {
            BrokerId = id,
            Port = 0,
            FastPathPort = -1,
            SchedulerPublicKey = LeaseToken.ImportPem(LeaseToken.ExportPublicPem(key)),
            Backend = backend,
        };
        var broker = await Assert.ThrowsAsync<ArgumentException>(() => BrokerHost.StartAsync(Broker("stranger", otherKey), store));
        Assert.Contains($"broker stranger's key (fingerprint {PoolKey.Describe(otherKey)}) is not this pool's signing key", broker.Message, StringComparison.Ordinal);
        Assert.Empty((await store.ListAsync(StoreKeys.Brokers)).Entries);

        await using var good = await BrokerHost.StartAsync(Broker("member", poolKey), store);
        Assert.Single((await store.ListAsync(StoreKeys.Brokers)).Entries);
        await using var secondReplica = await SchedulerHost.StartAsync(new SchedulerOptions { Port = 0, SigningKey = poolKey }, store);
        Assert.False(secondReplica.IsLeader);
    }
}
