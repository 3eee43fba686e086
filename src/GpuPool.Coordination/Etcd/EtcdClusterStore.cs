using System.Globalization;
using System.Runtime.CompilerServices;
using Etcdserverpb;
using GpuPool.Coordination.Etcd.Internal;
using GpuPool.Coordination.Services;
using Google.Protobuf;
using Grpc.Core;
using Mvccpb;

namespace GpuPool.Coordination.Etcd;

/// <summary>
/// The etcd driver of <see cref="IClusterStore"/>, on etcd's v3 gRPC API. Revisions are etcd's (one per
/// transaction: a lease's keys deleted when it ends share one); sessions are etcd leases, named by their id in
/// decimal, with TTLs in whole seconds rounded up; every conditional write is one etcd Txn, so a check and its
/// write are atomic on the server. Calls fail over between the configured members (see <see cref="EtcdMembers"/>);
/// watches re-watch on another member from the last revision they delivered when their stream breaks.
/// Service registration is <see cref="KvServiceRegistry"/> on this store's keys and leases.
/// </summary>
public sealed class EtcdClusterStore : IClusterStore
{
    /// <summary>etcd's largest lease TTL (about 285 years).</summary>
    private const long MaxLeaseTtlSeconds = 9_000_000_000;

    private readonly EtcdMembers _members;
    private readonly EtcdKeys _keys;
    private readonly KvServiceRegistry _services;

    /// <summary>Cancelled on dispose (never disposed itself: watches may still link to it).</summary>
    private readonly CancellationTokenSource _disposing = new();
    private int _disposed;

    public EtcdClusterStore(EtcdClusterStoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var endpoints = options.Validate();
        Options = options;
        _members = new EtcdMembers(endpoints, options);
        _keys = new EtcdKeys(options.KeyPrefix);
        _services = new KvServiceRegistry(this);
    }

    public EtcdClusterStoreOptions Options { get; }

    public async ValueTask<long> GetRevisionAsync(CancellationToken cancellationToken = default)
    {
        var request = new RangeRequest { Key = _keys.Probe, CountOnly = true };
        var response = await CallAsync((m, o) => m.Kv.RangeAsync(request, o).ResponseAsync, RetrySafety.Always, cancellationToken).ConfigureAwait(false);
        return response.Header.Revision;
    }

    public async ValueTask<KvEntry?> GetAsync(string key, CancellationToken cancellationToken = default)
    {
        ValidateKey(key);
        var request = new RangeRequest { Key = _keys.ToEtcd(key) };
        var response = await CallAsync((m, o) => m.Kv.RangeAsync(request, o).ResponseAsync, RetrySafety.Always, cancellationToken).ConfigureAwait(false);
        return response.Kvs.Count == 0 ? null : ToEntry(response.Kvs[0]);
    }

    public async ValueTask<KvListing> ListAsync(string prefix, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        var (key, rangeEnd) = _keys.Range(prefix);
        var request = new RangeRequest { Key = key, RangeEnd = rangeEnd };
        var response = await CallAsync((m, o) => m.Kv.RangeAsync(request, o).ResponseAsync, RetrySafety.Always, cancellationToken).ConfigureAwait(false);

        var entries = new List<KvEntry>(response.Kvs.Count);
        foreach (var kv in response.Kvs)
        {
            if (ToEntry(kv) is { } entry)
            {
                entries.Add(entry);
            }
        }

        // etcd orders by UTF-8 bytes; the interface orders like string.CompareOrdinal (they differ only past U+FFFF).
        entries.Sort(static (a, b) => string.CompareOrdinal(a.Key, b.Key));
        return new KvListing(entries, response.Header.Revision);
    }

    public async ValueTask<PutResult> PutAsync(string key, ReadOnlyMemory<byte> value, long? expectedModRevision = null, string? sessionId = null, CancellationToken cancellationToken = default)
    {
        ValidateKey(key);
        ValidateExpected(expectedModRevision);
        var lease = sessionId is null ? 0 : ParseLease(sessionId) ?? throw new StoreSessionNotFoundException(sessionId);
        var put = new PutRequest { Key = _keys.ToEtcd(key), Value = ByteString.CopyFrom(value.Span), Lease = lease };

        try
        {
            if (expectedModRevision is not { } expected)
            {
                var response = await CallAsync((m, o) => m.Kv.PutAsync(put, o).ResponseAsync, RetrySafety.IfNotApplied, cancellationToken).ConfigureAwait(false);
                return new PutResult(true, response.Header.Revision);
            }

            // One Txn: the check, the put, and on a conflict a read of the key's current revision.
            var txn = new TxnRequest();
            txn.Compare.Add(Check(put.Key, expected));
            txn.Success.Add(new RequestOp { RequestPut = put });
            txn.Failure.Add(new RequestOp { RequestRange = new RangeRequest { Key = put.Key, KeysOnly = true } });
            var result = await CallAsync((m, o) => m.Kv.TxnAsync(txn, o).ResponseAsync, RetrySafety.IfNotApplied, cancellationToken).ConfigureAwait(false);
            if (result.Succeeded)
            {
                return new PutResult(true, result.Header.Revision);
            }

            // etcd checks the lease only on the branch it runs; the interface refuses an ended session either way.
            if (lease != 0 && !await LeaseExistsAsync(lease, cancellationToken).ConfigureAwait(false))
            {
                throw new StoreSessionNotFoundException(sessionId!);
            }

            var current = result.Responses[0].ResponseRange.Kvs;
            return new PutResult(false, current.Count == 0 ? 0 : current[0].ModRevision);
        }
        catch (EtcdRefusedException ex) when (ex.IsLeaseNotFound)
        {
            throw new StoreSessionNotFoundException(sessionId!);
        }
    }

    public async ValueTask<bool> DeleteAsync(string key, long? expectedModRevision = null, CancellationToken cancellationToken = default)
    {
        ValidateKey(key);
        ValidateExpected(expectedModRevision);
        var delete = new DeleteRangeRequest { Key = _keys.ToEtcd(key) };
        if (expectedModRevision is not { } expected)
        {
            var response = await CallAsync((m, o) => m.Kv.DeleteRangeAsync(delete, o).ResponseAsync, RetrySafety.IfNotApplied, cancellationToken).ConfigureAwait(false);
            return response.Deleted > 0;
        }

        var txn = new TxnRequest();
        txn.Compare.Add(Check(delete.Key, expected));
        txn.Success.Add(new RequestOp { RequestDeleteRange = delete });
        var result = await CallAsync((m, o) => m.Kv.TxnAsync(txn, o).ResponseAsync, RetrySafety.IfNotApplied, cancellationToken).ConfigureAwait(false);
        return result.Succeeded && result.Responses[0].ResponseDeleteRange.Deleted > 0;
    }

    public async ValueTask<TxnResult> TransactAsync(IReadOnlyList<TxnCheck> checks, IReadOnlyList<TxnWrite> writes, CancellationToken cancellationToken = default)
    {
        TxnValidation.Validate(checks, writes);

        // Writes naming a session that cannot be an etcd lease fail before anything is sent.
        var leases = new long[writes.Count];
        for (var i = 0; i < writes.Count; i++)
        {
            if (writes[i].SessionId is { } id)
            {
                leases[i] = ParseLease(id) ?? throw new StoreSessionNotFoundException(id);
            }
        }

        // The checks, the writes, and in the failure branch a read of every checked key, so the failed checks are
        // known from the same atomic step.
        var txn = new TxnRequest();
        var checkKeys = new ByteString[checks.Count];
        for (var i = 0; i < checks.Count; i++)
        {
            checkKeys[i] = _keys.ToEtcd(checks[i].Key);
            txn.Compare.Add(Check(checkKeys[i], checks[i].ExpectedModRevision));
            txn.Failure.Add(new RequestOp { RequestRange = new RangeRequest { Key = checkKeys[i], KeysOnly = true } });
        }

        for (var i = 0; i < writes.Count; i++)
        {
            var write = writes[i];
            var key = _keys.ToEtcd(write.Key);
            txn.Success.Add(write.IsDelete
                ? new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = key } }
                : new RequestOp { RequestPut = new PutRequest { Key = key, Value = ByteString.CopyFrom(write.Value.Span), Lease = leases[i] } });
        }

        TxnResponse result;
        try
        {
            result = await CallAsync((m, o) => m.Kv.TxnAsync(txn, o).ResponseAsync, RetrySafety.IfNotApplied, cancellationToken).ConfigureAwait(false);
        }
        catch (EtcdRefusedException ex) when (ex.IsLeaseNotFound)
        {
            throw new StoreSessionNotFoundException(await FindEndedSessionAsync(writes, cancellationToken).ConfigureAwait(false));
        }

        if (result.Succeeded)
        {
            return TxnResult.Committed(result.Header.Revision);
        }

        var failed = new List<string>();
        for (var i = 0; i < checks.Count; i++)
        {
            var kvs = result.Responses[i].ResponseRange.Kvs;
            var current = kvs.Count == 0 ? 0 : kvs[0].ModRevision;
            if (current != checks[i].ExpectedModRevision)
            {
                failed.Add(checks[i].Key);
            }
        }

        return new TxnResult(false, result.Header.Revision, failed);
    }

    public async ValueTask<StoreSession> CreateSessionAsync(TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ttl, TimeSpan.Zero);

        // etcd counts whole seconds: round up, so a session never ends before the TTL asked for.
        var seconds = (long)Math.Min(Math.Ceiling(ttl.TotalSeconds), MaxLeaseTtlSeconds);
        var request = new LeaseGrantRequest { TTL = seconds };
        var response = await CallAsync((m, o) => m.Lease.LeaseGrantAsync(request, o).ResponseAsync, RetrySafety.Always, cancellationToken).ConfigureAwait(false);
        if (!string.IsNullOrEmpty(response.Error))
        {
            throw new InvalidOperationException($"etcd refused a lease of {seconds} s: {response.Error}");
        }

        return new StoreSession(response.ID.ToString(CultureInfo.InvariantCulture), TimeSpan.FromSeconds(response.TTL));
    }

    public async ValueTask<bool> KeepAliveAsync(string sessionId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sessionId);
        if (ParseLease(sessionId) is not { } lease)
        {
            return false;
        }

        // One renewal on a short-lived stream; etcd answers a TTL of 0 or less for a lease that has ended.
        var ttl = await CallAsync(
            async (m, o) =>
            {
                using var call = m.Lease.LeaseKeepAlive(o);
                try
                {
                    await call.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = lease }, o.CancellationToken).ConfigureAwait(false);
                    await call.RequestStream.CompleteAsync().ConfigureAwait(false);
                }
                catch (Exception) when (!o.CancellationToken.IsCancellationRequested)
                {
                    // The call failed (no connection); its status shows on the read below.
                }

                if (!await call.ResponseStream.MoveNext(o.CancellationToken).ConfigureAwait(false))
                {
                    throw new RpcException(new Status(StatusCode.Unavailable, "the keepalive stream ended without an answer"));
                }

                return call.ResponseStream.Current.TTL;
            },
            RetrySafety.Always,
            cancellationToken).ConfigureAwait(false);
        return ttl > 0;
    }

    public async ValueTask RevokeSessionAsync(string sessionId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sessionId);
        if (ParseLease(sessionId) is not { } lease)
        {
            return;
        }

        try
        {
            var request = new LeaseRevokeRequest { ID = lease };
            await CallAsync((m, o) => m.Lease.LeaseRevokeAsync(request, o).ResponseAsync, RetrySafety.Always, cancellationToken).ConfigureAwait(false);
        }
        catch (EtcdRefusedException ex) when (ex.IsLeaseNotFound)
        {
            // Already ended: not an error.
        }
    }

    public IAsyncEnumerable<WatchEvent> WatchAsync(string prefix, long afterRevision, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        ArgumentOutOfRangeException.ThrowIfNegative(afterRevision);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return WatchCore(prefix, afterRevision, cancellationToken);
    }

    public ValueTask RegisterServiceAsync(ServiceRegistration registration, CancellationToken cancellationToken = default)
        => _services.RegisterAsync(registration, cancellationToken);

    public ValueTask<bool> PassServiceCheckAsync(string serviceId, CancellationToken cancellationToken = default)
        => _services.PassCheckAsync(serviceId, cancellationToken);

    public ValueTask DeregisterServiceAsync(string serviceId, CancellationToken cancellationToken = default)
        => _services.DeregisterAsync(serviceId, cancellationToken);

    public ValueTask<IReadOnlyList<ServiceInstance>> ListServicesAsync(string serviceName, CancellationToken cancellationToken = default)
        => _services.ListAsync(serviceName, cancellationToken);

    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return ValueTask.CompletedTask;
        }

        // Ends the watches (they complete), then closes the channels.
        _disposing.Cancel();
        _members.Dispose();
        return ValueTask.CompletedTask;
    }

    private async IAsyncEnumerable<WatchEvent> WatchCore(string prefix, long afterRevision, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var (key, rangeEnd) = _keys.Range(prefix);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _disposing.Token);
        await using var watcher = new EtcdWatcher(_members, key, rangeEnd, afterRevision, ToEntry);
        while (true)
        {
            IReadOnlyList<WatchEvent> batch;
            try
            {
                batch = await watcher.NextAsync(stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && _disposing.IsCancellationRequested)
            {
                // The store was disposed: the watch ends.
                yield break;
            }

            foreach (var e in batch)
            {
                yield return e;
            }
        }
    }

    private async Task<T> CallAsync<T>(Func<EtcdMember, CallOptions, Task<T>> call, RetrySafety safety, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return await _members.CallAsync(call, safety, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Which of the transaction's sessions has ended, after etcd refused it for an unknown lease.</summary>
    private async Task<string> FindEndedSessionAsync(IReadOnlyList<TxnWrite> writes, CancellationToken cancellationToken)
    {
        var ids = writes.Select(w => w.SessionId).OfType<string>().Distinct(StringComparer.Ordinal).ToList();
        if (ids.Count > 1)
        {
            foreach (var id in ids)
            {
                if (!await LeaseExistsAsync(ParseLease(id)!.Value, cancellationToken).ConfigureAwait(false))
                {
                    return id;
                }
            }
        }

        return ids[0];
    }

    private async Task<bool> LeaseExistsAsync(long lease, CancellationToken cancellationToken)
    {
        try
        {
            var request = new LeaseTimeToLiveRequest { ID = lease };
            var response = await CallAsync((m, o) => m.Lease.LeaseTimeToLiveAsync(request, o).ResponseAsync, RetrySafety.Always, cancellationToken).ConfigureAwait(false);

            // etcd answers TTL -1 for a lease it does not know (0 for one in its last second).
            return response.TTL >= 0;
        }
        catch (EtcdRefusedException ex) when (ex.IsLeaseNotFound)
        {
            return false;
        }
    }

    private KvEntry? ToEntry(KeyValue kv)
    {
        var key = _keys.FromEtcd(kv.Key);
        return key is null ? null : new KvEntry(key, kv.Value.Memory, kv.CreateRevision, kv.ModRevision, kv.Lease == 0 ? null : kv.Lease.ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>The compare for "ModRevision is exactly <paramref name="expected"/>"; 0 means absent (created at no revision).</summary>
    private static Compare Check(ByteString key, long expected) => expected == 0
        ? new Compare { Key = key, Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = 0 }
        : new Compare { Key = key, Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = expected };

    /// <summary>An etcd lease id from a session id; null for a string no lease can have (so it names no live session).</summary>
    private static long? ParseLease(string sessionId) =>
        long.TryParse(sessionId, NumberStyles.None, CultureInfo.InvariantCulture, out var lease) && lease > 0 ? lease : null;

    private static void ValidateKey(string key)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
    }

    private static void ValidateExpected(long? expectedModRevision)
    {
        if (expectedModRevision is { } expected)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(expected, nameof(expectedModRevision));
        }
    }
}
