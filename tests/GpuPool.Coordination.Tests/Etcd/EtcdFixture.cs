using GpuPool.Coordination.Etcd;
using GpuPool.Testing.Etcd;

namespace GpuPool.Coordination.Tests.Etcd;

/// <summary>One real etcd member for a whole test class; its tests keep apart by key prefix.</summary>
public sealed class EtcdFixture : IAsyncLifetime
{
    private EtcdCluster? _cluster;

    public EtcdCluster Cluster => _cluster ?? throw new InvalidOperationException("the etcd fixture has not started");

    /// <summary>A store on this etcd under a key prefix of its own.</summary>
    public EtcdClusterStore CreateStore(string? keyPrefix = null, TimeSpan? requestTimeout = null) => new(new EtcdClusterStoreOptions
    {
        Endpoints = [.. Cluster.Members.Select(m => m.ClientUrl)],
        KeyPrefix = keyPrefix ?? $"test-{Guid.NewGuid():N}/",
        RequestTimeout = requestTimeout ?? TimeSpan.FromSeconds(5),
    });

    public async Task InitializeAsync() => _cluster = await EtcdCluster.StartAsync();

    public async Task DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }
    }
}
