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
/// <remarks>
/// <para>
/// Made with the constructor it lives in memory only. Made with <see cref="Open(EmbeddedStoreOptions, TimeProvider?)"/>
/// it keeps its state in one file (format: <see cref="StoreFormat"/>): a snapshot of the live state followed by
/// a log of the commits since. Each commit (put, delete, transaction, session created or ended; not
/// keepalives) is one checksummed record, appended before the change is applied in memory and before the
/// call returns, so the file never lags what a caller was told, and a transaction is one record: after a
/// crash it is there whole or not at all. When the file outgrows its bound the store writes a fresh
/// snapshot beside it and renames it over the file: a log whose replay time and size stay bounded, without
/// a second file whose agreement with the first would need checking.
/// </para>
/// <para>
/// On open the snapshot and log are replayed: entries, revisions (the counter never goes backwards) and
/// sessions come back. Sessions get a fresh deadline of one TTL from the reopen, since the store cannot
/// know how long it was down: a client that is still alive resumes its keepalives, and an abandoned session
/// ends one TTL after the restart. Watch history does not survive: a watch from a revision before the
/// reopened store's first one fails with <see cref="StoreCompactedException"/>. A last record cut short by a
/// crash is dropped and reported in <see cref="RecoveryWarnings"/>; any other damage fails the open with
/// <see cref="EmbeddedStoreCorruptException"/>, and the file is left untouched. The file is locked while
/// open: a second store on it fails with <see cref="EmbeddedStoreInUseException"/>.
/// </para>
/// </remarks>
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

    /// <summary>Where commits are logged; null for a store in memory only.</summary>
    private readonly StoreFile? _file;

    private long _revision;

    /// <summary>Every event with a revision greater than this is still in <see cref="_history"/>.</summary>
    private long _compactedRevision;

    /// <summary>When the sweep timer is due, or null when it is not armed.</summary>
    private DateTimeOffset? _sweepDue;

    private bool _disposed;

    /// <summary>A store in memory only: its state ends with it.</summary>
    public EmbeddedClusterStore(TimeProvider? timeProvider = null)
        : this(timeProvider, file: null)
    {
    }

    private EmbeddedClusterStore(TimeProvider? timeProvider, StoreFile? file)
    {
        _time = timeProvider ?? TimeProvider.System;
        _file = file;
        _services = new KvServiceRegistry(this);

        // The timer outlives the caller's context: don't capture its AsyncLocals.
        using (ExecutionContext.IsFlowSuppressed() ? default(AsyncFlowControl?) : ExecutionContext.SuppressFlow())
        {
            _sweepTimer = _time.CreateTimer(static state => ((EmbeddedClusterStore)state!).OnSweepTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>The store file, or null for a store in memory only.</summary>
    public string? FilePath => _file?.Path;

    /// <summary>What opening the file had to repair (a torn last record dropped); empty when nothing.</summary>
    public IReadOnlyList<string> RecoveryWarnings { get; private set; } = [];

    /// <summary>Opens (or creates) the store kept in <paramref name="path"/>, with the default options.</summary>
    public static EmbeddedClusterStore Open(string path, TimeProvider? timeProvider = null) =>
        Open(new EmbeddedStoreOptions(path), timeProvider);

    /// <summary>
    /// Opens (or creates) the store kept in <see cref="EmbeddedStoreOptions.Path"/> and replays it. Fails with
    /// <see cref="EmbeddedStoreInUseException"/> when another store holds the file, and with
    /// <see cref="EmbeddedStoreCorruptException"/> when it is damaged other than at its last record.
    /// </summary>
    public static EmbeddedClusterStore Open(EmbeddedStoreOptions options, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentException.ThrowIfNullOrWhiteSpace(options.Path, "options.Path");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.CompactionThreshold, "options.CompactionThreshold");

        var store = new EmbeddedClusterStore(timeProvider, StoreFile.Open(options));
        try
        {
            lock (store._gate)
            {
                store.Recover();
            }
        }
        catch
        {
            store.DisposeCore();
            throw;
        }

        return store;
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

            var revision = _revision + 1;
            if (_file is { } file)
            {
                var record = file.Begin(RecordType.Put);
                record.WriteInt64(revision);
                record.WriteString(key);
                record.WriteBytes(value.Span);
                record.WriteNullableString(sessionId);
                file.Append();
            }

            _revision = revision;
            ApplyPut(key, value, session, revision);
            CompactIfDue();
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

            var revision = _revision + 1;
            if (_file is { } file)
            {
                var record = file.Begin(RecordType.Delete);
                record.WriteInt64(revision);
                record.WriteString(key);
                file.Append();
            }

            _revision = revision;
            ApplyDelete(current, revision);
            CompactIfDue();
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

            // One revision for the whole transaction, as etcd and Consul do; none when it changes nothing.
            var wrote = false;
            foreach (var write in writes)
            {
                wrote |= !write.IsDelete || _entries.ContainsKey(write.Key);
            }

            if (!wrote)
            {
                return ValueTask.FromResult(TxnResult.Committed(_revision));
            }

            var revision = _revision + 1;
            if (_file is { } file)
            {
                var record = file.Begin(RecordType.Txn);
                record.WriteInt64(revision);
                record.WriteInt32(writes.Count);
                foreach (var write in writes)
                {
                    record.WriteByte(write.IsDelete ? (byte)1 : (byte)0);
                    record.WriteString(write.Key);
                    if (!write.IsDelete)
                    {
                        record.WriteBytes(write.Value.Span);
                        record.WriteNullableString(write.SessionId);
                    }
                }

                file.Append();
            }

            _revision = revision;
            ApplyTxn(writes, sessions, revision);
            CompactIfDue();
            return ValueTask.FromResult(TxnResult.Committed(revision));
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

            if (_file is { } file)
            {
                var record = file.Begin(RecordType.SessionCreate);
                record.WriteString(id);
                record.WriteInt64(ttl.Ticks);
                file.Append();
            }

            var session = new Session(id, ttl) { Deadline = DeadlineFrom(_time.GetUtcNow(), ttl) };
            _sessions.Add(id, session);
            CompactIfDue();
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

    /// <summary>Closes the store (and its file: every commit is already in it, so there is nothing to flush).</summary>
    public ValueTask DisposeAsync()
    {
        DisposeCore();
        return ValueTask.CompletedTask;
    }

    private void DisposeCore()
    {
        Watcher[] watchers;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _sweepDue = null;
            watchers = [.. _watchers];
            _watchers.Clear();
            _file?.Dispose();
        }

        _sweepTimer.Dispose();
        foreach (var watcher in watchers)
        {
            watcher.Channel.Writer.TryComplete();
        }
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

    /// <summary>Rewrites the file as a snapshot when it has outgrown its bound; called after a commit is applied, so the snapshot holds it.</summary>
    private void CompactIfDue()
    {
        if (_file is { CompactionDue: true } file)
        {
            file.Compact(_revision, [.. _sessions.Values.Select(s => (s.Id, s.Ttl))], _entries.Values);
        }
    }

    /// <summary>
    /// Rebuilds the state from the file (under the lock, before anyone else can see the store): the snapshot
    /// that opens it, then the log, checking that every record follows from the state before it.
    /// </summary>
    private void Recover()
    {
        var file = _file!;
        var bytes = file.ReadAll();
        if (bytes.Length == 0)
        {
            // New, or created by an open that crashed before writing anything.
            file.WriteSnapshot(0, [], []);
            return;
        }

        if (!bytes.AsSpan().StartsWith(StoreFormat.Magic))
        {
            throw new EmbeddedStoreCorruptException(file.Path, 0, "it does not start with the GpuPool store header (not a store file, or one from a newer version)");
        }

        // The snapshot (a checkpoint, its sessions, its entries) was whole when it was renamed into place, so
        // anything short of it is damage; after it, a torn last record is what a crash leaves.
        var offset = StoreFormat.Magic.Length;
        long snapshotLength = 0;
        int sessionsLeft = 0, entriesLeft = 0;
        RecordType? snapshotNeeds = RecordType.Checkpoint;
        while (true)
        {
            var status = StoreFormat.Read(bytes.AsSpan(offset), out var payload, out var consumed, out var problem);
            if (status == ReadStatus.Corrupt || (status != ReadStatus.Record && snapshotNeeds is not null))
            {
                throw new EmbeddedStoreCorruptException(file.Path, offset, problem ?? "the file ends inside its snapshot");
            }

            if (status == ReadStatus.Torn)
            {
                RecoveryWarnings = [$"dropped the last record of '{file.Path}' at byte {offset}, cut short by a crash while it was written ({problem}); the store resumes at revision {_revision}"];
            }

            if (status != ReadStatus.Record)
            {
                break;
            }

            try
            {
                var type = !payload.IsEmpty ? (RecordType)payload[0] : throw new InvalidDataException("an empty record");
                var fields = new RecordReader(payload[1..]);
                if (snapshotNeeds is { } needed && type != needed)
                {
                    throw new InvalidDataException($"a {type} record where the snapshot's next {needed} record should be");
                }

                if (snapshotNeeds is null && type is RecordType.Checkpoint or RecordType.EntryState)
                {
                    throw new InvalidDataException($"a {type} record after the snapshot");
                }

                if (type == RecordType.Checkpoint)
                {
                    _revision = fields.ReadInt64();
                    sessionsLeft = fields.ReadInt32();
                    entriesLeft = fields.ReadInt32();
                    if (_revision < 0 || sessionsLeft < 0 || entriesLeft < 0)
                    {
                        throw new InvalidDataException("the snapshot's checkpoint holds a negative number");
                    }
                }
                else
                {
                    Replay(type, ref fields);
                    sessionsLeft -= snapshotNeeds == RecordType.SessionCreate ? 1 : 0;
                    entriesLeft -= snapshotNeeds == RecordType.EntryState ? 1 : 0;
                }

                fields.EnsureEnd();
            }
            catch (InvalidDataException ex)
            {
                throw new EmbeddedStoreCorruptException(file.Path, offset, ex.Message);
            }

            offset += consumed;
            if (snapshotNeeds is not null)
            {
                snapshotNeeds = sessionsLeft > 0 ? RecordType.SessionCreate : entriesLeft > 0 ? RecordType.EntryState : null;
                snapshotLength = offset;
            }
        }

        file.Recovered(offset, snapshotLength);

        // History does not survive a restart: watches resume from the reopened store's revision.
        _history.Clear();
        _compactedRevision = _revision;
        var now = _time.GetUtcNow();
        DateTimeOffset? first = null;
        foreach (var session in _sessions.Values)
        {
            session.Deadline = DeadlineFrom(now, session.Ttl);
            first = first is { } f && f < session.Deadline ? f : session.Deadline;
        }

        if (first is { } due)
        {
            ArmSweep(due);
        }
    }

    private void Replay(RecordType type, ref RecordReader fields)
    {
        switch (type)
        {
            case RecordType.EntryState:
            {
                var key = fields.ReadString();
                var value = fields.ReadBytes();
                var create = fields.ReadInt64();
                var mod = fields.ReadInt64();
                var session = ReplaySession(fields.ReadNullableString());
                if (create <= 0 || create > mod || mod > _revision || !_entries.TryAdd(key, new KvEntry(key, value, create, mod, session?.Id)))
                {
                    throw new InvalidDataException($"the snapshot's entry '{key}' does not fit the snapshot (revisions {create}..{mod} of {_revision}, or a duplicate)");
                }

                session?.Keys.Add(key);
                break;
            }

            case RecordType.SessionCreate:
            {
                var id = fields.ReadString();
                var ttl = TimeSpan.FromTicks(fields.ReadInt64());
                if (ttl <= TimeSpan.Zero || !_sessions.TryAdd(id, new Session(id, ttl) { Deadline = DateTimeOffset.MaxValue }))
                {
                    throw new InvalidDataException($"session '{id}' is created twice or with a TTL of {ttl}");
                }

                break;
            }

            case RecordType.SessionEnd:
            {
                var session = ReplaySession(fields.ReadString())!;
                var after = fields.ReadInt64();
                ApplyEndSession(session);
                if (after != _revision)
                {
                    throw new InvalidDataException($"session '{session.Id}' ends at revision {_revision}, and its record says {after}");
                }

                break;
            }

            case RecordType.Put:
            {
                var revision = NextRevision(fields.ReadInt64());
                var key = fields.ReadString();
                var value = fields.ReadBytes();
                ApplyPut(key, value, ReplaySession(fields.ReadNullableString()), revision);
                _revision = revision;
                break;
            }

            case RecordType.Delete:
            {
                var revision = NextRevision(fields.ReadInt64());
                var key = fields.ReadString();
                ApplyDelete(_entries.GetValueOrDefault(key) ?? throw new InvalidDataException($"a delete of '{key}', which does not exist"), revision);
                _revision = revision;
                break;
            }

            case RecordType.Txn:
            {
                var revision = NextRevision(fields.ReadInt64());
                var count = fields.ReadInt32();
                if (count is <= 0 or > TxnLimits.MaxOperations)
                {
                    throw new InvalidDataException($"a transaction of {count} writes");
                }

                var writes = new TxnWrite[count];
                var sessions = new Session?[count];
                for (var i = 0; i < count; i++)
                {
                    var delete = fields.ReadByte() != 0;
                    var key = fields.ReadString();
                    if (delete)
                    {
                        writes[i] = TxnWrite.Delete(key);
                    }
                    else
                    {
                        var value = fields.ReadBytes();
                        sessions[i] = ReplaySession(fields.ReadNullableString());
                        writes[i] = TxnWrite.Put(key, value, sessions[i]?.Id);
                    }
                }

                ApplyTxn(writes, sessions, revision);
                _revision = revision;
                break;
            }

            default:
                throw new InvalidDataException($"an unknown record type {(byte)type}");
        }
    }

    private Session? ReplaySession(string? id) =>
        id is null ? null : _sessions.GetValueOrDefault(id) ?? throw new InvalidDataException($"session '{id}' is used where it does not exist");

    private long NextRevision(long revision) =>
        revision == _revision + 1 ? revision : throw new InvalidDataException($"revision {revision} follows revision {_revision}");

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
            try
            {
                SweepExpired(now);
            }
            catch (StoreUnavailableException)
            {
                // The file refused the session's end, so it has not ended: try again shortly (every call
                // tries too, and reports the failure to its caller).
                ArmSweep(now + TimeSpan.FromSeconds(1));
                return;
            }

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

    /// <summary>Logs the session's end, then removes it and deletes its keys in key order, one revision each.</summary>
    private void EndSession(Session session)
    {
        if (_file is { } file)
        {
            var record = file.Begin(RecordType.SessionEnd);
            record.WriteString(session.Id);
            record.WriteInt64(_revision + session.Keys.Count(key => _entries.GetValueOrDefault(key)?.SessionId == session.Id));
            file.Append();
        }

        ApplyEndSession(session);
        CompactIfDue();
    }

    private void ApplyEndSession(Session session)
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

    private void ApplyTxn(IReadOnlyList<TxnWrite> writes, Session?[] sessions, long revision)
    {
        for (var i = 0; i < writes.Count; i++)
        {
            var write = writes[i];
            if (!write.IsDelete)
            {
                ApplyPut(write.Key, write.Value, sessions[i], revision);
            }
            else if (_entries.TryGetValue(write.Key, out var current))
            {
                ApplyDelete(current, revision);
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
