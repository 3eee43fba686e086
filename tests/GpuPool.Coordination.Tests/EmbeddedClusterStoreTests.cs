using CsCheck;
using GpuPool.Coordination.Embedded;

namespace GpuPool.Coordination.Tests;

public sealed class EmbeddedClusterStoreTests : ClusterStoreContract
{
    private readonly ManualTimeProvider _time = new();

    /// <summary>With a manual clock expiry shows on the very next call: no polling.</summary>
    protected override TimeSpan ExpiryGrace => TimeSpan.Zero;

    protected override TimeSpan WatchTimeout => TimeSpan.FromSeconds(5);

    protected override Task<IClusterStore> CreateStoreAsync() => Task.FromResult<IClusterStore>(new EmbeddedClusterStore(_time));

    protected override Task AdvanceAsync(TimeSpan by)
    {
        _time.Advance(by);
        return Task.CompletedTask;
    }

    [Fact]
    public async Task Revisions_StartAtZero_AndEveryKeyDeletedByASessionEndGetsItsOwn()
    {
        await using var store = new EmbeddedClusterStore(_time);
        Assert.Equal(0, await store.GetRevisionAsync());

        var session = await store.CreateSessionAsync(TimeSpan.FromSeconds(1));
        Assert.Equal(0, await store.GetRevisionAsync());
        Assert.Equal(new PutResult(true, 1), await store.PutAsync("a", Bytes("1"), sessionId: session.Id));
        Assert.Equal(new PutResult(true, 2), await store.PutAsync("b", Bytes("1"), sessionId: session.Id));
        Assert.Equal(new PutResult(true, 3), await store.PutAsync("c", Bytes("1"), sessionId: session.Id));

        _time.Advance(TimeSpan.FromSeconds(1));

        Assert.Equal(6, await store.GetRevisionAsync());
        Assert.Empty((await store.ListAsync("")).Entries);
    }

    [Fact]
    public async Task SessionIds_AreSixteenHexCharacters_AndDistinct()
    {
        await using var store = new EmbeddedClusterStore(_time);

        var a = await store.CreateSessionAsync(TimeSpan.FromSeconds(1));
        var b = await store.CreateSessionAsync(TimeSpan.FromSeconds(1));

        Assert.Matches("^[0-9a-f]{16}$", a.Id);
        Assert.NotEqual(a.Id, b.Id);
        Assert.Equal(TimeSpan.FromSeconds(1), a.Ttl);
    }

    [Fact]
    public async Task SessionsWithDifferentTtls_ExpireEachAtItsOwnDeadline_OnTheTimer()
    {
        await using var store = new EmbeddedClusterStore(_time);
        foreach (var seconds in new[] { 3, 1, 2 })
        {
            var session = await store.CreateSessionAsync(TimeSpan.FromSeconds(seconds));
            await store.PutAsync($"k{seconds}", Bytes("x"), sessionId: session.Id);
        }

        using var cts = new CancellationTokenSource();
        await using var watch = store.WatchAsync("k", await store.GetRevisionAsync(), cts.Token).GetAsyncEnumerator();

        // Only the clock moves: every delete below comes from the sweep timer.
        foreach (var seconds in new[] { 1, 2, 3 })
        {
            _time.Advance(TimeSpan.FromSeconds(1));
            var e = Assert.Single(await TakeAsync(watch, 1));
            Assert.Equal((WatchEventKind.Delete, $"k{seconds}"), (e.Kind, e.Entry.Key));
        }
    }

    [Fact]
    public async Task Expiry_IsAlsoCheckedOnEveryCall_WhenNoTimerFires()
    {
        var clock = new TimerlessTimeProvider();
        await using var store = new EmbeddedClusterStore(clock);
        var session = await store.CreateSessionAsync(TimeSpan.FromSeconds(1));
        await store.PutAsync("a", Bytes("1"), sessionId: session.Id);

        clock.Now += TimeSpan.FromSeconds(0.999);
        Assert.NotNull(await store.GetAsync("a"));
        clock.Now += TimeSpan.FromSeconds(0.001);

        Assert.Null(await store.GetAsync("a"));
        Assert.Equal(2, await store.GetRevisionAsync());
    }

    [Fact]
    public async Task SessionExpiry_WithTheSystemClock_HappensOnItsOwn()
    {
        await using var store = new EmbeddedClusterStore();
        var session = await store.CreateSessionAsync(TimeSpan.FromMilliseconds(100));
        await store.PutAsync("a", Bytes("1"), sessionId: session.Id);
        using var cts = new CancellationTokenSource();
        await using var watch = store.WatchAsync("", await store.GetRevisionAsync(), cts.Token).GetAsyncEnumerator();

        var e = Assert.Single(await TakeAsync(watch, 1));

        Assert.Equal((WatchEventKind.Delete, "a", 2L), (e.Kind, e.Entry.Key, e.Revision));
    }

    [Fact]
    public async Task WatchFromACompactedRevision_Throws()
    {
        await using var store = new EmbeddedClusterStore(_time);
        for (var i = 0; i < EmbeddedClusterStore.HistoryLimit + 5; i++)
        {
            await store.PutAsync($"k{i % 10}", Bytes("x"));
        }

        var error = Assert.Throws<StoreCompactedException>(() => store.WatchAsync("", 4));
        Assert.Equal((4L, 5L), (error.AfterRevision, error.CompactedRevision));
        Assert.Equal("the store has compacted its history past revision 4 (kept from 5); list again and watch from the listing's revision", error.Message);

        using var cts = new CancellationTokenSource();
        await using var watch = store.WatchAsync("", 5, cts.Token).GetAsyncEnumerator();
        var replayed = await TakeAsync(watch, EmbeddedClusterStore.HistoryLimit);
        Assert.Equal(Enumerable.Range(6, EmbeddedClusterStore.HistoryLimit).Select(r => (long)r), replayed.Select(e => e.Revision));
    }

    [Fact]
    public async Task WatchFromAFutureRevision_SkipsUntilThen()
    {
        await using var store = new EmbeddedClusterStore(_time);
        using var cts = new CancellationTokenSource();
        await using var watch = store.WatchAsync("", 2, cts.Token).GetAsyncEnumerator();

        await store.PutAsync("a", Bytes("1"));
        await store.PutAsync("a", Bytes("2"));
        await store.PutAsync("a", Bytes("3"));

        var e = Assert.Single(await TakeAsync(watch, 1));
        Assert.Equal(3, e.Revision);
    }

    [Fact]
    public async Task CancellingAWatch_EndsIt()
    {
        await using var store = new EmbeddedClusterStore(_time);
        using var cts = new CancellationTokenSource();
        await using var watch = store.WatchAsync("", 0, cts.Token).GetAsyncEnumerator();
        var next = watch.MoveNextAsync();

        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await next);
    }

    [Fact]
    public async Task Dispose_CompletesWatches_AndRefusesFurtherCalls()
    {
        var store = new EmbeddedClusterStore(_time);
        await store.PutAsync("a", Bytes("1"));
        await using var watch = store.WatchAsync("", 0).GetAsyncEnumerator();
        Assert.Single(await TakeAsync(watch, 1));
        var next = watch.MoveNextAsync();

        await store.DisposeAsync();
        await store.DisposeAsync();

        Assert.False(await next.AsTask().WaitAsync(WatchTimeout));
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await store.GetAsync("a"));
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await store.GetRevisionAsync());
    }

    [Fact]
    public async Task RandomPutCasDeleteSequences_MatchADictionaryModel()
    {
        var genOp = Gen.Select(Gen.Int[0, 2], Gen.Int[0, 3], Gen.Byte.Array[0, 3], Gen.Int[0, 3], Gen.Int[1, 20], (kind, key, value, expect, arbitrary) =>
            new Op(kind == 2 ? "delete" : "put", $"k{key}", value, expect, arbitrary));

        await genOp.Array[1, 60].SampleAsync(
            async ops =>
            {
                await using var store = new EmbeddedClusterStore(new ManualTimeProvider());
                var model = new Dictionary<string, (byte[] Value, long Create, long Mod)>();
                long revision = 0;

                foreach (var op in ops)
                {
                    var exists = model.TryGetValue(op.Key, out var current);
                    long? expected = op.Expect switch
                    {
                        0 => null,
                        1 => 0,
                        2 when exists => current.Mod,
                        _ => op.Arbitrary,
                    };
                    var matches = expected switch
                    {
                        null => true,
                        0 => !exists,
                        { } e => exists && current.Mod == e,
                    };

                    if (op.Kind == "put")
                    {
                        var result = await store.PutAsync(op.Key, op.Value, expected);
                        if (matches)
                        {
                            revision++;
                            model[op.Key] = (op.Value, exists ? current.Create : revision, revision);
                            Assert.Equal(new PutResult(true, revision), result);
                        }
                        else
                        {
                            Assert.Equal(new PutResult(false, exists ? current.Mod : 0), result);
                        }
                    }
                    else
                    {
                        var deleted = await store.DeleteAsync(op.Key, expected);
                        Assert.Equal(exists && matches, deleted);
                        if (deleted)
                        {
                            revision++;
                            model.Remove(op.Key);
                        }
                    }

                    Assert.Equal(revision, await store.GetRevisionAsync());
                    var listed = await store.ListAsync("");
                    Assert.Equal(
                        model.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => (p.Key, Convert.ToHexString(p.Value.Value), p.Value.Create, p.Value.Mod)),
                        listed.Entries.Select(e => (e.Key, Convert.ToHexString(e.Value.Span), e.CreateRevision, e.ModRevision)));
                }
            },
            iter: 500);
    }

    private sealed record Op(string Kind, string Key, byte[] Value, int Expect, int Arbitrary);

    /// <summary>A clock whose timers never fire: only the store's on-call expiry check can end a session.</summary>
    private sealed class TimerlessTimeProvider : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = new(2025, 1, 1, 0, 0, 0, TimeSpan.Zero);

        public override DateTimeOffset GetUtcNow() => Now;

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) => new InertTimer();

        private sealed class InertTimer : ITimer
        {
            public bool Change(TimeSpan dueTime, TimeSpan period) => true;

            public void Dispose()
            {
            }

            public ValueTask DisposeAsync() => ValueTask.CompletedTask;
        }
    }
}
