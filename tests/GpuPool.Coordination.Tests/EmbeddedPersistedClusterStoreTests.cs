using GpuPool.Coordination.Embedded;

namespace GpuPool.Coordination.Tests;

/// <summary>
/// The whole contract against the embedded store kept in a file, with a compaction bound small enough that
/// the file is rewritten many times during a test, concurrent writers included.
/// </summary>
public sealed class EmbeddedPersistedClusterStoreTests : ClusterStoreContract, IDisposable
{
    private readonly ManualTimeProvider _time = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("gpupool-store-").FullName;

    protected override TimeSpan ExpiryGrace => TimeSpan.Zero;

    protected override TimeSpan WatchTimeout => TimeSpan.FromSeconds(5);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    protected override Task<IClusterStore> CreateStoreAsync() =>
        Task.FromResult<IClusterStore>(EmbeddedClusterStore.Open(new EmbeddedStoreOptions(Path.Combine(_dir, "embedded.db")) { CompactionThreshold = 2048 }, _time));

    protected override Task AdvanceAsync(TimeSpan by)
    {
        _time.Advance(by);
        return Task.CompletedTask;
    }
}
