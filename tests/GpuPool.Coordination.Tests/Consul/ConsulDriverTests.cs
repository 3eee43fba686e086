using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using GpuPool.Coordination.Consul;
using GpuPool.Coordination.Consul.Internal;

namespace GpuPool.Coordination.Tests.Consul;

/// <summary>
/// What the Consul driver decides on its own, without a Consul: which verbs a write needs, what a rolled-back
/// transaction means, how listings become watch events, how TTLs are rounded, which keys and options it refuses,
/// and that an unreachable agent is reported as unavailable within a bounded time.
/// </summary>
public sealed class ConsulDriverTests
{
    private const string S1 = "11111111-1111-1111-1111-111111111111";
    private const string S2 = "22222222-2222-2222-2222-222222222222";

    [Fact]
    public void Put_WithoutASession_OnAFreeOrAbsentKey_IsACasAtTheReadIndex()
    {
        Assert.Equal([("cas", 0UL, null)], Plan(TxnWrite.Put("k", "v"u8.ToArray()), null));
        Assert.Equal([("cas", 7UL, null)], Plan(TxnWrite.Put("k", "v"u8.ToArray()), new ConsulKeyState(7, null)));
    }

    [Fact]
    public void Put_WithoutASession_OnAHeldKey_UnlocksItWithTheHolder()
    {
        // Consul's set and cas keep the holder: unlock is the verb that writes the value and frees the key.
        Assert.Equal([("unlock", null, S1)], Plan(TxnWrite.Put("k", "v"u8.ToArray()), new ConsulKeyState(7, S1)));
        Assert.Equal([("check-index", 7UL, null), ("unlock", null, S1)], Plan(TxnWrite.Put("k", "v"u8.ToArray()), new ConsulKeyState(7, S1), strict: true));
    }

    [Fact]
    public void Put_WithASession_LocksTheKey_AfterUnlockingAnotherHolder()
    {
        Assert.Equal([("lock", null, S1)], Plan(TxnWrite.Put("k", "v"u8.ToArray(), S1), null));
        Assert.Equal([("lock", null, S1)], Plan(TxnWrite.Put("k", "v"u8.ToArray(), S1), new ConsulKeyState(7, null)));
        Assert.Equal([("lock", null, S1)], Plan(TxnWrite.Put("k", "v"u8.ToArray(), S1), new ConsulKeyState(7, S1)));
        Assert.Equal([("unlock", null, S2), ("lock", null, S1)], Plan(TxnWrite.Put("k", "v"u8.ToArray(), S1), new ConsulKeyState(7, S2)));
    }

    [Fact]
    public void StrictPuts_GuardTheReadState_BeforeLocking()
    {
        Assert.Equal([("check-not-exists", null, null), ("lock", null, S1)], Plan(TxnWrite.Put("k", "v"u8.ToArray(), S1), null, strict: true));
        Assert.Equal([("check-index", 7UL, null), ("unlock", null, S2), ("lock", null, S1)], Plan(TxnWrite.Put("k", "v"u8.ToArray(), S1), new ConsulKeyState(7, S2), strict: true));
    }

    [Fact]
    public void Deletes_NeedNoRead_AndChecksComeFirst_InTheirOrder()
    {
        var ops = ConsulTxnPlanner.Plan([TxnCheck.Absent("b"), new TxnCheck("a", 3)], [TxnWrite.Delete("a")], _ => throw new InvalidOperationException("no read"), strict: false);

        Assert.Equal([("check-not-exists", "b", ConsulOpRole.Check, 0), ("check-index", "a", ConsulOpRole.Check, 1), ("delete", "a", ConsulOpRole.Write, 0)], ops.Select(o => (o.Verb, o.Key, o.Role, o.Source)));
    }

    [Fact]
    public void Classify_IgnoresGuardFailures_AndErrorsOutsideTheOperations()
    {
        var ops = ConsulTxnPlanner.Plan([new TxnCheck("a", 3)], [TxnWrite.Put("b", "v"u8.ToArray())], _ => new ConsulKeyState(9, null), strict: false);

        var failure = ConsulTxnPlanner.Classify(ops, [new ConsulTxnError { OpIndex = 1, What = "failed to set key \"b\", index is stale" }, new ConsulTxnError { OpIndex = 9, What = "?" }]);

        Assert.Empty(failure.FailedChecks);
        Assert.Empty(failure.LockSessions);
        Assert.Contains("index is stale", failure.Summary, StringComparison.Ordinal);
    }

    [Fact]
    public void WatchDiff_TurnsTwoListingsIntoPutsThenDeletes_InIndexOrder()
    {
        var before = Listing(Entry("a", 1, 1), Entry("b", 2, 2), Entry("c", 3, 3));
        KvEntry[] after = [Entry("a", 1, 1), Entry("c", 3, 6), Entry("d", 5, 5)];

        var events = ConsulWatchDiff.Diff(before, after, beforeIndex: 3, afterIndex: 7);

        Assert.Equal([(WatchEventKind.Put, "d", 5L), (WatchEventKind.Put, "c", 6L), (WatchEventKind.Delete, "b", 7L)], events.Select(e => (e.Kind, e.Entry.Key, e.Revision)));
        Assert.Equal(("b-value", 7L, 2L), (Encoding.UTF8.GetString(events[2].Entry.Value.Span), events[2].Entry.ModRevision, events[2].Entry.CreateRevision));
    }

    [Fact]
    public void WatchDiff_SeesAKeyDeletedAndCreatedAgainAsAPut_AndKeepsDeletesAboveThePreviousListing()
    {
        var before = Listing(Entry("a", 4, 4), Entry("b", 2, 2));

        // Index 3 < 4: Consul's index went backwards (a snapshot restore, a reaped tombstone).
        var events = ConsulWatchDiff.Diff(before, [Entry("a", 3, 3)], beforeIndex: 4, afterIndex: 3);

        Assert.Equal([(WatchEventKind.Put, "a", 3L), (WatchEventKind.Delete, "b", 5L)], events.Select(e => (e.Kind, e.Entry.Key, e.Revision)));
        Assert.Empty(ConsulWatchDiff.Diff(before, [Entry("a", 4, 4), Entry("b", 2, 2)], 4, 9));
    }

    [Fact]
    public void SessionTtls_AreWholeSeconds_AtLeastTheServersMinimum()
    {
        var min = TimeSpan.FromSeconds(10);

        Assert.Equal(TimeSpan.FromSeconds(10), ConsulClusterStore.EffectiveSessionTtl(TimeSpan.FromMilliseconds(1), min));
        Assert.Equal(TimeSpan.FromSeconds(10), ConsulClusterStore.EffectiveSessionTtl(TimeSpan.FromSeconds(10), min));
        Assert.Equal(TimeSpan.FromSeconds(11), ConsulClusterStore.EffectiveSessionTtl(TimeSpan.FromSeconds(10.001), min));
        Assert.Equal(TimeSpan.FromSeconds(2), ConsulClusterStore.EffectiveSessionTtl(TimeSpan.FromSeconds(1.5), TimeSpan.FromSeconds(1)));
    }

    [Theory]
    [InlineData("/a")]
    [InlineData("a//b")]
    [InlineData("a/../b")]
    [InlineData("a/./b")]
    [InlineData("..")]
    [InlineData(" a")]
    [InlineData("a\nb")]
    public async Task KeysThatUrlsOrConsulWouldChange_AreRefused_BeforeAnyRequest(string key)
    {
        // An address nothing listens on: a refusal must come before any request.
        await using var store = new ConsulClusterStore(new ConsulStoreOptions { Address = new Uri($"http://127.0.0.1:{ClosedPort()}") });

        await Assert.ThrowsAsync<ArgumentException>(async () => await store.GetAsync(key));
        await Assert.ThrowsAsync<ArgumentException>(async () => await store.PutAsync(key, "v"u8.ToArray()));
        await Assert.ThrowsAsync<ArgumentException>(async () => await store.TransactAsync([], [TxnWrite.Delete(key)]));
    }

    [Fact]
    public async Task InvalidArguments_AreRefused_LikeTheOtherDrivers_BeforeAnyRequest()
    {
        await using var store = new ConsulClusterStore(new ConsulStoreOptions { Address = new Uri($"http://127.0.0.1:{ClosedPort()}") });

        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await store.CreateSessionAsync(TimeSpan.Zero));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await store.CreateSessionAsync(TimeSpan.FromDays(2)));
        await Assert.ThrowsAsync<StoreSessionNotFoundException>(async () => await store.PutAsync("k", "v"u8.ToArray(), sessionId: "0123456789abcdef"));
        await Assert.ThrowsAsync<ArgumentException>(async () => await store.TransactAsync([], [TxnWrite.Put("d", "1"u8.ToArray()), TxnWrite.Delete("d")]));
        Assert.False(await store.KeepAliveAsync("0123456789abcdef"));
        await store.RevokeSessionAsync("0123456789abcdef");
        Assert.False(await store.DeleteAsync("k", expectedModRevision: 0));
    }

    [Fact]
    public async Task AnAgentThatRefusesConnections_IsUnavailable_AtOnce_AndTheErrorNamesIt()
    {
        var address = new Uri($"http://127.0.0.1:{ClosedPort()}");
        await using var store = new ConsulClusterStore(new ConsulStoreOptions { Address = address, RequestTimeout = TimeSpan.FromSeconds(5) });
        var clock = Stopwatch.StartNew();

        var error = await Assert.ThrowsAsync<StoreUnavailableException>(async () => await store.GetAsync("k"));
        await Assert.ThrowsAsync<StoreUnavailableException>(async () => await store.PutAsync("k", "v"u8.ToArray()));
        await Assert.ThrowsAsync<StoreUnavailableException>(async () => await store.CreateSessionAsync(TimeSpan.FromSeconds(10)));
        await Assert.ThrowsAsync<StoreUnavailableException>(async () => await store.WatchAsync("", 0).GetAsyncEnumerator().MoveNextAsync());

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed}");
        Assert.Contains(address.ToString(), error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnAgentThatNeverAnswers_IsUnavailable_AfterTheRequestTimeout()
    {
        // Accepts connections and reads nothing: a hung agent, not a Consul.
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var accepted = new ConcurrentBag<Socket>();
        var accepting = Task.Run(async () =>
        {
            while (true)
            {
                accepted.Add(await silent.AcceptSocketAsync());
            }
        });
        var address = new Uri($"http://127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}");
        await using var store = new ConsulClusterStore(new ConsulStoreOptions { Address = address, RequestTimeout = TimeSpan.FromMilliseconds(300) });
        var clock = Stopwatch.StartNew();

        var error = await Assert.ThrowsAsync<StoreUnavailableException>(async () => await store.GetRevisionAsync());

        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(5));
        Assert.Contains("did not answer", error.Message, StringComparison.Ordinal);
        Assert.Contains(address.ToString(), error.Message, StringComparison.Ordinal);
        silent.Stop();
        foreach (var socket in accepted)
        {
            socket.Dispose();
        }

        await Assert.ThrowsAnyAsync<Exception>(() => accepting);
    }

    [Fact]
    public void Addresses_ComeFromOptionsOrTheEnvironment_AsConsulWritesThem()
    {
        Assert.Equal(new Uri("http://10.0.0.1:8500"), ConsulStoreOptions.ParseAddress("10.0.0.1:8500"));
        Assert.Equal(new Uri("https://consul.internal:8501"), ConsulStoreOptions.ParseAddress("https://consul.internal:8501"));
        var bad = Assert.Throws<ArgumentException>(() => ConsulStoreOptions.ParseAddress("ftp://x:1", ConsulStoreOptions.AddressVariable));
        Assert.Contains(ConsulStoreOptions.AddressVariable, bad.Message, StringComparison.Ordinal);
        Assert.Equal(new Uri("http://127.0.0.1:1"), new ConsulStoreOptions { Address = new Uri("http://127.0.0.1:1") }.ResolveAddress());
    }

    [Fact]
    public void BadOptions_AreRefused_NamingTheField()
    {
        Assert.Contains(nameof(ConsulStoreOptions.WatchWait), Assert.ThrowsAny<ArgumentException>(() => new ConsulClusterStore(new ConsulStoreOptions { WatchWait = TimeSpan.FromMinutes(11) })).Message, StringComparison.Ordinal);
        Assert.Contains(nameof(ConsulStoreOptions.LockDelay), Assert.ThrowsAny<ArgumentException>(() => new ConsulClusterStore(new ConsulStoreOptions { LockDelay = TimeSpan.FromSeconds(-1) })).Message, StringComparison.Ordinal);
        Assert.Contains(nameof(ConsulStoreOptions.RequestTimeout), Assert.ThrowsAny<ArgumentException>(() => new ConsulClusterStore(new ConsulStoreOptions { RequestTimeout = TimeSpan.Zero })).Message, StringComparison.Ordinal);
    }

    private static List<(string Verb, ulong? Index, string? Session)> Plan(TxnWrite write, ConsulKeyState? current, bool strict = false) =>
        [.. ConsulTxnPlanner.Plan([], [write], _ => current, strict).Select(o => (o.Verb, o.Op.KV!.Index, o.Session))];

    private static KvEntry Entry(string key, long create, long mod) => new(key, Encoding.UTF8.GetBytes(key + "-value"), create, mod, null);

    private static Dictionary<string, KvEntry> Listing(params KvEntry[] entries) => entries.ToDictionary(e => e.Key, StringComparer.Ordinal);

    /// <summary>A loopback port nothing listens on (it was free a moment ago).</summary>
    private static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
