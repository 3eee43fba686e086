using System.Diagnostics;
using System.Text;
using GpuPool.Coordination.Etcd;
using GpuPool.Testing.Etcd;

namespace GpuPool.Coordination.Tests.Etcd;

/// <summary>The etcd driver against a three-member cluster whose members die: each test starts its own cluster.</summary>
public sealed class EtcdClusterFailoverTests
{
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task AMemberKilled_TheStoreKeepsWorkingOnTheOthers_WithoutAFailedCall()
    {
        // A write sent on the dead member's connection in the instant before the store saw it close fails as unavailable
        // (it may have been applied); reads fail over whatever happens. So a read goes first, and moves the store off.

        await using var cluster = await EtcdCluster.StartAsync(3);

        // The member killed is the one the store talks to, and a follower: no write of ours is in flight on a dying leader.
        await cluster.TransferLeadershipAsync(1);
        await using var store = Store(cluster, 0, 1, 2);
        var session = await store.CreateSessionAsync(TimeSpan.FromSeconds(10));
        var first = await store.PutAsync("a", Bytes("1"), sessionId: session.Id);

        cluster.Members[0].Kill();

        Assert.Equal("1", Encoding.UTF8.GetString((await store.GetAsync("a"))!.Value.Span));
        var second = await store.PutAsync("a", Bytes("2"), expectedModRevision: first.ModRevision, sessionId: session.Id);
        Assert.True(second.Succeeded);
        Assert.Equal("2", Encoding.UTF8.GetString((await store.GetAsync("a"))!.Value.Span));
        Assert.True(await store.KeepAliveAsync(session.Id));
        var txn = await store.TransactAsync([new TxnCheck("a", second.ModRevision), TxnCheck.Absent("b")], [TxnWrite.Put("b", Bytes("b")), TxnWrite.Delete("a")]);
        Assert.True(txn.Succeeded);
        Assert.Equal(["b"], (await store.ListAsync("")).Entries.Select(e => e.Key));
        Assert.True(await store.GetRevisionAsync() >= txn.Revision);
        await store.RevokeSessionAsync(session.Id);
        Assert.False(await store.KeepAliveAsync(session.Id));
    }

    [Fact]
    public async Task TheLeaderKilled_WritesResumeOnTheOthers_AndNoCallHangs()
    {
        await using var cluster = await EtcdCluster.StartAsync(3);
        var leader = await cluster.LeaderIndexAsync();
        await using var store = Store(cluster, leader, (leader + 1) % 3, (leader + 2) % 3);
        await store.PutAsync("k", Bytes("before"));

        cluster.Members[leader].Kill();

        // Writes in flight on the dying leader may fail as unavailable (applied or not); none may hang, and they resume.
        var clock = Stopwatch.StartNew();
        var successes = 0;
        while (successes < 10)
        {
            Assert.True(clock.Elapsed < Patience, $"writes did not resume within {Patience} of the leader's death");
            var call = Stopwatch.StartNew();
            try
            {
                await store.PutAsync("k", Bytes($"after {successes}"));
                successes++;
            }
            catch (StoreUnavailableException)
            {
                Assert.Equal(0, successes);
            }

            Assert.True(call.Elapsed < RequestTimeout + TimeSpan.FromSeconds(1), $"one put took {call.Elapsed}");
        }

        Assert.Equal("after 9", Encoding.UTF8.GetString((await store.GetAsync("k"))!.Value.Span));
        Assert.NotEqual(leader, await cluster.LeaderIndexAsync());
    }

    [Fact]
    public async Task AWatch_SurvivesTheMemberItStreamsFromBeingKilled_WithoutLosingOrRepeatingEvents()
    {
        await using var cluster = await EtcdCluster.StartAsync(3);
        await cluster.TransferLeadershipAsync(1);
        await using var watching = Store(cluster, 0, 1, 2);
        await using var writing = Store(cluster, 1, 2);
        using var cts = new CancellationTokenSource();
        await using var watch = watching.WatchAsync("w/", await writing.GetRevisionAsync(), cts.Token).GetAsyncEnumerator();

        var puts = new List<long>();
        for (var i = 0; i < 20; i++)
        {
            puts.Add((await writing.PutAsync($"w/{i % 3}", Bytes($"{i}"))).ModRevision);
        }

        // Half the events are taken from member 0's stream; the rest may sit in its socket when it dies.
        var events = await TakeAsync(watch, 10);
        cluster.Members[0].Kill();
        for (var i = 20; i < 40; i++)
        {
            puts.Add((await writing.PutAsync($"w/{i % 3}", Bytes($"{i}"))).ModRevision);
        }

        events.AddRange(await TakeAsync(watch, 30));

        Assert.Equal(puts, events.Select(e => e.Revision));
        Assert.Equal(Enumerable.Range(0, 40).Select(i => $"{i}"), events.Select(e => Encoding.UTF8.GetString(e.Entry.Value.Span)));
        var last = await writing.PutAsync("w/last", Bytes("last"));
        Assert.Equal(last.ModRevision, Assert.Single(await TakeAsync(watch, 1)).Revision);
    }

    [Fact]
    public async Task EveryMemberDown_CallsAndWatchesFailWithStoreUnavailable_WithinTheTimeout()
    {
        await using var cluster = await EtcdCluster.StartAsync(3);
        await using var store = Store(cluster, 0, 1, 2);
        var session = await store.CreateSessionAsync(TimeSpan.FromSeconds(10));
        using var cts = new CancellationTokenSource();
        await using var watch = store.WatchAsync("", await store.GetRevisionAsync(), cts.Token).GetAsyncEnumerator();
        await store.PutAsync("k", Bytes("1"));
        Assert.Single(await TakeAsync(watch, 1));
        var pending = watch.MoveNextAsync();

        foreach (var member in cluster.Members)
        {
            member.Kill();
        }

        var calls = new Func<Task>[]
        {
            async () => await store.GetAsync("k"),
            async () => await store.PutAsync("k", Bytes("2")),
            async () => await store.KeepAliveAsync(session.Id),
            async () => await store.CreateSessionAsync(TimeSpan.FromSeconds(5)),
            async () => await pending,
        };
        var outcomes = await Task.WhenAll(calls.Select(async call =>
        {
            var clock = Stopwatch.StartNew();
            var error = await Assert.ThrowsAsync<StoreUnavailableException>(call);
            return (error, clock.Elapsed);
        }));

        foreach (var (error, elapsed) in outcomes)
        {
            Assert.True(elapsed < RequestTimeout + TimeSpan.FromSeconds(2), $"a call took {elapsed} to fail");
            // All of them when no member answered; the one that died under it for a write in flight.
            Assert.Contains(cluster.Members, m => error.Message.Contains(m.ClientUrl, StringComparison.Ordinal));
        }
    }

    private static EtcdClusterStore Store(EtcdCluster cluster, params int[] order) => new(new EtcdClusterStoreOptions
    {
        Endpoints = [.. order.Select(i => cluster.Members[i].ClientUrl)],
        KeyPrefix = "failover/",
        RequestTimeout = RequestTimeout,
        ConnectTimeout = TimeSpan.FromSeconds(1),
    });

    private static byte[] Bytes(string s) => Encoding.UTF8.GetBytes(s);

    private static async Task<List<WatchEvent>> TakeAsync(IAsyncEnumerator<WatchEvent> watch, int count)
    {
        var events = new List<WatchEvent>();
        while (events.Count < count)
        {
            Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(Patience), "the watch ended");
            events.Add(watch.Current);
        }

        return events;
    }
}
