using System.Text;

namespace GpuPool.Coordination.Tests;

/// <summary>
/// What every <see cref="IClusterStore"/> driver must do. A driver's test class derives from this and
/// supplies a store and a way to let time pass (a manual clock, or real waiting for a real server).
/// Tests use a fresh key prefix each and compare revisions relative to each other, so a shared server works;
/// expiry is awaited with <see cref="EventuallyAsync"/>, so a driver whose server expires sessions late works.
/// </summary>
public abstract partial class ClusterStoreContract
{
    /// <summary>A fresh prefix per test (xUnit makes one instance per test).</summary>
    protected string Prefix { get; } = $"contract/{Guid.NewGuid():N}/";

    /// <summary>The session TTL the tests use; a real server may need seconds.</summary>
    protected virtual TimeSpan SessionTtl => TimeSpan.FromSeconds(5);

    /// <summary>How long, in real time, an expiry may take to show after the clock has passed the deadline.</summary>
    protected virtual TimeSpan ExpiryGrace => TimeSpan.FromSeconds(10);

    /// <summary>How long, in real time, to wait for a watch event.</summary>
    protected virtual TimeSpan WatchTimeout => TimeSpan.FromSeconds(10);

    protected abstract Task<IClusterStore> CreateStoreAsync();

    /// <summary>Lets <paramref name="by"/> pass on the store's clock.</summary>
    protected abstract Task AdvanceAsync(TimeSpan by);

    protected string Key(string name) => Prefix + name;

    protected static byte[] Bytes(string s) => Encoding.UTF8.GetBytes(s);

    protected static string Text(ReadOnlyMemory<byte> value) => Encoding.UTF8.GetString(value.Span);

    [StoreFact]
    public async Task PutThenGet_ReturnsTheValue()
    {
        await using var store = await CreateStoreAsync();

        var put = await store.PutAsync(Key("a"), Bytes("one"));
        var entry = await store.GetAsync(Key("a"));

        Assert.True(put.Succeeded);
        Assert.NotNull(entry);
        Assert.Equal(Key("a"), entry.Key);
        Assert.Equal("one", Text(entry.Value));
        Assert.Equal(put.ModRevision, entry.ModRevision);
        Assert.Equal(put.ModRevision, entry.CreateRevision);
        Assert.Null(entry.SessionId);
        Assert.Null(await store.GetAsync(Key("missing")));
    }

    [StoreFact]
    public async Task Revisions_IncreaseWithEveryWrite_AndCreateRevisionStays()
    {
        await using var store = await CreateStoreAsync();
        var start = await store.GetRevisionAsync();

        var a1 = await store.PutAsync(Key("a"), Bytes("1"));
        var b1 = await store.PutAsync(Key("b"), Bytes("1"));
        var a2 = await store.PutAsync(Key("a"), Bytes("2"));

        Assert.True(start < a1.ModRevision);
        Assert.True(a1.ModRevision < b1.ModRevision);
        Assert.True(b1.ModRevision < a2.ModRevision);
        var a = await store.GetAsync(Key("a"));
        Assert.NotNull(a);
        Assert.Equal(a1.ModRevision, a.CreateRevision);
        Assert.Equal(a2.ModRevision, a.ModRevision);
        Assert.True(await store.GetRevisionAsync() >= a2.ModRevision);

        Assert.True(await store.DeleteAsync(Key("a")));
        Assert.True(await store.GetRevisionAsync() > a2.ModRevision);
        var recreated = await store.PutAsync(Key("a"), Bytes("3"));
        Assert.Equal(recreated.ModRevision, (await store.GetAsync(Key("a")))!.CreateRevision);
    }

    [StoreFact]
    public async Task CasWithExpectedZero_FailsWhenTheKeyExists()
    {
        await using var store = await CreateStoreAsync();

        var created = await store.PutAsync(Key("a"), Bytes("first"), expectedModRevision: 0);
        var again = await store.PutAsync(Key("a"), Bytes("second"), expectedModRevision: 0);

        Assert.True(created.Succeeded);
        Assert.False(again.Succeeded);
        Assert.Equal(created.ModRevision, again.ModRevision);
        Assert.Equal("first", Text((await store.GetAsync(Key("a")))!.Value));
    }

    [StoreFact]
    public async Task CasWithAStaleModRevision_FailsAndReturnsTheCurrentRevision()
    {
        await using var store = await CreateStoreAsync();
        var first = await store.PutAsync(Key("a"), Bytes("1"));
        var second = await store.PutAsync(Key("a"), Bytes("2"));

        var stale = await store.PutAsync(Key("a"), Bytes("stale"), expectedModRevision: first.ModRevision);
        var current = await store.PutAsync(Key("a"), Bytes("3"), expectedModRevision: second.ModRevision);
        var absent = await store.PutAsync(Key("absent"), Bytes("x"), expectedModRevision: second.ModRevision);

        Assert.Equal(new PutResult(false, second.ModRevision), stale);
        Assert.True(current.Succeeded);
        Assert.True(current.ModRevision > second.ModRevision);
        Assert.Equal("3", Text((await store.GetAsync(Key("a")))!.Value));
        Assert.Equal(new PutResult(false, 0), absent);
        Assert.Null(await store.GetAsync(Key("absent")));
    }

    [StoreFact]
    public async Task CasDelete_DeletesOnlyAtTheExpectedRevision()
    {
        await using var store = await CreateStoreAsync();
        var first = await store.PutAsync(Key("a"), Bytes("1"));
        var second = await store.PutAsync(Key("a"), Bytes("2"));
        var revisionBefore = await store.GetRevisionAsync();

        Assert.False(await store.DeleteAsync(Key("a"), expectedModRevision: first.ModRevision));
        Assert.False(await store.DeleteAsync(Key("a"), expectedModRevision: 0));
        Assert.NotNull(await store.GetAsync(Key("a")));
        Assert.False(await store.DeleteAsync(Key("missing")));
        Assert.Equal(revisionBefore, await store.GetRevisionAsync());

        Assert.True(await store.DeleteAsync(Key("a"), expectedModRevision: second.ModRevision));
        Assert.Null(await store.GetAsync(Key("a")));
        Assert.False(await store.DeleteAsync(Key("a")));
    }

    [StoreFact]
    public async Task ListByPrefix_ReturnsOnlyThatPrefix_OrderedByKey()
    {
        await using var store = await CreateStoreAsync();
        foreach (var name in new[] { "n/b", "n/a/x", "n/B", "n/a", "n0", "m/a", "n/é", "n/z" })
        {
            await store.PutAsync(Key(name), Bytes(name));
        }

        var listed = await store.ListAsync(Key("n/"));

        string[] expected = ["n/B", "n/a", "n/a/x", "n/b", "n/z", "n/é"];
        Assert.Equal(expected.Select(Key), listed.Entries.Select(e => e.Key));
        Assert.Equal(expected, listed.Entries.Select(e => Text(e.Value)));
        Assert.True(listed.Revision >= listed.Entries.Max(e => e.ModRevision));
        Assert.Empty((await store.ListAsync(Key("none/"))).Entries);
    }

    [StoreFact]
    public async Task Values_AreCopied_SoTheCallerMayReuseItsBuffer()
    {
        await using var store = await CreateStoreAsync();
        var buffer = Bytes("abc");

        await store.PutAsync(Key("a"), buffer);
        buffer[0] = (byte)'X';

        Assert.Equal("abc", Text((await store.GetAsync(Key("a")))!.Value));
    }

    [StoreFact]
    public async Task CreateSession_WithANonPositiveTtl_Throws()
    {
        await using var store = await CreateStoreAsync();

        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await store.CreateSessionAsync(TimeSpan.Zero));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await store.CreateSessionAsync(TimeSpan.FromSeconds(-1)));
    }

    [StoreFact]
    public async Task SessionExpiry_DeletesItsKeys_AndOnlyThose()
    {
        await using var store = await CreateStoreAsync();
        var session = await store.CreateSessionAsync(SessionTtl);
        await store.PutAsync(Key("bound"), Bytes("1"), sessionId: session.Id);
        await store.PutAsync(Key("free"), Bytes("1"));
        Assert.Equal(session.Id, (await store.GetAsync(Key("bound")))!.SessionId);

        await AdvanceAsync(SessionTtl + TimeSpan.FromSeconds(1));

        await EventuallyAsync(async () => await store.GetAsync(Key("bound")) is null, "the session's key was not deleted");
        Assert.NotNull(await store.GetAsync(Key("free")));
        Assert.False(await store.KeepAliveAsync(session.Id));
    }

    [StoreFact]
    public async Task KeepAliveBeforeTheDeadline_KeepsTheKeys()
    {
        await using var store = await CreateStoreAsync();
        var session = await store.CreateSessionAsync(SessionTtl);
        await store.PutAsync(Key("bound"), Bytes("1"), sessionId: session.Id);
        var step = SessionTtl * 0.6;

        await AdvanceAsync(step);
        Assert.True(await store.KeepAliveAsync(session.Id));
        await AdvanceAsync(step);
        Assert.True(await store.KeepAliveAsync(session.Id));
        await AdvanceAsync(step);

        // 1.8 TTL since the session started, 0.6 since the last keepalive.
        Assert.NotNull(await store.GetAsync(Key("bound")));

        await AdvanceAsync(step);
        await AdvanceAsync(step);
        await EventuallyAsync(async () => await store.GetAsync(Key("bound")) is null, "the session's key was not deleted");
    }

    [StoreFact]
    public async Task KeepAlive_OfAnUnknownSession_ReturnsFalse()
    {
        await using var store = await CreateStoreAsync();

        Assert.False(await store.KeepAliveAsync("0123456789abcdef"));
    }

    [StoreFact]
    public async Task Revoke_DeletesTheSessionsKeys()
    {
        await using var store = await CreateStoreAsync();
        var session = await store.CreateSessionAsync(SessionTtl);
        var other = await store.CreateSessionAsync(SessionTtl);
        await store.PutAsync(Key("a"), Bytes("1"), sessionId: session.Id);
        await store.PutAsync(Key("b"), Bytes("1"), sessionId: session.Id);
        await store.PutAsync(Key("c"), Bytes("1"), sessionId: other.Id);
        var before = await store.GetRevisionAsync();

        await store.RevokeSessionAsync(session.Id);

        Assert.Equal([Key("c")], (await store.ListAsync(Prefix)).Entries.Select(e => e.Key));
        Assert.True(await store.GetRevisionAsync() > before);
        Assert.False(await store.KeepAliveAsync(session.Id));
        Assert.True(await store.KeepAliveAsync(other.Id));
        await store.RevokeSessionAsync(session.Id);
        await store.RevokeSessionAsync("0123456789abcdef");
    }

    [StoreFact]
    public async Task PutWithAnEndedSession_Throws()
    {
        await using var store = await CreateStoreAsync();
        var session = await store.CreateSessionAsync(SessionTtl);
        await store.RevokeSessionAsync(session.Id);

        var revoked = await Assert.ThrowsAsync<StoreSessionNotFoundException>(async () => await store.PutAsync(Key("a"), Bytes("1"), sessionId: session.Id));
        var unknown = await Assert.ThrowsAsync<StoreSessionNotFoundException>(async () => await store.PutAsync(Key("a"), Bytes("1"), sessionId: "0123456789abcdef"));

        Assert.Equal(session.Id, revoked.SessionId);
        Assert.Equal("0123456789abcdef", unknown.SessionId);
        Assert.Null(await store.GetAsync(Key("a")));
    }

    [StoreFact]
    public async Task PutWithAnExpiredSession_Throws()
    {
        await using var store = await CreateStoreAsync();
        var session = await store.CreateSessionAsync(SessionTtl);

        await AdvanceAsync(SessionTtl + TimeSpan.FromSeconds(1));

        await EventuallyAsync(async () => !await store.KeepAliveAsync(session.Id), "the session did not expire");
        await Assert.ThrowsAsync<StoreSessionNotFoundException>(async () => await store.PutAsync(Key("a"), Bytes("1"), sessionId: session.Id));
    }

    [StoreFact]
    public async Task RePutWithAnotherSession_RebindsTheKey()
    {
        await using var store = await CreateStoreAsync();
        var first = await store.CreateSessionAsync(SessionTtl);
        var second = await store.CreateSessionAsync(SessionTtl);
        await store.PutAsync(Key("a"), Bytes("1"), sessionId: first.Id);
        await store.PutAsync(Key("b"), Bytes("1"), sessionId: first.Id);

        await store.PutAsync(Key("a"), Bytes("2"), sessionId: second.Id);
        await store.PutAsync(Key("b"), Bytes("2"));
        await store.RevokeSessionAsync(first.Id);

        Assert.Equal(second.Id, (await store.GetAsync(Key("a")))!.SessionId);
        Assert.Null((await store.GetAsync(Key("b")))!.SessionId);

        await store.RevokeSessionAsync(second.Id);
        Assert.Equal([Key("b")], (await store.ListAsync(Prefix)).Entries.Select(e => e.Key));
    }

    [StoreFact]
    public async Task Watch_SeesPutAndDeleteInOrder()
    {
        await using var store = await CreateStoreAsync();
        using var cts = new CancellationTokenSource();
        await using var watch = store.WatchAsync(Key("w/"), await store.GetRevisionAsync(), cts.Token).GetAsyncEnumerator();

        var put1 = await store.PutAsync(Key("w/a"), Bytes("1"));
        await store.PutAsync(Key("other"), Bytes("ignored"));
        var put2 = await store.PutAsync(Key("w/b"), Bytes("2"));
        var put3 = await store.PutAsync(Key("w/a"), Bytes("3"));
        Assert.True(await store.DeleteAsync(Key("w/a")));
        var deleteRevision = await store.GetRevisionAsync();

        var events = await TakeAsync(watch, 4);

        Assert.Equal(
            [(WatchEventKind.Put, Key("w/a"), put1.ModRevision), (WatchEventKind.Put, Key("w/b"), put2.ModRevision), (WatchEventKind.Put, Key("w/a"), put3.ModRevision), (WatchEventKind.Delete, Key("w/a"), deleteRevision)],
            events.Select(e => (e.Kind, e.Entry.Key, e.Revision)));
        Assert.Equal("3", Text(events[2].Entry.Value));
        Assert.Equal(put1.ModRevision, events[2].Entry.CreateRevision);
        Assert.Equal("3", Text(events[3].Entry.Value));
        Assert.Equal(deleteRevision, events[3].Entry.ModRevision);
    }

    [StoreFact]
    public async Task WatchFromAnOlderRevision_ReplaysThenStreams()
    {
        await using var store = await CreateStoreAsync();
        await store.PutAsync(Key("w/a"), Bytes("1"));
        var from = await store.GetRevisionAsync();
        var put2 = await store.PutAsync(Key("w/b"), Bytes("2"));
        var put3 = await store.PutAsync(Key("w/a"), Bytes("3"));

        using var cts = new CancellationTokenSource();
        await using var watch = store.WatchAsync(Key("w/"), from, cts.Token).GetAsyncEnumerator();
        var replayed = await TakeAsync(watch, 2);
        var put4 = await store.PutAsync(Key("w/c"), Bytes("4"));
        var live = await TakeAsync(watch, 1);

        Assert.Equal([put2.ModRevision, put3.ModRevision, put4.ModRevision], replayed.Concat(live).Select(e => e.Revision));
        Assert.Equal(["2", "3", "4"], replayed.Concat(live).Select(e => Text(e.Entry.Value)));
    }

    [StoreFact]
    public async Task WatchStartedThenWritten_IsNotLost()
    {
        await using var store = await CreateStoreAsync();
        using var cts = new CancellationTokenSource();

        // Written after WatchAsync is called but before anything is enumerated.
        var watchable = store.WatchAsync(Key("w/"), await store.GetRevisionAsync(), cts.Token);
        var put1 = await store.PutAsync(Key("w/a"), Bytes("1"));
        await using var watch = watchable.GetAsyncEnumerator();
        var put2 = await store.PutAsync(Key("w/b"), Bytes("2"));
        var first = watch.MoveNextAsync();
        var put3 = await store.PutAsync(Key("w/c"), Bytes("3"));

        Assert.True(await first.AsTask().WaitAsync(WatchTimeout));
        var firstEvent = watch.Current;
        var rest = await TakeAsync(watch, 2);

        Assert.Equal([put1.ModRevision, put2.ModRevision, put3.ModRevision], rest.Prepend(firstEvent).Select(e => e.Revision));
    }

    [StoreFact]
    public async Task ConcurrentWriters_DuringAWatch_AreSeenOnceEach_InRevisionOrder()
    {
        await using var store = await CreateStoreAsync();
        using var cts = new CancellationTokenSource();
        await using var watch = store.WatchAsync(Key("w/"), await store.GetRevisionAsync(), cts.Token).GetAsyncEnumerator();

        // The watch registers (on its first MoveNextAsync) while the writers run.
        var writes = Task.WhenAll(Enumerable.Range(0, 200).Select(i => Task.Run(async () => await store.PutAsync(Key($"w/{i % 5}"), Bytes($"{i}")))));
        var events = await TakeAsync(watch, 200);
        var puts = await writes;
        var last = await store.PutAsync(Key("w/last"), Bytes("last"));
        var after = await TakeAsync(watch, 1);

        Assert.Equal(puts.Select(p => p.ModRevision).Order(), events.Select(e => e.Revision));
        Assert.Equal(last.ModRevision, Assert.Single(after).Revision);
    }

    [StoreFact]
    public async Task SessionExpiry_IsSeenByAWatch_AsADelete()
    {
        await using var store = await CreateStoreAsync();
        var session = await store.CreateSessionAsync(SessionTtl);
        var put = await store.PutAsync(Key("w/lock"), Bytes("me"), sessionId: session.Id);
        using var cts = new CancellationTokenSource();
        await using var watch = store.WatchAsync(Key("w/"), put.ModRevision, cts.Token).GetAsyncEnumerator();
        var next = watch.MoveNextAsync();

        // Nothing calls the store after this: the expiry must happen on its own.
        await AdvanceAsync(SessionTtl + TimeSpan.FromSeconds(1));

        Assert.True(await next.AsTask().WaitAsync(WatchTimeout + ExpiryGrace));
        Assert.Equal(WatchEventKind.Delete, watch.Current.Kind);
        Assert.Equal(Key("w/lock"), watch.Current.Entry.Key);
        Assert.Equal("me", Text(watch.Current.Entry.Value));
        Assert.True(watch.Current.Revision > put.ModRevision);
    }

    [StoreFact]
    public async Task TwoConcurrentCasWriters_OnOneKey_ExactlyOneWins()
    {
        await using var store = await CreateStoreAsync();
        var go = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        var rounds = Enumerable.Range(0, 100).Select(async round =>
        {
            var key = Key($"cas/{round}");
            var initial = await store.PutAsync(key, Bytes("initial"));
            var writers = new[] { "left", "right" }.Select(name => Task.Run(async () =>
            {
                await go.Task;
                return (name, result: await store.PutAsync(key, Bytes(name), expectedModRevision: initial.ModRevision));
            })).ToArray();
            return (key, outcomes: await Task.WhenAll(writers));
        }).ToArray();
        await Task.Delay(10);
        go.SetResult();

        foreach (var (key, outcomes) in await Task.WhenAll(rounds))
        {
            var winner = Assert.Single(outcomes, o => o.result.Succeeded);
            var loser = Assert.Single(outcomes, o => !o.result.Succeeded);
            Assert.Equal(winner.result.ModRevision, loser.result.ModRevision);
            var entry = await store.GetAsync(key);
            Assert.Equal(winner.name, Text(entry!.Value));
            Assert.Equal(winner.result.ModRevision, entry.ModRevision);
        }
    }

    /// <summary>Polls <paramref name="condition"/> until it holds, for up to <see cref="ExpiryGrace"/> of real time.</summary>
    protected async Task EventuallyAsync(Func<Task<bool>> condition, string message)
    {
        var deadline = DateTime.UtcNow + ExpiryGrace;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail(message);
            }

            await Task.Delay(50);
        }
    }

    /// <summary>The next <paramref name="count"/> events, failing after <see cref="WatchTimeout"/>.</summary>
    protected async Task<List<WatchEvent>> TakeAsync(IAsyncEnumerator<WatchEvent> watch, int count)
    {
        var events = new List<WatchEvent>();
        while (events.Count < count)
        {
            Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(WatchTimeout), "the watch ended");
            events.Add(watch.Current);
        }

        return events;
    }
}
