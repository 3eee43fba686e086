using System.Runtime.CompilerServices;
using GpuPool.Coordination.Consul.Internal;
using GpuPool.Coordination.Services;

namespace GpuPool.Coordination.Consul;

/// <summary>
/// The <see cref="IClusterStore"/> driver for Consul, over its HTTP API. Revisions are Consul's Raft indexes:
/// a key's CreateIndex and ModifyIndex, and <c>X-Consul-Index</c> for the store and for listings. Every write
/// goes through <c>/v1/txn</c>, so it is atomic and answers with the indexes it wrote. Sessions are Consul
/// sessions with behavior "delete", so their keys vanish with them; a session-bound key is one the session
/// holds with Consul's <c>lock</c> verb. Services are agent services with a TTL check.
/// </summary>
/// <remarks>
/// Where Consul differs from the contract (each is in docs/operations.md):
/// <list type="bullet">
/// <item>Session TTLs are whole seconds, at least the servers' <c>session_ttl_min</c> (10 s by default), and Consul
/// ends a session between one and two TTLs after its last renewal.</item>
/// <item>Keys bound to a session that ends are all deleted at one index, not one index each.</item>
/// <item>A put that changes nothing (same value, same session) keeps the key's ModifyIndex: Consul skips it.</item>
/// <item>Consul keeps no history, so a watch starts from its first listing of the prefix: when the prefix has
/// changed since <c>afterRevision</c>, the watch fails with <see cref="StoreCompactedException"/> rather than
/// guess what it missed; and changes that follow each other faster than a listing show as the key's latest
/// state (a key written twice shows once; a key created and deleted in between does not show).</item>
/// </list>
/// </remarks>
public sealed class ConsulClusterStore : IClusterStore
{
    /// <summary>How often a write is tried again after a concurrent change to a key it read.</summary>
    private const int MaxAttempts = 32;

    private readonly ConsulStoreOptions _options;
    private readonly ConsulHttpClient _client;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _disposed = new();
    private int _disposeState;

    /// <param name="options">Where Consul is; null: <see cref="ConsulStoreOptions.FromEnvironment"/>.</param>
    /// <param name="httpClient">The client to send requests with (the caller keeps it); null: one of the store's own.</param>
    /// <param name="timeProvider">The clock of retries and of the watches' rate limit.</param>
    public ConsulClusterStore(ConsulStoreOptions? options = null, HttpClient? httpClient = null, TimeProvider? timeProvider = null)
    {
        _options = options ?? ConsulStoreOptions.FromEnvironment();
        _options.Validate();
        _client = new ConsulHttpClient(_options, httpClient);
        _time = timeProvider ?? TimeProvider.System;
    }

    /// <summary>The Consul agent this store talks to.</summary>
    public Uri Address => _client.Address;

    /// <summary>The KV store's index: the highest index of any key written or deleted.</summary>
    public async ValueTask<long> GetRevisionAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        return await _client.GetKvIndexAsync(cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask<KvEntry?> GetAsync(string key, CancellationToken cancellationToken = default)
    {
        ValidateKey(key);
        ThrowIfDisposed();
        var pair = await _client.GetKeyAsync(key, cancellationToken).ConfigureAwait(false);
        return pair is null ? null : ToEntry(pair);
    }

    /// <summary>The entries under the prefix and the prefix's <c>X-Consul-Index</c>: the highest index of its keys and of its deletes that Consul still remembers.</summary>
    public async ValueTask<KvListing> ListAsync(string prefix, CancellationToken cancellationToken = default)
    {
        ValidatePrefix(prefix);
        ThrowIfDisposed();
        var (pairs, index) = await _client.ListAsync(prefix, 0, TimeSpan.Zero, cancellationToken).ConfigureAwait(false);
        return new KvListing(ToSortedEntries(pairs), index);
    }

    public async ValueTask<PutResult> PutAsync(string key, ReadOnlyMemory<byte> value, long? expectedModRevision = null, string? sessionId = null, CancellationToken cancellationToken = default)
    {
        ValidateKey(key);
        ValidateExpected(expectedModRevision);
        ThrowIfDisposed();
        if (sessionId is not null && !IsSessionId(sessionId))
        {
            // Consul session ids are UUIDs: anything else names no session.
            throw new StoreSessionNotFoundException(sessionId);
        }

        TxnWrite[] writes = [TxnWrite.Put(key, value.ToArray(), sessionId)];
        var strict = expectedModRevision is not null;
        for (var attempt = 0; ; attempt++)
        {
            var current = await ReadStateAsync(key, cancellationToken).ConfigureAwait(false);
            if (expectedModRevision is { } expected && !Matches(current, expected))
            {
                return new PutResult(false, current?.ModifyIndex ?? 0);
            }

            var ops = ConsulTxnPlanner.Plan([], writes, _ => current, strict);
            var response = await _client.TxnAsync(OpsOf(ops), cancellationToken).ConfigureAwait(false);
            if (response.Errors is not { Count: > 0 })
            {
                return new PutResult(true, ConsulTxnPlanner.IndexOf(response.Results, key));
            }

            var failure = ConsulTxnPlanner.Classify(ops, response.Errors);
            await ThrowForFailureAsync(failure, cancellationToken).ConfigureAwait(false);
            if (failure.LockDelay && strict)
            {
                // The key was just released by an ended session: Consul refuses to bind it for the lock delay.
                return new PutResult(false, current?.ModifyIndex ?? 0);
            }

            await BackoffAsync(attempt, $"the put of '{key}'", failure.Summary, cancellationToken).ConfigureAwait(false);
        }
    }

    public async ValueTask<bool> DeleteAsync(string key, long? expectedModRevision = null, CancellationToken cancellationToken = default)
    {
        ValidateKey(key);
        ValidateExpected(expectedModRevision);
        ThrowIfDisposed();
        if (expectedModRevision == 0)
        {
            // "Only if it does not exist": there is nothing to delete.
            return false;
        }

        // The first operation fails the transaction when the key is absent (get) or at another index
        // (check-index), so "was a key deleted" is answered atomically with the delete.
        var guard = expectedModRevision is { } expected
            ? Op(ConsulTxnPlanner.CheckIndex, key, (ulong)expected)
            : Op(ConsulTxnPlanner.Get, key);
        var response = await _client.TxnAsync([guard, Op(ConsulTxnPlanner.Delete, key)], cancellationToken).ConfigureAwait(false);
        if (response.Errors is not { Count: > 0 } errors)
        {
            return true;
        }

        if (errors.FirstOrDefault(e => e.What.Contains("Permission denied", StringComparison.OrdinalIgnoreCase)) is { } denied)
        {
            throw Denied(denied.What);
        }

        return false;
    }

    public async ValueTask<TxnResult> TransactAsync(IReadOnlyList<TxnCheck> checks, IReadOnlyList<TxnWrite> writes, CancellationToken cancellationToken = default)
    {
        TxnValidation.Validate(checks, writes);
        foreach (var check in checks)
        {
            ValidateKey(check.Key);
        }

        foreach (var write in writes)
        {
            ValidateKey(write.Key);
            if (write.SessionId is { } session && !IsSessionId(session))
            {
                throw new StoreSessionNotFoundException(session);
            }
        }

        ThrowIfDisposed();

        // Copied once, so every attempt writes what the caller passed.
        var copies = writes.Select(w => w with { Value = w.Value.ToArray() }).ToArray();

        // A key the transaction requires to be absent needs no read: if it exists, the check fails anyway.
        var absent = checks.Where(c => c.ExpectedModRevision == 0).Select(c => c.Key).ToHashSet(StringComparer.Ordinal);
        var toRead = copies.Where(w => !w.IsDelete && !absent.Contains(w.Key)).Select(w => w.Key).ToArray();
        var putKeys = copies.Where(w => !w.IsDelete).Select(w => w.Key).ToArray();

        for (var attempt = 0; ; attempt++)
        {
            var read = await Task.WhenAll(toRead.Select(async key => (key, state: await ReadStateAsync(key, cancellationToken).ConfigureAwait(false)))).ConfigureAwait(false);
            var states = read.ToDictionary(r => r.key, r => r.state, StringComparer.Ordinal);
            var ops = ConsulTxnPlanner.Plan(checks, copies, key => states.GetValueOrDefault(key), strict: false);
            if (ops.Count > ConsulTxnPlanner.MaxConsulOperations)
            {
                throw new ArgumentException(
                    $"this transaction needs {ops.Count} Consul operations, more than the {ConsulTxnPlanner.MaxConsulOperations} Consul takes: "
                    + "moving a key from one session to another takes two; split the transaction");
            }

            var response = await _client.TxnAsync(OpsOf(ops), cancellationToken).ConfigureAwait(false);
            if (response.Errors is not { Count: > 0 })
            {
                var revision = putKeys.Length == 0 ? 0 : putKeys.Max(key => ConsulTxnPlanner.IndexOf(response.Results, key));

                // Deletes leave no result to read the index from: the store's index now is at least theirs.
                return TxnResult.Committed(revision > 0 ? revision : await _client.GetKvIndexAsync(cancellationToken).ConfigureAwait(false));
            }

            var failure = ConsulTxnPlanner.Classify(ops, response.Errors);
            if (failure.PermissionDenied is { } denied)
            {
                throw Denied(denied);
            }

            if (failure.FailedChecks.Count > 0)
            {
                return new TxnResult(false, await _client.GetKvIndexAsync(cancellationToken).ConfigureAwait(false), failure.FailedChecks);
            }

            await ThrowForFailureAsync(failure, cancellationToken).ConfigureAwait(false);
            await BackoffAsync(attempt, "the transaction", failure.Summary, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Creates a Consul session with behavior "delete" and the configured lock delay. The TTL is rounded up to
    /// whole seconds and to the servers' minimum (<see cref="ConsulStoreOptions.SessionTtlMin"/>); the returned
    /// <see cref="StoreSession.Ttl"/> is the TTL the session has.
    /// </summary>
    public async ValueTask<StoreSession> CreateSessionAsync(TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ttl, TimeSpan.Zero);
        var effective = EffectiveSessionTtl(ttl, _options.SessionTtlMin);
        if (effective > ConsulStoreOptions.MaxSessionTtl)
        {
            throw new ArgumentOutOfRangeException(nameof(ttl), $"a Consul session TTL must be at most {ConsulStoreOptions.MaxSessionTtl.TotalHours} h, not {ttl}");
        }

        ThrowIfDisposed();
        var id = await _client.CreateSessionAsync(
            new ConsulSessionCreateRequest
            {
                Name = _options.SessionName,
                TTL = GoDuration.Format(effective),
                Behavior = "delete",
                LockDelay = GoDuration.Format(_options.LockDelay),
            },
            cancellationToken).ConfigureAwait(false);
        return new StoreSession(id, effective);
    }

    public async ValueTask<bool> KeepAliveAsync(string sessionId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sessionId);
        ThrowIfDisposed();
        return IsSessionId(sessionId) && await _client.RenewSessionAsync(sessionId, cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask RevokeSessionAsync(string sessionId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sessionId);
        ThrowIfDisposed();
        if (IsSessionId(sessionId))
        {
            await _client.DestroySessionAsync(sessionId, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Watches the prefix with blocking queries, turning each new listing into the puts and deletes since the
    /// last one. The first listing is taken on the first MoveNextAsync; when the prefix's index is then already
    /// past <paramref name="afterRevision"/>, the watch fails with <see cref="StoreCompactedException"/>: Consul
    /// cannot say what changed in between (a deleted key leaves nothing to list). See the class remarks for how
    /// quick successive changes show.
    /// </summary>
    public IAsyncEnumerable<WatchEvent> WatchAsync(string prefix, long afterRevision, CancellationToken cancellationToken = default)
    {
        ValidatePrefix(prefix);
        ArgumentOutOfRangeException.ThrowIfNegative(afterRevision);
        ThrowIfDisposed();
        return WatchCore(prefix, afterRevision, cancellationToken);
    }

    /// <summary>
    /// Registers the instance on the agent with one TTL check, <c>service:{id}</c>, that starts passing.
    /// Re-registering replaces the instance and its check.
    /// </summary>
    public async ValueTask RegisterServiceAsync(ServiceRegistration registration, CancellationToken cancellationToken = default)
    {
        KvServiceRegistry.Validate(registration);
        ThrowIfDisposed();
        await _client.RegisterServiceAsync(
            new ConsulServiceRegistration
            {
                ID = registration.Id,
                Name = registration.Name,
                Address = registration.Address,
                Port = registration.Port,
                Meta = new Dictionary<string, string>(registration.Meta, StringComparer.Ordinal),
                Check = new ConsulServiceCheck
                {
                    CheckID = CheckIdOf(registration.Id),
                    Name = $"gpupool TTL check of {registration.Id}",
                    TTL = GoDuration.Format(registration.CheckTtl),
                    Status = "passing",
                    DeregisterCriticalServiceAfter = _options.DeregisterCriticalServiceAfter is { } after ? GoDuration.Format(after) : null,
                },
            },
            cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask<bool> PassServiceCheckAsync(string serviceId, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(serviceId);
        ThrowIfDisposed();
        return await _client.PassCheckAsync(CheckIdOf(serviceId), cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask DeregisterServiceAsync(string serviceId, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(serviceId);
        ThrowIfDisposed();
        await _client.DeregisterServiceAsync(serviceId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The catalog's instances of the service; one is passing when all its checks, its node's included, are passing.</summary>
    public async ValueTask<IReadOnlyList<ServiceInstance>> ListServicesAsync(string serviceName, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(serviceName);
        ThrowIfDisposed();
        var entries = await _client.HealthServiceAsync(serviceName, cancellationToken).ConfigureAwait(false);
        return ToServiceInstances(entries);
    }

    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposeState, 1) != 0)
        {
            return ValueTask.CompletedTask;
        }

        // Ends the watches (their MoveNextAsync returns false), then the connections.
        _disposed.Cancel();
        _client.Dispose();
        _disposed.Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>The TTL a session gets: whole seconds, rounded up, and at least <paramref name="minimum"/>.</summary>
    internal static TimeSpan EffectiveSessionTtl(TimeSpan requested, TimeSpan minimum)
    {
        static long CeilSeconds(TimeSpan t) => (t.Ticks + TimeSpan.TicksPerSecond - 1) / TimeSpan.TicksPerSecond;
        return TimeSpan.FromSeconds(Math.Max(CeilSeconds(requested), CeilSeconds(minimum)));
    }

    internal static string CheckIdOf(string serviceId) => "service:" + serviceId;

    internal static bool IsSessionId(string sessionId) => Guid.TryParseExact(sessionId, "D", out _);

    internal static IReadOnlyList<ServiceInstance> ToServiceInstances(IEnumerable<ConsulServiceEntry> entries)
    {
        var instances = new List<(ServiceInstance Instance, string Node)>();
        foreach (var entry in entries)
        {
            if (entry.Service is not { } service)
            {
                continue;
            }

            var passing = (entry.Checks ?? []).All(c => c.Status == "passing");
            var address = string.IsNullOrEmpty(service.Address) ? entry.Node?.Address ?? "" : service.Address;
            var meta = new Dictionary<string, string>(service.Meta ?? [], StringComparer.Ordinal);
            instances.Add((new ServiceInstance(service.ID, service.Service, address, service.Port, meta, passing ? ServiceHealth.Passing : ServiceHealth.Critical), entry.Node?.Node ?? ""));
        }

        return [.. instances
            .OrderBy(i => i.Instance.Id, StringComparer.Ordinal)
            .ThenBy(i => i.Node, StringComparer.Ordinal)
            .Select(i => i.Instance)];
    }

    /// <summary>Keys travel in URL paths: refuse what Consul's HTTP API or URL normalisation would change or reject.</summary>
    internal static void ValidateKey(string key)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ValidatePath(key, "key");
    }

    internal static void ValidatePrefix(string prefix)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        if (prefix.Length > 0)
        {
            ValidatePath(prefix, "prefix");
        }
    }

    private static void ValidatePath(string value, string what)
    {
        if (value[0] == '/')
        {
            throw new ArgumentException($"a Consul {what} must not start with '/': '{value}'");
        }

        if (value.Contains("//", StringComparison.Ordinal))
        {
            throw new ArgumentException($"a Consul {what} must not hold an empty segment ('//'), which Consul's HTTP API collapses: '{value}'");
        }

        if (value.Split('/').Any(segment => segment is "." or ".."))
        {
            throw new ArgumentException($"a Consul {what} must not hold a '.' or '..' segment, which URLs resolve away: '{value}'");
        }

        if (char.IsWhiteSpace(value[0]) || char.IsWhiteSpace(value[^1]) || value.Any(char.IsControl))
        {
            throw new ArgumentException($"a Consul {what} must not start or end with whitespace or hold control characters, which Consul refuses: '{value}'");
        }
    }

    private async IAsyncEnumerable<WatchEvent> WatchCore(string prefix, long afterRevision, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        CancellationTokenSource linked;
        try
        {
            linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _disposed.Token);
        }
        catch (ObjectDisposedException)
        {
            yield break;
        }

        using (linked)
        {
            var first = await ListOrEndAsync(prefix, 0, linked.Token, cancellationToken).ConfigureAwait(false);
            if (first is not { } listing)
            {
                yield break;
            }

            if (listing.Index > afterRevision)
            {
                throw new StoreCompactedException(afterRevision, listing.Index);
            }

            var state = listing.Entries.ToDictionary(e => e.Key, StringComparer.Ordinal);
            var stateIndex = listing.Index;
            var queryIndex = Math.Max(listing.Index, 1);
            var limiter = new PollLimiter(_time, _options.WatchMinInterval);
            while (true)
            {
                if (!await limiter.WaitAsync(linked.Token, cancellationToken).ConfigureAwait(false))
                {
                    yield break;
                }

                var next = await ListOrEndAsync(prefix, queryIndex, linked.Token, cancellationToken).ConfigureAwait(false);
                if (next is not { } changed)
                {
                    yield break;
                }

                var events = ConsulWatchDiff.Diff(state, changed.Entries, stateIndex, changed.Index);
                state = changed.Entries.ToDictionary(e => e.Key, StringComparer.Ordinal);
                stateIndex = Math.Max(stateIndex, events.Count > 0 ? Math.Max(changed.Index, events[^1].Revision) : changed.Index);

                // Consul's advice: an index that went backwards resets the loop (index 0 answers at once).
                queryIndex = changed.Index < queryIndex ? 0 : Math.Max(changed.Index, 1);

                foreach (var e in events)
                {
                    if (e.Revision > afterRevision)
                    {
                        yield return e;
                    }
                }
            }
        }
    }

    /// <summary>A listing, or null when the store was disposed (the watch then ends quietly).</summary>
    private async Task<(List<KvEntry> Entries, long Index)?> ListOrEndAsync(string prefix, long index, CancellationToken token, CancellationToken callerToken)
    {
        try
        {
            var (pairs, listingIndex) = await _client.ListAsync(prefix, index, _options.WatchWait, token).ConfigureAwait(false);
            return (ToSortedEntries(pairs), listingIndex);
        }
        catch (Exception ex) when ((ex is OperationCanceledException or ObjectDisposedException) && _disposeState != 0 && !callerToken.IsCancellationRequested)
        {
            return null;
        }
    }

    private async Task<ConsulKeyState?> ReadStateAsync(string key, CancellationToken cancellationToken)
    {
        var pair = await _client.GetKeyAsync(key, cancellationToken).ConfigureAwait(false);
        return pair is null ? null : new ConsulKeyState(ConsulTxnPlanner.ToRevision(pair.ModifyIndex), string.IsNullOrEmpty(pair.Session) ? null : pair.Session);
    }

    /// <summary>Throws for what retrying cannot fix: a denied ACL, or a lock that failed because its session is gone.</summary>
    private async Task ThrowForFailureAsync(ConsulTxnFailure failure, CancellationToken cancellationToken)
    {
        if (failure.PermissionDenied is { } denied)
        {
            throw Denied(denied);
        }

        foreach (var session in failure.LockSessions)
        {
            if (!await _client.SessionExistsAsync(session, cancellationToken).ConfigureAwait(false))
            {
                throw new StoreSessionNotFoundException(session);
            }
        }
    }

    /// <summary>Waits before reading again after a concurrent change, with jittered exponential backoff; gives up after <see cref="MaxAttempts"/>.</summary>
    private async Task BackoffAsync(int attempt, string what, string reason, CancellationToken cancellationToken)
    {
        if (attempt + 1 >= MaxAttempts)
        {
            throw new InvalidOperationException($"consul at {Address}: {what} kept meeting concurrent changes and was given up after {MaxAttempts} attempts (last: {reason})");
        }

        var ceiling = Math.Min(5.0 * Math.Pow(2, Math.Min(attempt, 10)), 500.0);
        await Task.Delay(TimeSpan.FromMilliseconds(ceiling * (0.5 + (Random.Shared.NextDouble() / 2))), _time, cancellationToken).ConfigureAwait(false);
    }

    private UnauthorizedAccessException Denied(string what) =>
        new($"consul at {Address} refused the transaction ({what}); set an ACL token with key write on these keys ({nameof(ConsulStoreOptions)}.{nameof(ConsulStoreOptions.Token)} or {ConsulStoreOptions.TokenVariable})");

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposeState != 0, this);

    private static bool Matches(ConsulKeyState? current, long expected) =>
        expected == 0 ? current is null : current is { } c && c.ModifyIndex == expected;

    private static void ValidateExpected(long? expectedModRevision)
    {
        if (expectedModRevision is { } expected)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(expected, nameof(expectedModRevision));
        }
    }

    private static List<KvEntry> ToSortedEntries(List<ConsulKvPair> pairs)
    {
        var entries = pairs.Select(ToEntry).ToList();
        entries.Sort(static (a, b) => string.CompareOrdinal(a.Key, b.Key));
        return entries;
    }

    private static KvEntry ToEntry(ConsulKvPair pair) =>
        new(pair.Key, pair.Value ?? [], ConsulTxnPlanner.ToRevision(pair.CreateIndex), ConsulTxnPlanner.ToRevision(pair.ModifyIndex), string.IsNullOrEmpty(pair.Session) ? null : pair.Session);

    private static List<ConsulTxnOp> OpsOf(List<ConsulPlannedOp> ops) => ops.ConvertAll(o => o.Op);

    private static ConsulTxnOp Op(string verb, string key, ulong? index = null) =>
        new() { KV = new ConsulTxnKvOp { Verb = verb, Key = key, Index = index } };

    /// <summary>
    /// A token bucket of two: blocking queries go out at once while the prefix changes rarely, and no more than
    /// one per interval when it churns (Consul's docs ask clients to rate limit their blocking loops).
    /// </summary>
    private sealed class PollLimiter(TimeProvider time, TimeSpan interval)
    {
        private const double Burst = 2;
        private double _tokens = Burst;
        private long _last = time.GetTimestamp();

        /// <summary>False when the store was disposed while waiting.</summary>
        public async Task<bool> WaitAsync(CancellationToken token, CancellationToken callerToken)
        {
            if (interval <= TimeSpan.Zero)
            {
                return true;
            }

            var now = time.GetTimestamp();
            _tokens = Math.Min(Burst, _tokens + (time.GetElapsedTime(_last, now) / interval));
            _last = now;
            if (_tokens < 1)
            {
                try
                {
                    await Task.Delay(interval * (1 - _tokens), time, token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!callerToken.IsCancellationRequested)
                {
                    return false;
                }

                _tokens = 1;
                _last = time.GetTimestamp();
            }

            _tokens -= 1;
            return true;
        }
    }
}
