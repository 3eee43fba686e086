namespace GpuPool.Coordination;

/// <summary>
/// The coordination store: a key-value map with revisions and compare-and-set, sessions with a
/// time to live (keys bound to a session vanish when it ends), and watches. Drivers: embedded
/// (in-process, one machine), and later etcd and Consul.
/// </summary>
public interface IClusterStore : IAsyncDisposable
{
    /// <summary>The store's current revision; every successful write increments it by one.</summary>
    long Revision { get; }

    ValueTask<KvEntry?> GetAsync(string key, CancellationToken cancellationToken = default);

    /// <summary>All live entries whose key starts with <paramref name="prefix"/>, ordered by key.</summary>
    ValueTask<IReadOnlyList<KvEntry>> ListAsync(string prefix, CancellationToken cancellationToken = default);

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

    /// <summary>Starts a session that ends <paramref name="ttl"/> after its last keepalive.</summary>
    ValueTask<StoreSession> CreateSessionAsync(TimeSpan ttl, CancellationToken cancellationToken = default);

    /// <summary>Renews a session. False when it has already ended (its keys are gone).</summary>
    ValueTask<bool> KeepAliveAsync(string sessionId, CancellationToken cancellationToken = default);

    /// <summary>Ends a session now and deletes its keys. Ending an unknown session is not an error.</summary>
    ValueTask RevokeSessionAsync(string sessionId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Every change to keys under <paramref name="prefix"/> with a revision greater than
    /// <paramref name="afterRevision"/>, in revision order, until cancelled. Changes that happen between
    /// the call and the first MoveNext are not lost.
    /// </summary>
    IAsyncEnumerable<WatchEvent> WatchAsync(string prefix, long afterRevision, CancellationToken cancellationToken = default);
}

/// <summary>One key's value and its revisions.</summary>
public sealed record KvEntry(string Key, ReadOnlyMemory<byte> Value, long CreateRevision, long ModRevision, string? SessionId);

/// <summary>The outcome of a put: whether it was applied, and the key's revision afterwards (the current one on a CAS conflict; 0 when absent).</summary>
public readonly record struct PutResult(bool Succeeded, long ModRevision);

public sealed record StoreSession(string Id, TimeSpan Ttl);

public enum WatchEventKind
{
    Put,
    Delete,
}

/// <summary>A change seen by a watch. For a delete, <see cref="Entry"/> holds the last value and the revision of the delete.</summary>
public sealed record WatchEvent(WatchEventKind Kind, KvEntry Entry, long Revision);

/// <summary>A write named a session that does not exist or has ended.</summary>
public sealed class StoreSessionNotFoundException(string sessionId)
    : Exception($"store session '{sessionId}' does not exist or has ended")
{
    public string SessionId { get; } = sessionId;
}
