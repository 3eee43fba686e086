using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Threading.Channels;
using GpuPool.Coordination.Services;

namespace GpuPool.Coordination.Embedded;

/// <summary>
/// The in-process <see cref="IClusterStore"/> driver: one machine. Revisions follow
/// etcd: one global counter starting at 0, incremented by every successful put or delete, including each
/// key deleted because its session ended. Sessions expire <c>ttl</c> after creation or their last
/// keepalive, measured with the injected <see cref="TimeProvider"/>; expiry is driven by a timer (so keys
/// vanish with nobody calling the store) and also checked on every call. All state sits behind one lock.
/// </summary>
public sealed class EmbeddedClusterStore : IClusterStore
{
    /// <summary>How many recent events are kept for watches that start from an older revision.</summary>
    public const int HistoryLimit = 10_000;

    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private readonly ITimer _sweepTimer;

    private readonly Dictionary<string, KvEntry> _entries = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Session> _sessions = new(StringComparer.Ordinal);
    private readonly Queue<WatchEvent> _history = new();
    private readonly List<Watcher> _watchers = [];

    private readonly KvServiceRegistry _services;

    private long _revision;

    /// <summary>Every event with a revision greater than this is still in <see cref="_history"/>.</summary>
    private long _compactedRevision;

    /// <summary>When the sweep timer is due, or null when it is not armed.</summary>
    private DateTimeOffset? _sweepDue;

    private bool _disposed;

    public EmbeddedClusterStore(TimeProvider? timeProvider = null)
    {
        _time = timeProvider ?? TimeProvider.System;
        _services = new KvServiceRegistry(this);

        // The timer outlives the caller's context: don't capture its AsyncLocals.
        using (ExecutionContext.IsFlowSuppressed() ? default(AsyncFlowControl?) : ExecutionContext.SuppressFlow())
        {
            _sweepTimer = _time.CreateTimer(static state => ((EmbeddedClusterStore)state!).OnSweepTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }
    }

    public ValueTask<long> GetRevisionAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            Enter();
            return ValueTask.FromResult(_revision);
        }
    }

    public ValueTask<KvEntry?> GetAsync(string key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            Enter();
            return ValueTask.FromResult(_entries.GetValueOrDefault(key));
        }
    }

    public ValueTask<KvListing> ListAsync(string prefix, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        cancellationToken.ThrowIfCancellationRequested();
        List<KvEntry> result;
        long revision;
        lock (_gate)
        {
            Enter();
            revision = _revision;
            result = [.. _entries.Values.Where(e => e.Key.StartsWith(prefix, StringComparison.Ordinal))];
        }

        result.Sort(static (a, b) => string.CompareOrdinal(a.Key, b.Key));
        return ValueTask.FromResult(new KvListing(result, revision));
    }

    public ValueTask<PutResult> PutAsync(string key, ReadOnlyMemory<byte> value, long? expectedModRevision = null, string? sessionId = null, CancellationToken cancellationToken = default)
    {
        ValidateKey(key);
        ValidateExpected(expectedModRevision);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            Enter();

            Session? session = null;
            if (sessionId is not null && !_sessions.TryGetValue(sessionId, out session))
            {
                throw new StoreSessionNotFoundException(sessionId);
            }

            _entries.TryGetValue(key, out var current);
            if (!Matches(current, expectedModRevision))
            {
                return ValueTask.FromResult(new PutResult(false, current?.ModRevision ?? 0));
            }

            var revision = ++_revision;
            ApplyPut(key, value, session, revision);
            return ValueTask.FromResult(new PutResult(true, revision));
        }
    }

    public ValueTask<bool> DeleteAsync(string key, long? expectedModRevision = null, CancellationToken cancellationToken = default)
    {
        ValidateKey(key);
        ValidateExpected(expectedModRevision);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            Enter();
            if (!_entries.TryGetValue(key, out var current) || !Matches(current, expectedModRevision))
            {
                return ValueTask.FromResult(false);
            }

            ApplyDelete(current, ++_revision);
            return ValueTask.FromResult(true);
        }
    }

    public ValueTask<TxnResult> TransactAsync(IReadOnlyList<TxnCheck> checks, IReadOnlyList<TxnWrite> writes, CancellationToken cancellationToken = default)
    {
        TxnValidation.Validate(checks, writes);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            Enter();
            List<string>? failed = null;
            foreach (var check in checks)
            {
                if (!Matches(_entries.GetValueOrDefault(check.Key), check.ExpectedModRevision))
                {
                    (failed ??= []).Add(check.Key);
                }
            }

            if (failed is not null)
            {
                return ValueTask.FromResult(new TxnResult(false, _revision, failed));
            }

            var sessions = new Session?[writes.Count];
            for (var i = 0; i < writes.Count; i++)
            {
                if (writes[i].SessionId is { } id)
                {
                    sessions[i] = _sessions.GetValueOrDefault(id) ?? throw new StoreSessionNotFoundException(id);
                }
            }

            // One revision for the whole transaction, as etcd and Consul do.
            var revision = _revision + 1;
            var wrote = false;
            for (var i = 0; i < writes.Count; i++)
            {
                var write = writes[i];
                if (!write.IsDelete)
                {
                    ApplyPut(write.Key, write.Value, sessions[i], revision);
                    wrote = true;
                }
                else if (_entries.TryGetValue(write.Key, out var current))
                {
                    ApplyDelete(current, revision);
                    wrote = true;
                }
            }

            if (wrote)
            {
                _revision = revision;
            }

            return ValueTask.FromResult(TxnResult.Committed(_revision));
        }
    }

    public ValueTask<StoreSession> CreateSessionAsync(TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ttl, TimeSpan.Zero);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            Enter();
            string id;
            do
            {
                id = RandomNumberGenerator.GetHexString(16, lowercase: true);
            }
            while (_sessions.ContainsKey(id));

            var session = new Session(id, ttl) { Deadline = DeadlineFrom(_time.GetUtcNow(), ttl) };
            _sessions.Add(id, session);
            if (_sweepDue is not { } due || session.Deadline < due)
            {
                ArmSweep(session.Deadline);
            }

            return ValueTask.FromResult(new StoreSession(id, ttl));
        }
    }

    public ValueTask<bool> KeepAliveAsync(string sessionId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sessionId);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            Enter();
            if (!_sessions.TryGetValue(sessionId, out var session))
            {
                return ValueTask.FromResult(false);
            }

            // The deadline only moves later, so an armed sweep fires early at worst and re-arms itself.
            session.Deadline = DeadlineFrom(_time.GetUtcNow(), session.Ttl);
            return ValueTask.FromResult(true);
        }
    }

    public ValueTask RevokeSessionAsync(string sessionId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sessionId);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            Enter();
            if (_sessions.TryGetValue(sessionId, out var session))
            {
                EndSession(session);
            }
        }

        return ValueTask.CompletedTask;
    }

    public IAsyncEnumerable<WatchEvent> WatchAsync(string prefix, long afterRevision, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        ArgumentOutOfRangeException.ThrowIfNegative(afterRevision);
        lock (_gate)
        {
            // Fail fast; checked again when the watch is registered on the first MoveNextAsync.
            Enter();
            ThrowIfCompacted(afterRevision);
        }

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
        Watcher[] watchers;
        lock (_gate)
        {
            if (_disposed)
            {
                return ValueTask.CompletedTask;
            }

            _disposed = true;
            _sweepDue = null;
            watchers = [.. _watchers];
            _watchers.Clear();
        }

        _sweepTimer.Dispose();
        foreach (var watcher in watchers)
        {
            watcher.Channel.Writer.TryComplete();
        }

        return ValueTask.CompletedTask;
    }

    private async IAsyncEnumerable<WatchEvent> WatchCore(string prefix, long afterRevision, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var watcher = new Watcher(prefix, afterRevision);
        lock (_gate)
        {
            // Replay and registration under one lock: no event is lost or seen twice.
            Enter();
            ThrowIfCompacted(afterRevision);
            foreach (var e in _history)
            {
                if (e.Revision > afterRevision && e.Entry.Key.StartsWith(prefix, StringComparison.Ordinal))
                {
                    watcher.Channel.Writer.TryWrite(e);
                }
            }

            _watchers.Add(watcher);
        }

        try
        {
            await foreach (var e in watcher.Channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                yield return e;
            }
        }
        finally
        {
            lock (_gate)
            {
                _watchers.Remove(watcher);
            }

            watcher.Channel.Writer.TryComplete();
        }
    }

    /// <summary>Called under the lock at the start of every operation: refuses a disposed store and ends expired sessions.</summary>
    private void Enter()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        SweepExpired(_time.GetUtcNow());
    }

    private void OnSweepTimer()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _sweepDue = null;
            var now = _time.GetUtcNow();
            SweepExpired(now);

            DateTimeOffset? next = null;
            foreach (var session in _sessions.Values)
            {
                if (next is not { } n || session.Deadline < n)
                {
                    next = session.Deadline;
                }
            }

            if (next is { } deadline)
            {
                ArmSweep(deadline);
            }
        }
    }

    private void ArmSweep(DateTimeOffset deadline)
    {
        var dueTime = deadline - _time.GetUtcNow();

        // Round up to whole milliseconds (timers truncate) so it never fires just before the deadline; cap it
        // under the timer's limit (about 49 days): it re-arms when it fires.
        var ms = Math.Clamp(Math.Ceiling(dueTime.TotalMilliseconds), 1, TimeSpan.FromDays(1).TotalMilliseconds);
        _sweepDue = deadline;
        _sweepTimer.Change(TimeSpan.FromMilliseconds(ms), Timeout.InfiniteTimeSpan);
    }

    private void SweepExpired(DateTimeOffset now)
    {
        List<Session>? expired = null;
        foreach (var session in _sessions.Values)
        {
            if (session.Deadline <= now)
            {
                (expired ??= []).Add(session);
            }
        }

        if (expired is null)
        {
            return;
        }

        expired.Sort(static (a, b) => a.Deadline != b.Deadline ? a.Deadline.CompareTo(b.Deadline) : string.CompareOrdinal(a.Id, b.Id));
        foreach (var session in expired)
        {
            EndSession(session);
        }
    }

    /// <summary>Removes the session and deletes its keys in key order, one revision each.</summary>
    private void EndSession(Session session)
    {
        _sessions.Remove(session.Id);
        var keys = session.Keys.ToArray();
        Array.Sort(keys, StringComparer.Ordinal);
        foreach (var key in keys)
        {
            if (_entries.TryGetValue(key, out var entry) && entry.SessionId == session.Id)
            {
                ApplyDelete(entry, ++_revision);
            }
        }
    }

    private void ApplyPut(string key, ReadOnlyMemory<byte> value, Session? session, long revision)
    {
        _entries.TryGetValue(key, out var current);
        var entry = new KvEntry(key, value.ToArray(), current?.CreateRevision ?? revision, revision, session?.Id);
        _entries[key] = entry;

        if (current?.SessionId is { } previousSession && previousSession != session?.Id
            && _sessions.TryGetValue(previousSession, out var previous))
        {
            previous.Keys.Remove(key);
        }

        session?.Keys.Add(key);
        Publish(new WatchEvent(WatchEventKind.Put, entry, revision));
    }

    private void ApplyDelete(KvEntry current, long revision)
    {
        if (current.SessionId is { } sessionId && _sessions.TryGetValue(sessionId, out var session))
        {
            session.Keys.Remove(current.Key);
        }

        _entries.Remove(current.Key);
        Publish(new WatchEvent(WatchEventKind.Delete, current with { ModRevision = revision }, revision));
    }

    private void Publish(WatchEvent e)
    {
        _history.Enqueue(e);
        while (_history.Count > HistoryLimit)
        {
            _compactedRevision = _history.Dequeue().Revision;
        }

        foreach (var watcher in _watchers)
        {
            if (e.Revision > watcher.AfterRevision && e.Entry.Key.StartsWith(watcher.Prefix, StringComparison.Ordinal))
            {
                watcher.Channel.Writer.TryWrite(e);
            }
        }
    }

    private void ThrowIfCompacted(long afterRevision)
    {
        if (afterRevision < _compactedRevision)
        {
            throw new StoreCompactedException(afterRevision, _compactedRevision);
        }
    }

    private static bool Matches(KvEntry? current, long? expectedModRevision) => expectedModRevision switch
    {
        null => true,
        0 => current is null,
        { } expected => current is not null && current.ModRevision == expected,
    };

    private static DateTimeOffset DeadlineFrom(DateTimeOffset now, TimeSpan ttl) =>
        ttl < DateTimeOffset.MaxValue - now ? now + ttl : DateTimeOffset.MaxValue;

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

    private sealed class Session(string id, TimeSpan ttl)
    {
        public string Id { get; } = id;

        public TimeSpan Ttl { get; } = ttl;

        public DateTimeOffset Deadline { get; set; }

        public HashSet<string> Keys { get; } = new(StringComparer.Ordinal);
    }

    private sealed class Watcher(string prefix, long afterRevision)
    {
        public string Prefix { get; } = prefix;

        public long AfterRevision { get; } = afterRevision;

        public Channel<WatchEvent> Channel { get; } = System.Threading.Channels.Channel.CreateUnbounded<WatchEvent>(new UnboundedChannelOptions { SingleReader = true });
    }
}
