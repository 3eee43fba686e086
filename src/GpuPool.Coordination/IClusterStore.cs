namespace GpuPool.Coordination;

/// <summary>
/// The coordination store: a key-value map with revisions, compare-and-set and multi-key transactions,
/// sessions with a time to live (keys bound to a session vanish when it ends), watches, and service
/// registration with TTL health checks. Drivers: embedded (in-process, one machine, persisted to a file),
/// etcd (v3 API) and Consul (HTTP API). A leader lock is built on sessions and compare-and-set
/// (<see cref="Election.LeaderElection"/>), so it works the same on every driver.
/// </summary>
/// <remarks>
/// Revisions are one store-wide counter that grows with every committed write (a put, a delete, a
/// transaction, a key deleted because its session ended). Drivers differ in by how much it grows (etcd: one
/// per transaction; Consul: its Raft index), so callers compare revisions, never count them.
/// Every call fails with <see cref="StoreUnavailableException"/> when the store cannot be reached.
/// </remarks>
public interface IClusterStore : IAsyncDisposable
{
    /// <summary>The store's current revision.</summary>
    ValueTask<long> GetRevisionAsync(CancellationToken cancellationToken = default);

    ValueTask<KvEntry?> GetAsync(string key, CancellationToken cancellationToken = default);

    /// <summary>
    /// All live entries whose key starts with <paramref name="prefix"/>, ordered by key, and the revision the
    /// listing was read at: a watch from that revision sees every later change and nothing the listing holds.
    /// </summary>
    ValueTask<KvListing> ListAsync(string prefix, CancellationToken cancellationToken = default);

    /// <summary>
    /// Writes <paramref name="value"/> under <paramref name="key"/>. With <paramref name="expectedModRevision"/>
    /// null the write is unconditional; 0 means "only if the key does not exist"; any other value means
    /// "only if the key's ModRevision is exactly that". A key written with a <paramref name="sessionId"/> is
    /// deleted when that session ends. Fails with <see cref="StoreSessionNotFoundException"/> for an unknown
    /// or ended session.
    /// </summary>
    ValueTask<PutResult> PutAsync(string key, ReadOnlyMemory<byte> value, long? expectedModRevision = null, string? sessionId = null, CancellationToken cancellationToken = default);

    /// <summary>Deletes a key; with <paramref name="expectedModRevision"/> only if it matches. True when a key was deleted.</summary>
    ValueTask<bool> DeleteAsync(string key, long? expectedModRevision = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// Applies every write of <paramref name="writes"/> in one atomic step when every check of
    /// <paramref name="checks"/> holds, and nothing otherwise. All writes of a committed transaction share
    /// one revision. At most <see cref="TxnLimits.MaxOperations"/> checks and writes together. A write naming
    /// an unknown or ended session fails the call with <see cref="StoreSessionNotFoundException"/> and applies
    /// nothing.
    /// </summary>
    ValueTask<TxnResult> TransactAsync(IReadOnlyList<TxnCheck> checks, IReadOnlyList<TxnWrite> writes, CancellationToken cancellationToken = default);

    /// <summary>Starts a session that ends <paramref name="ttl"/> after its last keepalive (a driver may round the TTL up to its minimum).</summary>
    ValueTask<StoreSession> CreateSessionAsync(TimeSpan ttl, CancellationToken cancellationToken = default);

    /// <summary>Renews a session. False when it has already ended (its keys are gone).</summary>
    ValueTask<bool> KeepAliveAsync(string sessionId, CancellationToken cancellationToken = default);

    /// <summary>Ends a session now and deletes its keys. Ending an unknown session is not an error.</summary>
    ValueTask RevokeSessionAsync(string sessionId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Every change to keys under <paramref name="prefix"/> with a revision greater than
    /// <paramref name="afterRevision"/>, in revision order, until cancelled. Changes that happen between
    /// the call and the first MoveNext are not lost. Fails with <see cref="StoreCompactedException"/> when
    /// the store no longer holds the history from <paramref name="afterRevision"/>: list again and watch
    /// from the listing's revision.
    /// </summary>
    IAsyncEnumerable<WatchEvent> WatchAsync(string prefix, long afterRevision, CancellationToken cancellationToken = default);

    /// <summary>
    /// Registers (or re-registers) a service instance with a TTL health check. The check starts passing and
    /// turns critical when no <see cref="PassServiceCheckAsync"/> arrives within the TTL.
    /// </summary>
    ValueTask RegisterServiceAsync(ServiceRegistration registration, CancellationToken cancellationToken = default);

    /// <summary>Marks the instance's TTL check as passing for another TTL. False when the instance is not registered.</summary>
    ValueTask<bool> PassServiceCheckAsync(string serviceId, CancellationToken cancellationToken = default);

    /// <summary>Removes an instance. Removing an unknown instance is not an error.</summary>
    ValueTask DeregisterServiceAsync(string serviceId, CancellationToken cancellationToken = default);

    /// <summary>The registered instances of <paramref name="serviceName"/>, ordered by id, each with its health.</summary>
    ValueTask<IReadOnlyList<ServiceInstance>> ListServicesAsync(string serviceName, CancellationToken cancellationToken = default);
}

/// <summary>One key's value and its revisions.</summary>
public sealed record KvEntry(string Key, ReadOnlyMemory<byte> Value, long CreateRevision, long ModRevision, string? SessionId);

/// <summary>The live entries under a prefix, ordered by key, and the store revision they were read at.</summary>
public sealed record KvListing(IReadOnlyList<KvEntry> Entries, long Revision);

/// <summary>The outcome of a put: whether it was applied, and the key's revision afterwards (the current one on a CAS conflict; 0 when absent).</summary>
public readonly record struct PutResult(bool Succeeded, long ModRevision);

/// <summary>A transaction's condition: the key's ModRevision is exactly <see cref="ExpectedModRevision"/> (0: the key does not exist).</summary>
public readonly record struct TxnCheck(string Key, long ExpectedModRevision)
{
    public static TxnCheck Absent(string key) => new(key, 0);
}

/// <summary>A transaction's write: a put (optionally bound to a session) or a delete.</summary>
public sealed record TxnWrite(string Key, ReadOnlyMemory<byte> Value, string? SessionId, bool IsDelete)
{
    public static TxnWrite Put(string key, ReadOnlyMemory<byte> value, string? sessionId = null) => new(key, value, sessionId, false);

    public static TxnWrite Delete(string key) => new(key, ReadOnlyMemory<byte>.Empty, null, true);
}

/// <summary>
/// The outcome of a transaction: whether it was applied; when applied, the revision of its writes; when not,
/// the keys whose checks failed.
/// </summary>
public sealed record TxnResult(bool Succeeded, long Revision, IReadOnlyList<string> FailedChecks)
{
    public static TxnResult Committed(long revision) => new(true, revision, []);
}

public static class TxnLimits
{
    /// <summary>Checks plus writes per transaction: Consul's limit, the smallest of the drivers'.</summary>
    public const int MaxOperations = 64;
}

public sealed record StoreSession(string Id, TimeSpan Ttl);

public enum WatchEventKind
{
    Put,
    Delete,
}

/// <summary>A change seen by a watch. For a delete, <see cref="Entry"/> holds the last value and the revision of the delete.</summary>
public sealed record WatchEvent(WatchEventKind Kind, KvEntry Entry, long Revision);

/// <summary>A service instance to register: where it listens, free-form metadata, and its health check's TTL.</summary>
public sealed record ServiceRegistration(string Id, string Name, string Address, int Port, IReadOnlyDictionary<string, string> Meta, TimeSpan CheckTtl);

public enum ServiceHealth
{
    Passing,
    Critical,
}

/// <summary>A registered service instance and the state of its TTL check.</summary>
public sealed record ServiceInstance(string Id, string Name, string Address, int Port, IReadOnlyDictionary<string, string> Meta, ServiceHealth Health);

/// <summary>A write named a session that does not exist or has ended.</summary>
public sealed class StoreSessionNotFoundException(string sessionId)
    : Exception($"store session '{sessionId}' does not exist or has ended")
{
    public string SessionId { get; } = sessionId;
}

/// <summary>A watch asked for history the store has compacted away.</summary>
public sealed class StoreCompactedException(long afterRevision, long compactedRevision)
    : Exception($"the store has compacted its history past revision {afterRevision} (kept from {compactedRevision}); list again and watch from the listing's revision")
{
    public long AfterRevision { get; } = afterRevision;

    public long CompactedRevision { get; } = compactedRevision;
}

/// <summary>The store could not be reached or did not answer in time. A write in flight may or may not have been applied: read before retrying.</summary>
public sealed class StoreUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
