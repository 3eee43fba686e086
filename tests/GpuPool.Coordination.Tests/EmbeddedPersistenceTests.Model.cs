using CsCheck;
using GpuPool.Coordination.Embedded;

namespace GpuPool.Coordination.Tests;

public sealed partial class EmbeddedPersistenceTests
{
    private const string UnknownSession = "0123456789abcdef";

    /// <summary>
    /// Random puts, CAS, deletes, transactions and session calls, with the clock moving, the store reopened
    /// and the file's tail torn at random points; after every step the store must match a plain model, with
    /// sessions that survive a reopen getting a fresh TTL. A tiny compaction bound makes the file be
    /// rewritten as a snapshot along the way.
    /// </summary>
    [Fact]
    public async Task RandomOperations_WithReopensAndTornTails_MatchAModel()
    {
        var key = Gen.Int[0, 3].Select(k => $"k{k}");
        var session = Gen.Int[-1, 2];
        var put = Gen.Select(key, Gen.Byte.Array[0, 4], Gen.Int[0, 3], Gen.Int[1, 30], session, (k, v, e, a, s) => (Op)new PutOp(k, v, e, a, s));
        var delete = Gen.Select(key, Gen.Int[0, 3], Gen.Int[1, 30], (k, e, a) => (Op)new DeleteOp(k, e, a));
        var txn = Gen.Select(
            Gen.Select(key, Gen.Int[0, 2], Gen.Int[1, 30]).Array[0, 3],
            Gen.Select(key, Gen.Bool, Gen.Byte.Array[0, 3], session).Array[0, 4],
            (checks, writes) => (Op)new TxnOp(checks, [.. writes.DistinctBy(w => w.Item1)]));
        var op = Gen.Frequency<Op>(
            (6, put),
            (2, delete),
            (3, txn),
            (2, Gen.Int[1, 3].Select(t => (Op)new CreateSessionOp(t))),
            (1, session.Select(i => (Op)new KeepAliveOp(i))),
            (1, session.Select(i => (Op)new RevokeOp(i))),
            (2, Gen.Int[0, 5].Select(halves => (Op)new AdvanceOp(halves * 500))),
            (2, Gen.Const<Op>(new ReopenOp())),
            (1, Gen.Byte.Array[1, 40].Select(tail => (Op)new TearOp(tail))));

        await op.Array[1, 60].SampleAsync(
            async ops =>
            {
                var dir = Directory.CreateTempSubdirectory("gpupool-store-model-").FullName;
                var time = new ManualTimeProvider();
                var options = new EmbeddedStoreOptions(Path.Combine(dir, "embedded.db")) { CompactionThreshold = 300 };
                var store = EmbeddedClusterStore.Open(options, time);
                try
                {
                    var model = new Model();
                    var created = new List<string>();
                    foreach (var o in ops)
                    {
                        switch (o)
                        {
                            case PutOp p:
                                await ApplyPutAsync(store, model, p, SessionOf(created, p.Session));
                                break;
                            case DeleteOp d:
                                var expected = Expected(model, d.Key, d.Expect, d.Arbitrary);
                                var deleted = model.Entries.TryGetValue(d.Key, out var current) && Matches(current.Mod, expected);
                                Assert.Equal(deleted, await store.DeleteAsync(d.Key, expected));
                                if (deleted)
                                {
                                    model.Revision++;
                                    model.Entries.Remove(d.Key);
                                }

                                break;
                            case TxnOp t:
                                await ApplyTxnAsync(store, model, t, created);
                                break;
                            case CreateSessionOp c:
                                var ttl = TimeSpan.FromSeconds(c.TtlSeconds);
                                var s = await store.CreateSessionAsync(ttl);
                                created.Add(s.Id);
                                model.Sessions.Add(s.Id, (ttl, time.GetUtcNow() + ttl));
                                break;
                            case KeepAliveOp k:
                                var id = SessionOf(created, k.Session) ?? UnknownSession;
                                var alive = model.Sessions.TryGetValue(id, out var state);
                                Assert.Equal(alive, await store.KeepAliveAsync(id));
                                if (alive)
                                {
                                    model.Sessions[id] = (state.Ttl, time.GetUtcNow() + state.Ttl);
                                }

                                break;
                            case RevokeOp r:
                                var revoked = SessionOf(created, r.Session) ?? UnknownSession;
                                await store.RevokeSessionAsync(revoked);
                                model.EndSession(revoked);
                                break;
                            case AdvanceOp a:
                                model.ExpireUntil(time.GetUtcNow() + TimeSpan.FromMilliseconds(a.Milliseconds));
                                time.Advance(TimeSpan.FromMilliseconds(a.Milliseconds));
                                break;
                            case ReopenOp:
                                await store.DisposeAsync();
                                store = EmbeddedClusterStore.Open(options, time);
                                Assert.Empty(store.RecoveryWarnings);
                                model.RenewAll(time.GetUtcNow());
                                break;
                            case TearOp tear:
                                // A crash in the middle of an append: whatever landed of it is dropped on open.
                                await store.DisposeAsync();
                                await using (var file = new FileStream(options.Path, FileMode.Append))
                                {
                                    await file.WriteAsync(tear.Tail);
                                }

                                store = EmbeddedClusterStore.Open(options, time);
                                Assert.Single(store.RecoveryWarnings);
                                model.RenewAll(time.GetUtcNow());
                                break;
                        }

                        Assert.Equal(model.Revision, await store.GetRevisionAsync());
                        Assert.Equal(
                            model.Entries.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => (p.Key, Convert.ToHexString(p.Value.Value), p.Value.Create, p.Value.Mod, p.Value.Session)),
                            (await store.ListAsync("")).Entries.Select(e => (e.Key, Convert.ToHexString(e.Value.Span), e.CreateRevision, e.ModRevision, e.SessionId)));
                    }
                }
                finally
                {
                    await store.DisposeAsync();
                    Directory.Delete(dir, recursive: true);
                }
            },
            iter: 300);
    }

    private static async Task ApplyPutAsync(EmbeddedClusterStore store, Model model, PutOp p, string? sessionId)
    {
        var expected = Expected(model, p.Key, p.Expect, p.Arbitrary);
        if (sessionId is not null && !model.Sessions.ContainsKey(sessionId))
        {
            await Assert.ThrowsAsync<StoreSessionNotFoundException>(async () => await store.PutAsync(p.Key, p.Value, expected, sessionId));
            return;
        }

        var exists = model.Entries.TryGetValue(p.Key, out var current);
        var result = await store.PutAsync(p.Key, p.Value, expected, sessionId);
        if (expected is null || Matches(exists ? current.Mod : 0, expected.Value))
        {
            model.Revision++;
            model.Entries[p.Key] = (p.Value, exists ? current.Create : model.Revision, model.Revision, sessionId);
            Assert.Equal(new PutResult(true, model.Revision), result);
        }
        else
        {
            Assert.Equal(new PutResult(false, exists ? current.Mod : 0), result);
        }
    }

    private static async Task ApplyTxnAsync(EmbeddedClusterStore store, Model model, TxnOp t, List<string> created)
    {
        var checks = t.Checks.Select(c => new TxnCheck(c.Item1, Expected(model, c.Item1, c.Item2 + 1, c.Item3) ?? 0)).ToArray();
        var writes = t.Writes.Select(w => w.Item2 ? TxnWrite.Delete(w.Item1) : TxnWrite.Put(w.Item1, w.Item3, SessionOf(created, w.Item4))).ToArray();
        var failed = checks.Where(c => !Matches(model.Entries.TryGetValue(c.Key, out var e) ? e.Mod : 0, c.ExpectedModRevision)).Select(c => c.Key).ToArray();
        if (failed.Length == 0 && writes.Any(w => w.SessionId is { } id && !model.Sessions.ContainsKey(id)))
        {
            await Assert.ThrowsAsync<StoreSessionNotFoundException>(async () => await store.TransactAsync(checks, writes));
            return;
        }

        var result = await store.TransactAsync(checks, writes);
        if (failed.Length > 0)
        {
            Assert.Equal((false, model.Revision), (result.Succeeded, result.Revision));
            Assert.Equal(failed, result.FailedChecks);
            return;
        }

        if (writes.Any(w => !w.IsDelete || model.Entries.ContainsKey(w.Key)))
        {
            model.Revision++;
            foreach (var w in writes)
            {
                if (w.IsDelete)
                {
                    model.Entries.Remove(w.Key);
                }
                else
                {
                    var create = model.Entries.TryGetValue(w.Key, out var e) ? e.Create : model.Revision;
                    model.Entries[w.Key] = (w.Value.ToArray(), create, model.Revision, w.SessionId);
                }
            }
        }

        Assert.Equal((true, model.Revision), (result.Succeeded, result.Revision));
    }

    /// <summary>The expected ModRevision of a CAS: none, absent, the current one, or an arbitrary (likely stale) one.</summary>
    private static long? Expected(Model model, string key, int kind, int arbitrary) => kind switch
    {
        0 => null,
        1 => 0,
        2 when model.Entries.TryGetValue(key, out var e) => e.Mod,
        _ => arbitrary,
    };

    private static bool Matches(long current, long? expected) => expected is not { } e || current == e;

    /// <summary>-1: no session; else one of those created so far (maybe ended), or an unknown id when none were.</summary>
    private static string? SessionOf(List<string> created, int index) =>
        index < 0 ? null : created.Count == 0 ? UnknownSession : created[index % created.Count];

    private sealed class Model
    {
        public Dictionary<string, (byte[] Value, long Create, long Mod, string? Session)> Entries { get; } = new(StringComparer.Ordinal);

        public Dictionary<string, (TimeSpan Ttl, DateTimeOffset Deadline)> Sessions { get; } = new(StringComparer.Ordinal);

        public long Revision { get; set; }

        /// <summary>Sessions end in deadline order (ties by id), each deleting its keys in key order, one revision each.</summary>
        public void ExpireUntil(DateTimeOffset now)
        {
            foreach (var id in Sessions.Where(s => s.Value.Deadline <= now).OrderBy(s => s.Value.Deadline).ThenBy(s => s.Key, StringComparer.Ordinal).Select(s => s.Key).ToArray())
            {
                EndSession(id);
            }
        }

        public void EndSession(string id)
        {
            if (!Sessions.Remove(id))
            {
                return;
            }

            foreach (var key in Entries.Where(e => e.Value.Session == id).Select(e => e.Key).Order(StringComparer.Ordinal).ToArray())
            {
                Revision++;
                Entries.Remove(key);
            }
        }

        /// <summary>A reopened store gives every session a fresh TTL.</summary>
        public void RenewAll(DateTimeOffset now)
        {
            foreach (var (id, (ttl, _)) in Sessions.ToArray())
            {
                Sessions[id] = (ttl, now + ttl);
            }
        }
    }

    private abstract record Op;

    private sealed record PutOp(string Key, byte[] Value, int Expect, int Arbitrary, int Session) : Op;

    private sealed record DeleteOp(string Key, int Expect, int Arbitrary) : Op;

    private sealed record TxnOp((string, int, int)[] Checks, (string, bool, byte[], int)[] Writes) : Op;

    private sealed record CreateSessionOp(int TtlSeconds) : Op;

    private sealed record KeepAliveOp(int Session) : Op;

    private sealed record RevokeOp(int Session) : Op;

    private sealed record AdvanceOp(int Milliseconds) : Op;

    private sealed record ReopenOp : Op;

    private sealed record TearOp(byte[] Tail) : Op;
}
