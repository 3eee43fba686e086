using GpuPool.Coordination.Election;

namespace GpuPool.Coordination.Tests;

/// <summary>The contract's transactions, leader lock and service registration.</summary>
public abstract partial class ClusterStoreContract
{
    [StoreFact]
    public async Task Transaction_WhenEveryCheckHolds_AppliesAllWritesAtOneRevision()
    {
        await using var store = await CreateStoreAsync();
        var a = await store.PutAsync(Key("a"), Bytes("a"));

        var result = await store.TransactAsync(
            [new TxnCheck(Key("a"), a.ModRevision), TxnCheck.Absent(Key("b"))],
            [TxnWrite.Put(Key("b"), Bytes("b")), TxnWrite.Put(Key("c"), Bytes("c")), TxnWrite.Delete(Key("a"))]);

        Assert.True(result.Succeeded);
        Assert.Empty(result.FailedChecks);
        Assert.True(result.Revision > a.ModRevision);
        Assert.Null(await store.GetAsync(Key("a")));
        Assert.Equal((result.Revision, "b"), ((await store.GetAsync(Key("b")))!.ModRevision, Text((await store.GetAsync(Key("b")))!.Value)));
        Assert.Equal(result.Revision, (await store.GetAsync(Key("c")))!.ModRevision);
    }

    [StoreFact]
    public async Task Transaction_WhenOneCheckFails_AppliesNothing_AndNamesTheFailedCheck()
    {
        await using var store = await CreateStoreAsync();
        var a1 = await store.PutAsync(Key("a"), Bytes("1"));
        await store.PutAsync(Key("a"), Bytes("2"));
        await store.PutAsync(Key("x"), Bytes("x"));

        var result = await store.TransactAsync(
            [new TxnCheck(Key("a"), a1.ModRevision), TxnCheck.Absent(Key("b")), TxnCheck.Absent(Key("x"))],
            [TxnWrite.Put(Key("b"), Bytes("b")), TxnWrite.Delete(Key("x"))]);

        Assert.False(result.Succeeded);
        Assert.Equal([Key("a"), Key("x")], result.FailedChecks.Order(StringComparer.Ordinal));
        Assert.Null(await store.GetAsync(Key("b")));
        Assert.NotNull(await store.GetAsync(Key("x")));
        Assert.Equal("2", Text((await store.GetAsync(Key("a")))!.Value));
    }

    [StoreFact]
    public async Task Transaction_ConcurrentWithAConflictingPut_EitherCommitsWholeOrNotAtAll()
    {
        await using var store = await CreateStoreAsync();
        for (var round = 0; round < 30; round++)
        {
            var slot = Key($"slot/{round}");
            var seen = await store.PutAsync(slot, Bytes("free"));
            var txn = store.TransactAsync(
                [new TxnCheck(slot, seen.ModRevision)],
                [TxnWrite.Put(slot, Bytes("txn")), TxnWrite.Put(Key($"claim/{round}"), Bytes("txn"))]).AsTask();
            var put = store.PutAsync(slot, Bytes("put"), expectedModRevision: seen.ModRevision).AsTask();
            var (txnResult, putResult) = (await txn, await put);

            Assert.True(txnResult.Succeeded ^ putResult.Succeeded);
            Assert.Equal(txnResult.Succeeded ? "txn" : "put", Text((await store.GetAsync(slot))!.Value));
            Assert.Equal(txnResult.Succeeded, await store.GetAsync(Key($"claim/{round}")) is not null);
        }
    }

    [StoreFact]
    public async Task Transaction_SessionBoundWrite_VanishesWithTheSession()
    {
        await using var store = await CreateStoreAsync();
        var session = await store.CreateSessionAsync(SessionTtl);

        var result = await store.TransactAsync([TxnCheck.Absent(Key("s"))], [TxnWrite.Put(Key("s"), Bytes("s"), session.Id), TxnWrite.Put(Key("p"), Bytes("p"))]);
        Assert.True(result.Succeeded);
        Assert.Equal(session.Id, (await store.GetAsync(Key("s")))!.SessionId);

        await store.RevokeSessionAsync(session.Id);
        await EventuallyAsync(async () => await store.GetAsync(Key("s")) is null, "the session-bound key outlived its session");
        Assert.NotNull(await store.GetAsync(Key("p")));
    }

    [StoreFact]
    public async Task Transaction_NamingAnEndedSession_ThrowsAndAppliesNothing()
    {
        await using var store = await CreateStoreAsync();
        var session = await store.CreateSessionAsync(SessionTtl);
        await store.RevokeSessionAsync(session.Id);

        await Assert.ThrowsAsync<StoreSessionNotFoundException>(async () =>
            await store.TransactAsync([], [TxnWrite.Put(Key("plain"), Bytes("p")), TxnWrite.Put(Key("bound"), Bytes("b"), session.Id)]));
        Assert.Null(await store.GetAsync(Key("plain")));
        Assert.Null(await store.GetAsync(Key("bound")));
    }

    [StoreFact]
    public async Task Transaction_TooLargeOrWritingAKeyTwice_IsRefusedBeforeAnythingIsWritten()
    {
        await using var store = await CreateStoreAsync();
        var tooMany = Enumerable.Range(0, TxnLimits.MaxOperations + 1).Select(i => TxnWrite.Put(Key($"many/{i}"), Bytes("x"))).ToArray();

        var large = await Assert.ThrowsAsync<ArgumentException>(async () => await store.TransactAsync([], tooMany));
        var twice = await Assert.ThrowsAsync<ArgumentException>(async () => await store.TransactAsync([], [TxnWrite.Put(Key("d"), Bytes("1")), TxnWrite.Delete(Key("d"))]));

        Assert.Contains($"at most {TxnLimits.MaxOperations}", large.Message, StringComparison.Ordinal);
        Assert.Contains("twice", twice.Message, StringComparison.Ordinal);
        Assert.Empty((await store.ListAsync(Prefix)).Entries);
    }

    [StoreFact]
    public async Task LeaderLock_HasOneHolder_AndTheNextCandidateTakesOverWhenTheHoldersSessionExpires()
    {
        await using var store = await CreateStoreAsync();
        var lockKey = Key("leader");

        // The first leader's keepalives run on a clock that never moves: it behaves like a process that died.
        var frozen = new ManualTimeProvider();
        var first = await new LeaderElection(store, lockKey, "first", SessionTtl, frozen).CampaignAsync();
        Assert.Equal("first", await LeaderElection.GetLeaderAsync(store, lockKey));

        using var cts = new CancellationTokenSource(WatchTimeout + ExpiryGrace + SessionTtl * 3);
        var second = new LeaderElection(store, lockKey, "second", SessionTtl).CampaignAsync(cts.Token);
        await Task.Delay(200);
        Assert.False(second.IsCompleted, "a second candidate became leader while the first held the lock");

        await AdvanceAsync(SessionTtl + TimeSpan.FromSeconds(1));
        await using var term = await second;

        Assert.Equal("second", await LeaderElection.GetLeaderAsync(store, lockKey));
        Assert.True(term.Revision > first.Revision);
        Assert.False(term.IsLost);
        Assert.False(await store.KeepAliveAsync(first.Session.Id));
    }

    [StoreFact]
    public async Task LeaderLock_Resigning_HandsOverWithoutWaitingForTheTtl()
    {
        await using var store = await CreateStoreAsync();
        var lockKey = Key("leader");
        var ttl = TimeSpan.FromMinutes(5);
        var first = await new LeaderElection(store, lockKey, "first", ttl).CampaignAsync();

        using var cts = new CancellationTokenSource(WatchTimeout);
        var second = new LeaderElection(store, lockKey, "second", ttl).CampaignAsync(cts.Token);
        await first.DisposeAsync();
        await using var term = await second;

        Assert.True(first.IsLost);
        Assert.Equal("second", await LeaderElection.GetLeaderAsync(store, lockKey));
    }

    [StoreFact]
    public async Task LeaderFence_MakesADeposedLeadersTransactionFail()
    {
        await using var store = await CreateStoreAsync();
        var lockKey = Key("leader");
        var first = await new LeaderElection(store, lockKey, "first", SessionTtl, new ManualTimeProvider()).CampaignAsync();
        Assert.True((await store.TransactAsync([first.Fence], [TxnWrite.Put(Key("state"), Bytes("first"))])).Succeeded);

        await store.RevokeSessionAsync(first.Session.Id);
        await using var second = await new LeaderElection(store, lockKey, "second", SessionTtl).CampaignAsync();

        var stale = await store.TransactAsync([first.Fence], [TxnWrite.Put(Key("state"), Bytes("stale"))]);
        Assert.False(stale.Succeeded);
        Assert.Equal([lockKey], stale.FailedChecks);
        Assert.Equal("first", Text((await store.GetAsync(Key("state")))!.Value));
    }

    [StoreFact]
    public async Task ServiceRegistration_PassesWhileChecked_TurnsCriticalWhenChecksStop_AndRecovers()
    {
        await using var store = await CreateStoreAsync();
        var name = $"svc-{Guid.NewGuid():N}";
        var meta = new Dictionary<string, string> { ["zone"] = "a", ["devices"] = "8" };
        await store.RegisterServiceAsync(new ServiceRegistration("inst-1", name, "127.0.0.1", 7071, meta, SessionTtl));

        var instance = Assert.Single(await store.ListServicesAsync(name));
        Assert.Equal(("inst-1", name, "127.0.0.1", 7071, ServiceHealth.Passing), (instance.Id, instance.Name, instance.Address, instance.Port, instance.Health));
        Assert.Equal(meta.OrderBy(p => p.Key), instance.Meta.OrderBy(p => p.Key));

        await AdvanceAsync(SessionTtl / 2);
        Assert.True(await store.PassServiceCheckAsync("inst-1"));
        await AdvanceAsync(SessionTtl / 2 + TimeSpan.FromMilliseconds(100));
        Assert.Equal(ServiceHealth.Passing, Assert.Single(await store.ListServicesAsync(name)).Health);

        await AdvanceAsync(SessionTtl + TimeSpan.FromSeconds(1));
        await EventuallyAsync(
            async () => Assert.Single(await store.ListServicesAsync(name)).Health == ServiceHealth.Critical,
            "the instance stayed passing after its checks stopped");

        Assert.True(await store.PassServiceCheckAsync("inst-1"));
        Assert.Equal(ServiceHealth.Passing, Assert.Single(await store.ListServicesAsync(name)).Health);
        await store.DeregisterServiceAsync("inst-1");
    }

    [StoreFact]
    public async Task ServiceDeregistration_RemovesTheInstance_AndUnknownInstancesFailTheirCheck()
    {
        await using var store = await CreateStoreAsync();
        var name = $"svc-{Guid.NewGuid():N}";
        await store.RegisterServiceAsync(new ServiceRegistration("inst-a", name, "127.0.0.1", 1, new Dictionary<string, string>(), SessionTtl));
        await store.RegisterServiceAsync(new ServiceRegistration("inst-b", name, "127.0.0.1", 2, new Dictionary<string, string>(), SessionTtl));
        Assert.Equal(["inst-a", "inst-b"], (await store.ListServicesAsync(name)).Select(s => s.Id));

        await store.DeregisterServiceAsync("inst-a");

        Assert.Equal(["inst-b"], (await store.ListServicesAsync(name)).Select(s => s.Id));
        Assert.False(await store.PassServiceCheckAsync("inst-a"));
        Assert.False(await store.PassServiceCheckAsync($"never-{Guid.NewGuid():N}"));
        await store.DeregisterServiceAsync("inst-a");
        await store.DeregisterServiceAsync("inst-b");
    }

    [StoreFact]
    public async Task ServiceRegistration_WithABadIdOrTtl_IsRefused()
    {
        await using var store = await CreateStoreAsync();
        var none = new Dictionary<string, string>();

        await Assert.ThrowsAsync<ArgumentException>(async () => await store.RegisterServiceAsync(new ServiceRegistration("bad id/x", "svc", "127.0.0.1", 1, none, SessionTtl)));
        await Assert.ThrowsAnyAsync<ArgumentException>(async () => await store.RegisterServiceAsync(new ServiceRegistration("ok", "svc", "127.0.0.1", 1, none, TimeSpan.FromMilliseconds(10))));
        await Assert.ThrowsAnyAsync<ArgumentException>(async () => await store.RegisterServiceAsync(new ServiceRegistration("ok", "svc", "127.0.0.1", 70000, none, SessionTtl)));
    }
}
