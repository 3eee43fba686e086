using System.Diagnostics;
using System.Globalization;
using GpuPool.Coordination.Etcd;
using GpuPool.Testing.Etcd;
using Grpc.Net.Client;

namespace GpuPool.Coordination.Tests.Etcd;

/// <summary>
/// The contract against a real etcd member (real time: sessions are etcd leases of whole seconds, expired by etcd's
/// own lease loop), then what only etcd does: key prefixes, lease ids, compaction, an unreachable cluster.
/// </summary>
public sealed class EtcdClusterStoreTests(EtcdFixture etcd) : ClusterStoreContract, IClassFixture<EtcdFixture>
{
    /// <summary>etcd's shortest lease is 1.5 election timeouts (1.5 s here); 2 s keeps the contract's steps whole seconds apart.</summary>
    protected override TimeSpan SessionTtl => TimeSpan.FromSeconds(2);

    /// <summary>etcd checks lease expiry every 500 ms and deletes through Raft; a few seconds covers a loaded machine.</summary>
    protected override TimeSpan ExpiryGrace => TimeSpan.FromSeconds(5);

    protected override Task<IClusterStore> CreateStoreAsync() => Task.FromResult<IClusterStore>(etcd.CreateStore());

    protected override Task AdvanceAsync(TimeSpan by) => Task.Delay(by);

    [Fact]
    public async Task Keys_LiveUnderTheKeyPrefix_AndNeverShowIt()
    {
        var root = $"pools-{Guid.NewGuid():N}/";
        await using var a = etcd.CreateStore(root + "a/");
        await using var b = etcd.CreateStore(root + "b/");
        await using var raw = etcd.CreateStore(root);

        var put = await a.PutAsync("leases/1", Bytes("a"));
        await b.PutAsync("leases/1", Bytes("b"));
        using var cts = new CancellationTokenSource();
        await using var watch = a.WatchAsync("", put.ModRevision, cts.Token).GetAsyncEnumerator();
        await b.PutAsync("leases/2", Bytes("b"));
        var later = await a.PutAsync("leases/3", Bytes("a"));

        Assert.Equal(["leases/1", "leases/3"], (await a.ListAsync("")).Entries.Select(e => e.Key));
        Assert.Equal("b", Text((await b.GetAsync("leases/1"))!.Value));
        Assert.Equal(["a/leases/1", "a/leases/3", "b/leases/1", "b/leases/2"], (await raw.ListAsync("")).Entries.Select(e => e.Key));
        var seen = Assert.Single(await TakeAsync(watch, 1));
        Assert.Equal(("leases/3", later.ModRevision), (seen.Entry.Key, seen.Revision));
    }

    [Fact]
    public async Task Sessions_AreEtcdLeases_NamedInDecimal_WithTtlsRoundedUpToWholeSeconds()
    {
        await using var store = etcd.CreateStore();

        var session = await store.CreateSessionAsync(TimeSpan.FromMilliseconds(2100));
        var put = await store.PutAsync("bound", Bytes("x"), sessionId: session.Id);

        Assert.True(long.Parse(session.Id, NumberStyles.None, CultureInfo.InvariantCulture) > 0);
        Assert.Equal(TimeSpan.FromSeconds(3), session.Ttl);
        Assert.Equal(session.Id, (await store.GetAsync("bound"))!.SessionId);
        Assert.True(put.Succeeded);
        await store.RevokeSessionAsync(session.Id);
    }

    [Fact]
    public async Task ACasPutNamingAnEndedSession_Throws_EvenWhenItsCheckFails()
    {
        await using var store = etcd.CreateStore();
        var session = await store.CreateSessionAsync(SessionTtl);
        await store.RevokeSessionAsync(session.Id);
        await store.PutAsync("a", Bytes("1"));

        // etcd itself checks the lease only on the branch it runs: the check failing must not hide the ended session.
        await Assert.ThrowsAsync<StoreSessionNotFoundException>(async () => await store.PutAsync("a", Bytes("2"), expectedModRevision: 0, sessionId: session.Id));
        await Assert.ThrowsAsync<StoreSessionNotFoundException>(async () => await store.PutAsync("b", Bytes("2"), expectedModRevision: 0, sessionId: session.Id));
        Assert.Null(await store.GetAsync("b"));
    }

    [Fact]
    public async Task ASessionsKeys_VanishInOneRevision_WhenItEnds()
    {
        await using var store = etcd.CreateStore();
        var session = await store.CreateSessionAsync(SessionTtl);
        await store.PutAsync("a", Bytes("1"), sessionId: session.Id);
        await store.PutAsync("b", Bytes("1"), sessionId: session.Id);
        var before = await store.GetRevisionAsync();
        using var cts = new CancellationTokenSource();
        await using var watch = store.WatchAsync("", before, cts.Token).GetAsyncEnumerator();

        await store.RevokeSessionAsync(session.Id);

        // etcd deletes a lease's keys in one transaction: one revision, two delete events.
        var events = await TakeAsync(watch, 2);
        Assert.Equal([("a", before + 1), ("b", before + 1)], events.Select(e => (e.Entry.Key, e.Revision)));
        Assert.All(events, e => Assert.Equal(WatchEventKind.Delete, e.Kind));
        Assert.Equal(before + 1, await store.GetRevisionAsync());
    }

    [Fact]
    public async Task WatchFromACompactedRevision_FailsWithStoreCompacted_AndTheListingRevisionWorks()
    {
        // Compaction reaches every key of the etcd: this test has one of its own.
        await using var own = await EtcdCluster.StartAsync();
        await using var store = new EtcdClusterStore(new EtcdClusterStoreOptions { Endpoints = [own.Members[0].ClientUrl] });
        var first = await store.PutAsync("k", Bytes("1"));
        await store.PutAsync("k", Bytes("2"));
        var third = await store.PutAsync("k", Bytes("3"));
        using (var channel = GrpcChannel.ForAddress(own.Members[0].ClientUrl))
        {
            await new Etcdserverpb.KV.KVClient(channel).CompactAsync(new Etcdserverpb.CompactionRequest { Revision = third.ModRevision, Physical = true });
        }

        var error = await Assert.ThrowsAsync<StoreCompactedException>(async () =>
        {
            await foreach (var _ in store.WatchAsync("", first.ModRevision))
            {
            }
        });

        Assert.Equal((first.ModRevision, third.ModRevision - 1), (error.AfterRevision, error.CompactedRevision));
        var listing = await store.ListAsync("");
        using var cts = new CancellationTokenSource();
        await using var watch = store.WatchAsync("", listing.Revision, cts.Token).GetAsyncEnumerator();
        var fourth = await store.PutAsync("k", Bytes("4"));
        Assert.Equal(fourth.ModRevision, Assert.Single(await TakeAsync(watch, 1)).Revision);
    }

    [Fact]
    public async Task CancellingAWatch_EndsItWithOperationCanceled_AndDisposingTheStoreCompletesWatches()
    {
        var store = etcd.CreateStore();
        using var cts = new CancellationTokenSource();
        await using var cancelled = store.WatchAsync("", await store.GetRevisionAsync(), cts.Token).GetAsyncEnumerator();
        await using var open = store.WatchAsync("", await store.GetRevisionAsync()).GetAsyncEnumerator();
        var cancelledNext = cancelled.MoveNextAsync();
        var openNext = open.MoveNextAsync();

        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await cancelledNext);
        await store.DisposeAsync();

        Assert.False(await openNext.AsTask().WaitAsync(WatchTimeout));
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await store.GetAsync("a"));
    }

    [Fact]
    public async Task AStoreWithNothingListening_FailsWithStoreUnavailable_NamingTheEndpoints_WithinItsTimeout()
    {
        var endpoints = $"http://127.0.0.1:{FreePort()},http://127.0.0.1:{FreePort()}";
        await using var store = new EtcdClusterStore(EtcdClusterStoreOptions.FromEndpoints(endpoints) with { RequestTimeout = TimeSpan.FromSeconds(1) });
        var clock = Stopwatch.StartNew();

        var read = await Assert.ThrowsAsync<StoreUnavailableException>(async () => await store.GetAsync("a"));
        var write = await Assert.ThrowsAsync<StoreUnavailableException>(async () => await store.PutAsync("a", Bytes("1")));
        var watch = await Assert.ThrowsAsync<StoreUnavailableException>(async () =>
        {
            await foreach (var _ in store.WatchAsync("", 0))
            {
            }
        });

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(6), $"three calls took {clock.Elapsed}");
        foreach (var error in new[] { read, write, watch })
        {
            Assert.Contains(endpoints.Replace(",", ", ", StringComparison.Ordinal), error.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("127.0.0.1:2379")]
    [InlineData("ftp://127.0.0.1:2379")]
    [InlineData("http://127.0.0.1:2379/v3")]
    [InlineData("http://")]
    public void Options_WithABadEndpoint_AreRefused_NamingIt(string endpoint)
    {
        var error = Assert.Throws<ArgumentException>(() => new EtcdClusterStore(EtcdClusterStoreOptions.FromEndpoints($"http://127.0.0.1:2379,{endpoint}")));

        Assert.Contains($"'{endpoint}'", error.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => new EtcdClusterStore(EtcdClusterStoreOptions.FromEndpoints(" , ")));
        Assert.Throws<ArgumentOutOfRangeException>(() => new EtcdClusterStore(new EtcdClusterStoreOptions { RequestTimeout = TimeSpan.Zero }));
    }

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
