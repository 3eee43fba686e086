using System.Text;
using GpuPool.Coordination.Embedded;

namespace GpuPool.Coordination.Tests;

/// <summary>The embedded store kept in a file: what a restart keeps, what a crash may cost, and what damage does.</summary>
public sealed partial class EmbeddedPersistenceTests : IDisposable
{
    private static readonly TimeSpan Ttl = TimeSpan.FromSeconds(10);

    private readonly ManualTimeProvider _time = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("gpupool-store-").FullName;

    private string StorePath => Path.Combine(_dir, "store", "embedded.db");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Open_CreatesTheFileAndItsFolder_AndANewStoreStartsAtRevisionZero()
    {
        await using (var store = Open())
        {
            Assert.Equal(0, await store.GetRevisionAsync());
            Assert.Equal(StorePath, store.FilePath);
            Assert.Empty(store.RecoveryWarnings);
        }

        Assert.StartsWith("GPSTORE", Encoding.ASCII.GetString(File.ReadAllBytes(StorePath)), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Reopen_KeepsEveryEntry_WithItsRevisions_AndTheRevisionCarriesOn()
    {
        await using (var store = Open())
        {
            await store.PutAsync("a", Bytes("1"));
            await store.PutAsync("b", Bytes("1"));
            await store.PutAsync("a", Bytes("2"));
            Assert.True(await store.DeleteAsync("b"));
            await store.PutAsync("bin", new byte[] { 0, 255, 10, 13, 0 });
            await store.PutAsync("empty", ReadOnlyMemory<byte>.Empty);
            await store.PutAsync("unicode/é/日本", Bytes("ü"));
            Assert.False((await store.PutAsync("a", Bytes("stale"), expectedModRevision: 1)).Succeeded);
        }

        await using var reopened = Open();

        Assert.Empty(reopened.RecoveryWarnings);
        Assert.Equal(7, await reopened.GetRevisionAsync());
        Assert.Equal(
            [("a", "32", 1L, 3L), ("bin", "00FF0A0D00", 5L, 5L), ("empty", "", 6L, 6L), ("unicode/é/日本", "C3BC", 7L, 7L)],
            (await reopened.ListAsync("")).Entries.Select(e => (e.Key, Convert.ToHexString(e.Value.Span), e.CreateRevision, e.ModRevision)));
        Assert.Equal(new PutResult(true, 8), await reopened.PutAsync("a", Bytes("3"), expectedModRevision: 3));
        Assert.Equal(1, (await reopened.GetAsync("a"))!.CreateRevision);
    }

    [Fact]
    public async Task Sessions_SurviveAReopen_AndEndOneTtlAfterIt_WithoutKeepalives()
    {
        string sessionId;
        await using (var store = Open())
        {
            sessionId = (await store.CreateSessionAsync(Ttl)).Id;
            await store.PutAsync("lease/1", Bytes("held"), sessionId: sessionId);
            await store.PutAsync("quota/t", Bytes("100"));

            // 9 of its 10 seconds gone when the process stops; it stays down for a minute.
            _time.Advance(TimeSpan.FromSeconds(9));
        }

        _time.Advance(TimeSpan.FromMinutes(1));
        await using var reopened = Open();

        Assert.Equal(sessionId, (await reopened.GetAsync("lease/1"))!.SessionId);
        _time.Advance(Ttl - TimeSpan.FromSeconds(1));
        Assert.NotNull(await reopened.GetAsync("lease/1"));
        var revision = await reopened.GetRevisionAsync();

        _time.Advance(TimeSpan.FromSeconds(1));

        Assert.Null(await reopened.GetAsync("lease/1"));
        Assert.NotNull(await reopened.GetAsync("quota/t"));
        Assert.Equal(revision + 1, await reopened.GetRevisionAsync());
        Assert.False(await reopened.KeepAliveAsync(sessionId));
    }

    [Fact]
    public async Task KeepalivesAfterAReopen_KeepTheSession_AndNewKeysMayBindToIt()
    {
        string sessionId;
        await using (var store = Open())
        {
            sessionId = (await store.CreateSessionAsync(Ttl)).Id;
            await store.PutAsync("lease/1", Bytes("held"), sessionId: sessionId);
        }

        await using var reopened = Open();
        for (var i = 0; i < 5; i++)
        {
            _time.Advance(Ttl * 0.6);
            Assert.True(await reopened.KeepAliveAsync(sessionId));
        }

        Assert.True((await reopened.PutAsync("lease/2", Bytes("held"), sessionId: sessionId)).Succeeded);
        Assert.Equal(["lease/1", "lease/2"], (await reopened.ListAsync("lease/")).Entries.Select(e => e.Key));

        await reopened.RevokeSessionAsync(sessionId);
        Assert.Empty((await reopened.ListAsync("lease/")).Entries);
    }

    [Fact]
    public async Task SessionsThatEnded_StayEnded_WhetherRevokedOrExpired()
    {
        string revoked, expired;
        long revision;
        await using (var store = Open())
        {
            revoked = (await store.CreateSessionAsync(Ttl)).Id;
            expired = (await store.CreateSessionAsync(Ttl)).Id;
            var kept = (await store.CreateSessionAsync(Ttl * 3)).Id;
            await store.PutAsync("r", Bytes("1"), sessionId: revoked);
            await store.PutAsync("e1", Bytes("1"), sessionId: expired);
            await store.PutAsync("e2", Bytes("1"), sessionId: expired);
            await store.PutAsync("k", Bytes("1"), sessionId: kept);
            await store.RevokeSessionAsync(revoked);

            // Only the clock moves: the expiry comes from the store's own timer, and is logged too.
            _time.Advance(Ttl);
            revision = await store.GetRevisionAsync();
            Assert.Equal(7, revision);
        }

        await using var reopened = Open();

        Assert.Equal(revision, await reopened.GetRevisionAsync());
        Assert.Equal(["k"], (await reopened.ListAsync("")).Entries.Select(e => e.Key));
        Assert.False(await reopened.KeepAliveAsync(revoked));
        Assert.False(await reopened.KeepAliveAsync(expired));
        await Assert.ThrowsAsync<StoreSessionNotFoundException>(async () => await reopened.PutAsync("x", Bytes("1"), sessionId: expired));
    }

    [Fact]
    public async Task Transactions_SurviveAReopen_Whole_AtOneRevision()
    {
        await using (var store = Open())
        {
            var session = await store.CreateSessionAsync(Ttl);
            await store.PutAsync("free/0", Bytes("1"));
            var free = await store.PutAsync("free/1", Bytes("1"));
            var result = await store.TransactAsync(
                [new TxnCheck("free/1", free.ModRevision), TxnCheck.Absent("lease/1")],
                [TxnWrite.Delete("free/1"), TxnWrite.Put("lease/1", Bytes("gpu1"), session.Id), TxnWrite.Put("usage/t", Bytes("1")), TxnWrite.Delete("never-there")]);
            Assert.Equal((true, 3L), (result.Succeeded, result.Revision));
        }

        await using var reopened = Open();

        Assert.Equal(3, await reopened.GetRevisionAsync());
        Assert.Equal(
            [("free/0", 1L), ("lease/1", 3L), ("usage/t", 3L)],
            (await reopened.ListAsync("")).Entries.Select(e => (e.Key, e.ModRevision)));
        Assert.NotNull((await reopened.GetAsync("lease/1"))!.SessionId);
    }

    [Fact]
    public async Task ATransactionCutShortByACrash_IsDroppedWhole()
    {
        long before;
        await using (var store = Open())
        {
            await store.PutAsync("free/1", Bytes("1"));
            before = FileLength();
            await store.TransactAsync([], [TxnWrite.Delete("free/1"), TxnWrite.Put("lease/1", Bytes("gpu1")), TxnWrite.Put("usage/t", Bytes("1"))]);
        }

        var after = FileLength();
        Truncate(before + ((after - before) / 2));
        await using var reopened = Open();

        Assert.Equal(1, await reopened.GetRevisionAsync());
        Assert.Equal(["free/1"], (await reopened.ListAsync("")).Entries.Select(e => e.Key));
        Assert.Contains($"at byte {before}", Assert.Single(reopened.RecoveryWarnings), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(1)] // a header cut short
    [InlineData(11)]
    [InlineData(12)] // a whole header, no payload
    [InlineData(20)]
    [InlineData(-1)] // all but the last byte
    public async Task ALastRecordCutShort_IsDroppedWithAWarning_AndTheStoreCarriesOnFromThere(int keep)
    {
        long before;
        await using (var store = Open())
        {
            await store.PutAsync("a", Bytes("1"));
            await store.PutAsync("b", Bytes("1"));
            before = FileLength();
            await store.PutAsync("c", Bytes("a value long enough to cut anywhere"));
        }

        Truncate(keep > 0 ? before + keep : FileLength() + keep);

        await using (var reopened = Open())
        {
            var warning = Assert.Single(reopened.RecoveryWarnings);
            Assert.Contains(StorePath, warning, StringComparison.Ordinal);
            Assert.Contains($"at byte {before}", warning, StringComparison.Ordinal);
            Assert.Equal(before, FileLength());
            Assert.Equal(["a", "b"], (await reopened.ListAsync("")).Entries.Select(e => e.Key));
            Assert.Equal(new PutResult(true, 3), await reopened.PutAsync("d", Bytes("1")));
        }

        await using var again = Open();
        Assert.Empty(again.RecoveryWarnings);
        Assert.Equal(["a", "b", "d"], (await again.ListAsync("")).Entries.Select(e => e.Key));
    }

    [Theory]
    [InlineData("zeros")]
    [InlineData("garbage")]
    [InlineData("last byte flipped")]
    public async Task ADamagedTail_WithNoWholeRecordAfterIt_IsDroppedWithAWarning(string damage)
    {
        long before;
        await using (var store = Open())
        {
            await store.PutAsync("a", Bytes("1"));
            before = FileLength();
            await store.PutAsync("b", Bytes("1"));
        }

        var bytes = File.ReadAllBytes(StorePath);
        switch (damage)
        {
            case "zeros":
                File.WriteAllBytes(StorePath, [.. bytes, .. new byte[4096]]);
                before = bytes.Length;
                break;
            case "garbage":
                File.WriteAllBytes(StorePath, [.. bytes, .. Encoding.ASCII.GetBytes("half of a record that never finished")]);
                before = bytes.Length;
                break;
            default:
                bytes[^1] ^= 0x40;
                File.WriteAllBytes(StorePath, bytes);
                break;
        }

        await using var reopened = Open();

        Assert.Contains($"at byte {before}", Assert.Single(reopened.RecoveryWarnings), StringComparison.Ordinal);
        Assert.Equal(before, FileLength());
        Assert.Equal(damage == "last byte flipped" ? ["a"] : ["a", "b"], (await reopened.ListAsync("")).Entries.Select(e => e.Key));
    }

    [Theory]
    [InlineData(0)] // the length
    [InlineData(9)] // the header's checksum
    [InlineData(14)] // the payload
    public async Task DamageInTheMiddle_FailsTheOpen_NamingTheFileAndOffset_AndLeavesTheFileAlone(int at)
    {
        long second;
        await using (var store = Open())
        {
            await store.PutAsync("a", Bytes("1"));
            second = FileLength();
            await store.PutAsync("b", Bytes("2"));
            await store.PutAsync("c", Bytes("3"));
        }

        var bytes = File.ReadAllBytes(StorePath);
        bytes[second + at] ^= 0x01;
        File.WriteAllBytes(StorePath, bytes);

        var error = Assert.Throws<EmbeddedStoreCorruptException>(() => Open());

        Assert.Equal((StorePath, second), (error.FilePath, error.Offset));
        Assert.StartsWith($"the embedded store file '{StorePath}' is damaged at byte {second}: ", error.Message, StringComparison.Ordinal);
        Assert.EndsWith("It was left as it is: restore it from a backup, or move it aside to start with an empty store", error.Message, StringComparison.Ordinal);
        Assert.Equal(bytes, File.ReadAllBytes(StorePath));

        // Nothing stays locked after the failed open.
        File.Delete(StorePath);
        await using var fresh = Open();
    }

    [Fact]
    public void AFileThatIsNotAStore_FailsTheOpen_AndIsLeftAlone()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(StorePath)!);
        File.WriteAllText(StorePath, "quota: 100\n");

        var error = Assert.Throws<EmbeddedStoreCorruptException>(() => Open());

        Assert.Equal(0, error.Offset);
        Assert.Contains("does not start with the GpuPool store header", error.Message, StringComparison.Ordinal);
        Assert.Equal("quota: 100\n", File.ReadAllText(StorePath));
    }

    [Fact]
    public async Task Compaction_RewritesTheFileAsASnapshot_AndKeepsEverything()
    {
        const int threshold = 4096;
        long written = 0;
        string sessionId;
        IReadOnlyList<KvEntry> entries;
        long revision;
        long largest = 0;
        await using (var store = Open(threshold))
        {
            sessionId = (await store.CreateSessionAsync(Ttl)).Id;
            await store.PutAsync("bound", Bytes("held"), sessionId: sessionId);
            for (var i = 0; i < 2000; i++)
            {
                var before = FileLength();
                var value = Bytes(new string((char)('a' + (i % 26)), i % 50));
                if (i % 7 == 3)
                {
                    await store.DeleteAsync($"k{(i * 13) % 40}");
                }
                else if (i % 11 == 5)
                {
                    await store.TransactAsync([], [TxnWrite.Put($"k{i % 40}", value), TxnWrite.Put($"t{i % 3}", value, sessionId)]);
                }
                else
                {
                    await store.PutAsync($"k{i % 40}", value);
                }

                written += Math.Max(0, FileLength() - before);
                largest = Math.Max(largest, FileLength());
            }

            entries = (await store.ListAsync("")).Entries;
            revision = await store.GetRevisionAsync();
        }

        Assert.True(written > 10 * threshold, $"only {written} bytes were logged");
        Assert.True(largest < 3 * threshold, $"the file grew to {largest} bytes");
        Assert.False(File.Exists(StorePath + ".compact"));

        await using var reopened = Open(threshold);

        Assert.Empty(reopened.RecoveryWarnings);
        Assert.Equal(revision, await reopened.GetRevisionAsync());
        Assert.Equal(
            entries.Select(e => (e.Key, Convert.ToHexString(e.Value.Span), e.CreateRevision, e.ModRevision, e.SessionId)),
            (await reopened.ListAsync("")).Entries.Select(e => (e.Key, Convert.ToHexString(e.Value.Span), e.CreateRevision, e.ModRevision, e.SessionId)));
        Assert.True(await reopened.KeepAliveAsync(sessionId));
        Assert.Throws<StoreCompactedException>(() => reopened.WatchAsync("", revision - 1));
    }

    [Fact]
    public async Task ACompactionCutShortByACrash_LeavesItsSnapshotBehind_WhichTheNextOpenRemoves()
    {
        await using (var store = Open())
        {
            await store.PutAsync("a", Bytes("1"));
        }

        await File.WriteAllBytesAsync(StorePath + ".compact", Encoding.ASCII.GetBytes("GPSTORE\u0001half a snapshot"));

        await using var reopened = Open();

        Assert.False(File.Exists(StorePath + ".compact"));
        Assert.Empty(reopened.RecoveryWarnings);
        Assert.Equal(["a"], (await reopened.ListAsync("")).Entries.Select(e => e.Key));
    }

    [Fact]
    public async Task ASecondOpenOfTheSameFile_FailsClearly_UntilTheFirstIsClosed_EvenAcrossCompactions()
    {
        var first = Open(compactionThreshold: 256);
        await first.PutAsync("a", Bytes("1"));

        var error = Assert.Throws<EmbeddedStoreInUseException>(() => Open());
        Assert.Equal(StorePath, error.FilePath);
        Assert.Equal($"the embedded store file '{StorePath}' is in use by another process (is another `gpupool up` running?); stop that one first, or give this one another store file", error.Message);

        // A compaction renames a new file over the path: the lock must come with it.
        for (var i = 0; i < 50; i++)
        {
            await first.PutAsync("a", Bytes($"value {i}"));
        }

        Assert.Throws<EmbeddedStoreInUseException>(() => Open());
        Assert.Equal("value 49", Text((await first.GetAsync("a"))!.Value));

        await first.DisposeAsync();
        await using var second = Open();
        Assert.Equal("value 49", Text((await second.GetAsync("a"))!.Value));
    }

    [Fact]
    public async Task AWatchFromBeforeTheRestart_FailsAsCompacted_AndOneFromTheReopenedRevisionStreams()
    {
        await using (var store = Open())
        {
            await store.PutAsync("w/a", Bytes("1"));
            await store.PutAsync("w/b", Bytes("2"));
        }

        await using var reopened = Open();
        var error = Assert.Throws<StoreCompactedException>(() => reopened.WatchAsync("w/", 1));
        Assert.Equal((1L, 2L), (error.AfterRevision, error.CompactedRevision));

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await using var watch = reopened.WatchAsync("w/", 2, cts.Token).GetAsyncEnumerator();
        var put = await reopened.PutAsync("w/c", Bytes("3"));
        Assert.True(await watch.MoveNextAsync());
        Assert.Equal((WatchEventKind.Put, "w/c", put.ModRevision), (watch.Current.Kind, watch.Current.Entry.Key, watch.Current.Revision));
    }

    [Fact]
    public async Task WithFlushToDisk_EveryCommitIsKept_TheSameWay()
    {
        await using (var store = EmbeddedClusterStore.Open(new EmbeddedStoreOptions(StorePath) { FlushToDisk = true }, _time))
        {
            var session = await store.CreateSessionAsync(Ttl);
            await store.PutAsync("a", Bytes("1"), sessionId: session.Id);
            await store.TransactAsync([], [TxnWrite.Put("b", Bytes("2")), TxnWrite.Delete("a")]);
        }

        await using var reopened = Open();

        Assert.Equal(2, await reopened.GetRevisionAsync());
        Assert.Equal(["b"], (await reopened.ListAsync("")).Entries.Select(e => e.Key));
    }

    [Fact]
    public async Task AKeyTheFileCannotHold_IsRefused_AndNothingIsApplied()
    {
        await using (var store = Open())
        {
            await store.PutAsync("a", Bytes("1"));

            // A lone surrogate has no UTF-8 form: storing it would come back as another key after a restart.
            await Assert.ThrowsAnyAsync<ArgumentException>(async () => await store.PutAsync("bad\ud800", Bytes("x")));
            await Assert.ThrowsAnyAsync<ArgumentException>(async () => await store.TransactAsync([], [TxnWrite.Put("ok", Bytes("x")), TxnWrite.Put("bad\udc00", Bytes("x"))]));

            Assert.Equal(1, await store.GetRevisionAsync());
            Assert.Equal(["a"], (await store.ListAsync("")).Entries.Select(e => e.Key));
            Assert.Equal(new PutResult(true, 2), await store.PutAsync("b", Bytes("2")));
        }

        await using var reopened = Open();
        Assert.Empty(reopened.RecoveryWarnings);
        Assert.Equal(["a", "b"], (await reopened.ListAsync("")).Entries.Select(e => e.Key));
    }

    [Fact]
    public async Task TheDefaultStore_StaysInMemory()
    {
        await using var store = new EmbeddedClusterStore(_time);
        await store.PutAsync("a", Bytes("1"));

        Assert.Null(store.FilePath);
        Assert.Empty(store.RecoveryWarnings);
        Assert.False(Directory.Exists(Path.GetDirectoryName(StorePath)));
    }

    private EmbeddedClusterStore Open(long compactionThreshold = EmbeddedStoreOptions.DefaultCompactionThreshold) =>
        EmbeddedClusterStore.Open(new EmbeddedStoreOptions(StorePath) { CompactionThreshold = compactionThreshold }, _time);

    private long FileLength() => new FileInfo(StorePath).Length;

    private void Truncate(long length)
    {
        using var file = new FileStream(StorePath, FileMode.Open, FileAccess.Write);
        file.SetLength(length);
    }

    private static byte[] Bytes(string s) => Encoding.UTF8.GetBytes(s);

    private static string Text(ReadOnlyMemory<byte> value) => Encoding.UTF8.GetString(value.Span);
}
