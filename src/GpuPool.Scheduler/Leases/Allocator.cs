using System.Security.Cryptography;
using System.Threading.Channels;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using GpuPool.Coordination;
using GpuPool.Coordination.Election;
using GpuPool.Protocol;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Placement;
using GpuPool.Scheduler.Policy;
using Microsoft.Extensions.Logging;

namespace GpuPool.Scheduler.Leases;

/// <summary>
/// The leader's allocation engine. One loop owns the <see cref="PoolModel"/>, the quotas, the priority classes
/// and the queue, and when each lease expires (<see cref="LeaseLiveness"/>); it takes work from a channel
/// (requests, keepalives, releases, store changes, ticks) in batches, decides every waiting request in priority
/// order, and commits a batch's grants and the leases it ends (released, expired, lost) off the loop, many per
/// transaction, while it decides the next; the loop settles every commit itself. Every commit is a store
/// transaction fenced by the leader's term, so a deposed leader writes nothing; the model is charged before the
/// commit, so two requests never take the same room, and a lease's room is given back once its record is gone.
/// </summary>
internal sealed class Allocator : IAsyncDisposable
{
    private const int MaxBatch = 512;

    /// <summary>Batches being committed at once: the loop decides the next while the last one's round trips to the store are under way.</summary>
    private const int MaxCommitsInFlight = 2;

    private readonly SchedulerOptions _options;
    private readonly IClusterStore _store;
    private readonly LeaderTerm? _term;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly Channel<Work> _work = Channel.CreateUnbounded<Work>(new UnboundedChannelOptions { SingleReader = true });
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _loops = [];

    private readonly PoolModel _model = new();
    private readonly Dictionary<string, Quota> _quotas = new(StringComparer.Ordinal);
    private readonly Dictionary<string, PriorityClass> _classes = new(StringComparer.Ordinal);
    private readonly List<Pending> _pending = [];

    /// <summary>Victims being preempted: lease id → when the broker and the scheduler revoke it.</summary>
    private readonly Dictionary<string, DateTimeOffset> _evicting = new(StringComparer.Ordinal);

    private readonly HashSet<string> _loaded = new(StringComparer.Ordinal);

    private readonly LeaseLiveness _liveness = new();

    /// <summary>Leases to end that wait for the next commit, and every lease being ended (waiting or committing), by id.</summary>
    private readonly List<Removal> _removals = [];
    private readonly Dictionary<string, Removal> _removing = new(StringComparer.Ordinal);

    /// <summary>Guards <see cref="_tombstones"/>, which commits running at once share.</summary>
    private readonly SemaphoreSlim _tombstoneGate = new(1, 1);

    /// <summary>The highest store revision applied per watched prefix, and the admin calls waiting to see theirs.</summary>
    private readonly Dictionary<string, long> _applied = new(StringComparer.Ordinal);
    private readonly List<SyncWork> _syncs = [];
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _sequence;

    /// <summary>The unrenewed session tombstones are written under, and when it was made.</summary>
    private (string Id, DateTimeOffset Created)? _tombstones;
    private ITimer? _ticker;

    /// <summary>Batches whose commit has started and whose <see cref="CommittedWork"/> the loop has not settled (the loop's own count).</summary>
    private int _commitsInFlight;

    /// <summary>Commits under way, so that disposing waits for them (each answers its callers).</summary>
    private readonly List<Task> _commits = [];

    public Allocator(SchedulerOptions options, IClusterStore store, LeaderTerm? term, ILogger logger)
    {
        _options = options;
        _store = store;
        _term = term;
        _logger = logger;
        _time = options.TimeProvider;
    }

    private static readonly string[] WatchedPrefixes = [StoreKeys.Brokers, StoreKeys.Leases, StoreKeys.Quotas, StoreKeys.Priorities, StoreKeys.Draining];

    /// <summary>Starts the loops; completes when the first listing of every prefix has been applied.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await SeedPriorityClassesAsync(cancellationToken).ConfigureAwait(false);
        _loops.Add(Task.Run(() => RunAsync(_stop.Token), CancellationToken.None));
        foreach (var prefix in WatchedPrefixes)
        {
            _loops.Add(Task.Run(() => WatchAsync(prefix, _stop.Token), CancellationToken.None));
        }

        using (ExecutionContext.SuppressFlow())
        {
            _ticker = _time.CreateTimer(static s => ((Allocator)s!)._work.Writer.TryWrite(Tick.Instance), this, _options.TickInterval, _options.TickInterval);
        }

        await _ready.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<AllocateReply> AllocateAsync(AllocateRequest request, CancellationToken cancellationToken)
    {
        var work = new AllocateWork(request, _time.GetUtcNow());
        if (!_work.Writer.TryWrite(work))
        {
            throw NotLeading();
        }

        using var registration = cancellationToken.Register(static w => ((AllocateWork)w!).Reply.TrySetCanceled(), work);
        return await work.Reply.Task.ConfigureAwait(false);
    }

    /// <summary>Renews a lease (its gang's members with it) for its TTL; null when it has ended or is ending.</summary>
    public async Task<LeaseRecord?> RenewAsync(string leaseId, CancellationToken cancellationToken)
    {
        var work = new RenewWork(leaseId);
        if (!_work.Writer.TryWrite(work))
        {
            throw NotLeading();
        }

        return await work.Reply.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Ends a lease (a gang's members with it) on behalf of its holder; completes when its record is gone from the
    /// store. False when it had ended already.
    /// </summary>
    public async Task<bool> ReleaseAsync(string leaseId, CancellationToken cancellationToken)
    {
        var work = new ReleaseWork(leaseId);
        if (!_work.Writer.TryWrite(work))
        {
            throw NotLeading();
        }

        return await work.Reply.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Completes once this leader has applied the store's changes under <paramref name="prefix"/> up to
    /// <paramref name="revision"/>: an admin's change is in force when its call returns.
    /// </summary>
    public async Task WaitAppliedAsync(string prefix, long revision, CancellationToken cancellationToken)
    {
        var work = new SyncWork(prefix, revision);
        if (!_work.Writer.TryWrite(work))
        {
            throw NotLeading();
        }

        await work.Done.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<ClusterView> SnapshotAsync(CancellationToken cancellationToken)
    {
        var work = new SnapshotWork();
        if (!_work.Writer.TryWrite(work))
        {
            throw NotLeading();
        }

        return await work.Reply.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }

        _work.Writer.TryComplete();
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_ticker is not null)
        {
            await _ticker.DisposeAsync().ConfigureAwait(false);
        }

        try
        {
            await Task.WhenAll(_loops).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        // Commits under way end (their store calls are cancelled) and answer their callers themselves.
        Task[] commits;
        lock (_commits)
        {
            commits = [.. _commits];
        }

        await Task.WhenAll(commits).ConfigureAwait(false);

        // Whatever was still waiting learns that this replica stopped leading.
        while (_work.Reader.TryRead(out var left))
        {
            Fail(left, NotLeading());
        }

        foreach (var pending in _pending)
        {
            pending.Work.Reply.TrySetException(NotLeading());
        }

        _pending.Clear();
        foreach (var removal in _removals)
        {
            removal.Answer(NotLeading());
        }

        _removals.Clear();
        _stop.Dispose();
        _tombstoneGate.Dispose();
    }

    private static GpuPoolException NotLeading()
        => new(ErrorCode.Unavailable, "this scheduler replica stopped leading the pool while the request waited; retry (another replica takes over)");

    private async Task SeedPriorityClassesAsync(CancellationToken cancellationToken)
    {
        var existing = await _store.ListAsync(StoreKeys.Priorities, cancellationToken).ConfigureAwait(false);
        if (existing.Entries.Count > 0)
        {
            return;
        }

        foreach (var cls in PriorityClasses.Defaults)
        {
            await _store.PutAsync(StoreKeys.Priorities + cls.Name, cls.ToByteArray(), expectedModRevision: 0, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Lists a prefix and follows it, feeding the loop; starts over from a fresh listing when the watch breaks.</summary>
    private async Task WatchAsync(string prefix, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                var listing = await _store.ListAsync(prefix, cancellationToken).ConfigureAwait(false);
                _work.Writer.TryWrite(new ResetWork(prefix, listing.Entries, listing.Revision));
                await foreach (var change in _store.WatchAsync(prefix, listing.Revision, cancellationToken).ConfigureAwait(false))
                {
                    _work.Writer.TryWrite(new ChangeWork(prefix, change));
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is StoreUnavailableException or StoreCompactedException or ObjectDisposedException)
            {
                Log.WatchRestart(_logger, prefix, ex.Message);
                try
                {
                    await Task.Delay(_options.TickInterval, _time, cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        var batch = new List<Work>(MaxBatch);
        try
        {
            while (await _work.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                batch.Clear();
                while (batch.Count < MaxBatch && _work.Reader.TryRead(out var work))
                {
                    batch.Add(work);
                }

                foreach (var work in batch)
                {
                    try
                    {
                        Apply(work);
                    }
                    catch (Exception ex) when (ex is not OperationCanceledException)
                    {
                        // A bug must cost one request, never the loop: everything else would wait forever.
                        Log.AllocatorFailed(_logger, ex);
                        Fail(work, new GpuPoolException(ErrorCode.Internal, "the scheduler failed on this request (see its log): " + ex.Message));
                    }
                }

                CompleteSyncs();
                if (_ready.Task.IsCompleted)
                {
                    try
                    {
                        await ScheduleAsync(cancellationToken).ConfigureAwait(false);
                    }
                    catch (Exception ex) when (ex is not OperationCanceledException)
                    {
                        Log.AllocatorFailed(_logger, ex);
                        foreach (var pending in _pending)
                        {
                            pending.Work.Reply.TrySetException(new GpuPoolException(ErrorCode.Internal, "the scheduler failed while deciding the queue (see its log): " + ex.Message));
                        }

                        _pending.Clear();
                    }
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private void Apply(Work work)
    {
        switch (work)
        {
            case ResetWork reset:
                ApplyReset(reset);
                break;
            case ChangeWork change:
                ApplyChange(change.Prefix, change.Event);
                break;
            case AllocateWork allocate:
                Admit(allocate);
                break;
            case RenewWork renew:
                Renew(renew);
                break;
            case ReleaseWork release:
                Release(release);
                break;
            case SnapshotWork snapshot:
                snapshot.Reply.TrySetResult(Snapshot());
                break;
            case SyncWork sync:
                _syncs.Add(sync);
                break;
            case CommittedWork committed:
                Settle(committed);
                break;
            case Tick:
                OnTick();
                break;
        }
    }

    private void ApplyReset(ResetWork reset)
    {
        switch (reset.Prefix)
        {
            case StoreKeys.Brokers:
                var live = reset.Entries.Select(e => ParseBroker(e)).OfType<BrokerRecord>().ToArray();
                foreach (var gone in _model.Brokers.Select(b => b.BrokerId).Except(live.Select(b => b.BrokerId)).ToArray())
                {
                    BrokerGone(gone);
                }

                foreach (var broker in live)
                {
                    _model.UpsertBroker(broker);
                }

                break;
            case StoreKeys.Leases:
                var leases = reset.Entries.Select(ParseLease).OfType<LeaseRecord>().ToDictionary(l => l.LeaseId, StringComparer.Ordinal);
                foreach (var gone in _model.Leases.Select(l => l.LeaseId).Where(id => !leases.ContainsKey(id)).ToArray())
                {
                    Forget(gone);
                }

                var now = _time.GetUtcNow();
                foreach (var lease in leases.Values)
                {
                    _model.UpsertLease(lease);
                    _liveness.Track(lease, now);
                }

                break;
            case StoreKeys.Quotas:
                _quotas.Clear();
                foreach (var quota in reset.Entries.Select(e => Parse(e, Quota.Parser)).OfType<Quota>())
                {
                    _quotas[quota.Tenant] = quota;
                }

                break;
            case StoreKeys.Priorities:
                _classes.Clear();
                foreach (var cls in reset.Entries.Select(e => Parse(e, PriorityClass.Parser)).OfType<PriorityClass>())
                {
                    _classes[cls.Name] = cls;
                }

                break;
            case StoreKeys.Draining:
                var drained = reset.Entries.Select(e => e.Key[StoreKeys.Draining.Length..]).ToHashSet(StringComparer.Ordinal);
                foreach (var id in _model.Drained.Except(drained).ToArray())
                {
                    _model.SetDrained(id, false);
                }

                foreach (var id in drained)
                {
                    _model.SetDrained(id, true);
                }

                break;
        }

        Applied(reset.Prefix, reset.Revision);
        _loaded.Add(reset.Prefix);
        if (_loaded.Count == WatchedPrefixes.Length && !_ready.Task.IsCompleted)
        {
            // Leases whose broker is not registered are orphans of a broker that died while nobody led.
            foreach (var orphan in _model.Leases.Where(l => !_model.HasBroker(l.BrokerId)).ToArray())
            {
                LoseLease(orphan, $"its broker {orphan.BrokerId} is no longer registered");
            }

            _ready.TrySetResult();
        }
    }

    private void ApplyChange(string prefix, WatchEvent change)
    {
        Applied(prefix, change.Revision);
        var put = change.Kind == WatchEventKind.Put;
        var id = change.Entry.Key[prefix.Length..];
        switch (prefix)
        {
            case StoreKeys.Brokers when put:
                if (ParseBroker(change.Entry) is { } broker)
                {
                    _model.UpsertBroker(broker);
                }

                break;
            case StoreKeys.Brokers:
                BrokerGone(id);
                break;
            case StoreKeys.Leases when put:
                if (ParseLease(change.Entry) is { } lease)
                {
                    _model.UpsertLease(lease);
                    _liveness.Track(lease, _time.GetUtcNow());
                }

                break;
            case StoreKeys.Leases:
                Forget(id);
                break;
            case StoreKeys.Quotas when put:
                if (Parse(change.Entry, Quota.Parser) is { } quota)
                {
                    _quotas[quota.Tenant] = quota;
                }

                break;
            case StoreKeys.Quotas:
                _quotas.Remove(id);
                break;
            case StoreKeys.Priorities when put:
                if (Parse(change.Entry, PriorityClass.Parser) is { } cls)
                {
                    _classes[cls.Name] = cls;
                }

                break;
            case StoreKeys.Priorities:
                _classes.Remove(id);
                break;
            case StoreKeys.Draining:
                _model.SetDrained(id, put);
                break;
        }
    }

    /// <summary>A broker stopped heartbeating (or deregistered): its leases are lost, and their holders told on their next call.</summary>
    private void BrokerGone(string brokerId)
    {
        foreach (var lease in _model.RemoveBroker(brokerId))
        {
            LoseLease(lease, $"its broker {brokerId} stopped heartbeating");
        }
    }

    /// <summary>A lease whose record is gone from the store: nothing of it is left on the loop.</summary>
    private void Forget(string leaseId)
    {
        _model.RemoveLease(leaseId);
        _liveness.Untrack(leaseId);
        _evicting.Remove(leaseId);
    }

    /// <summary>
    /// Ends a lease (its gang with it) that the pool takes away: its room is free at once, and its record is deleted
    /// with a tombstone saying why, which its holder reads on its next call.
    /// </summary>
    private void LoseLease(LeaseRecord lease, string reason)
    {
        var members = _liveness.MembersOf(lease.LeaseId);
        foreach (var id in members.Count == 0 ? [lease.LeaseId] : members)
        {
            if (_removing.ContainsKey(id))
            {
                continue;
            }

            Forget(id);
            Log.LeaseLost(_logger, id, reason);
            Enqueue(new Removal([id], reason));
        }
    }

    private void Enqueue(Removal removal)
    {
        _removals.Add(removal);
        foreach (var id in removal.LeaseIds)
        {
            _removing[id] = removal;
        }
    }

    /// <summary>A keepalive: the lease's current record (with any preemption deadline), or null when it has ended or is ending.</summary>
    private void Renew(RenewWork work)
    {
        var lease = _model.FindLease(work.LeaseId);
        var renewed = lease is not null && !_removing.ContainsKey(work.LeaseId)
            && _liveness.Renew(work.LeaseId, _time.GetUtcNow(), TimeSpan.FromSeconds(Math.Max(1, lease.TtlSeconds)));
        work.Reply.TrySetResult(renewed ? lease : null);
    }

    /// <summary>The holder ends its lease: the room stays charged until the record is gone, then comes back.</summary>
    private void Release(ReleaseWork work)
    {
        if (_removing.TryGetValue(work.LeaseId, out var ending))
        {
            ending.Waiters.Add(work.Reply);
            return;
        }

        var members = _liveness.MembersOf(work.LeaseId);
        if (members.Count == 0)
        {
            work.Reply.TrySetResult(false);
            return;
        }

        var removal = new Removal(members, null);
        removal.Waiters.Add(work.Reply);
        Enqueue(removal);
    }

    /// <summary>
    /// Tombstones are bound to a session that is never renewed, so they vanish on their own: the store never
    /// fills with them. A fresh session every sixth of <see cref="SchedulerOptions.TombstoneTtl"/> keeps each
    /// tombstone for between five sixths of it and all of it. Commits running at once share it.
    /// </summary>
    private async Task<string> TombstoneSessionAsync(CancellationToken cancellationToken)
    {
        await _tombstoneGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var now = _time.GetUtcNow();
            if (_tombstones is not { } current || now - current.Created > _options.TombstoneTtl / 6)
            {
                var session = await _store.CreateSessionAsync(_options.TombstoneTtl, cancellationToken).ConfigureAwait(false);
                _tombstones = current = (session.Id, now);
            }

            return current.Id;
        }
        finally
        {
            _tombstoneGate.Release();
        }
    }

    private void OnTick()
    {
        var now = _time.GetUtcNow();
        foreach (var (leaseId, deadline) in _evicting.ToArray())
        {
            if (deadline <= now)
            {
                _evicting.Remove(leaseId);
                if (_model.FindLease(leaseId) is { } victim)
                {
                    LoseLease(victim, victim.PreemptReason);
                }
            }
        }

        // Leases whose keepalives stopped: their room stays charged until their records are gone.
        foreach (var members in _liveness.TakeExpired(now))
        {
            var live = members.Where(id => !_removing.ContainsKey(id)).ToArray();
            if (live.Length == 0)
            {
                continue;
            }

            var ttl = _model.FindLease(live[0])?.TtlSeconds ?? 0;
            var reason = $"it expired: no keepalive from its holder for its TTL of {ttl} s";
            foreach (var id in live)
            {
                Log.LeaseLost(_logger, id, reason);
            }

            Enqueue(new Removal(live, reason));
        }
    }

    /// <summary>Checks a new request against what never changes while it waits, then queues it.</summary>
    private void Admit(AllocateWork work)
    {
        try
        {
            var request = work.Request;
            var className = string.IsNullOrEmpty(request.PriorityClass) ? PriorityClasses.DefaultName : request.PriorityClass;
            if (!_classes.TryGetValue(className, out var cls))
            {
                throw new GpuPoolException(ErrorCode.InvalidArgument, $"priority class '{className}' does not exist (classes: {string.Join(", ", _classes.Keys.Order(StringComparer.Ordinal))})");
            }

            if (QuotaOf(request.Tenant) is null)
            {
                throw new GpuPoolException(ErrorCode.PermissionDenied, $"tenant '{request.Tenant}' has no quota in this pool: an admin sets one with `gpupool quota set {request.Tenant} …`");
            }

            var ask = request.WholeDevices > 0 ? PlacementAsk.Gang(request.WholeDevices, request.DeviceModel) : PlacementAsk.Slice(request.MemoryBytes, request.ComputeShare, request.DeviceModel);
            if (_model.BrokerCount > 0 && !_model.CouldEverFit(ask))
            {
                throw new GpuPoolException(ErrorCode.ResourceExhausted, ask.IsGang
                    ? $"no host of this pool has {ask.WholeDevices} devices{ModelText(ask)}"
                    : $"no device of this pool is large enough for {Units.FormatBytes(ask.MemoryBytes)} with compute share {ask.ComputeShare}{ModelText(ask)}");
            }

            var deadline = work.Received + TimeSpan.FromMilliseconds(request.WaitTimeoutMs);
            _pending.Add(new Pending(work, ask, cls, deadline, ++_sequence));
        }
        catch (GpuPoolException ex)
        {
            work.Reply.TrySetException(ex);
        }
    }

    private Quota? QuotaOf(string tenant)
        => _quotas.GetValueOrDefault(tenant) ?? (_options.OpenTenants ? Unlimited(tenant) : null);

    private static Quota Unlimited(string tenant) => new() { Tenant = tenant, MaxMilliGpus = uint.MaxValue, MaxMemoryBytes = ulong.MaxValue, MaxLeases = uint.MaxValue };

    private static string ModelText(PlacementAsk ask) => string.IsNullOrEmpty(ask.DeviceModel) ? "" : $" of model '{ask.DeviceModel}'";

    /// <summary>Decides every waiting request, highest class first and fair across tenants within a class; commits the grants.</summary>
    private async Task ScheduleAsync(CancellationToken cancellationToken)
    {
        // With the most batches in flight, requests wait for one to settle (its CommittedWork wakes the loop): the
        // next batch then takes all of them, and shares its transactions among more grants.
        var now = _time.GetUtcNow();
        if ((_pending.Count == 0 && !_removals.Any(r => r.NotBefore <= now)) || _commitsInFlight >= MaxCommitsInFlight)
        {
            return;
        }

        var grants = new List<Grant>();
        var evictions = new List<LeaseRecord>();
        foreach (var pending in Order())
        {
            if (pending.Work.Reply.Task.IsCompleted)
            {
                _pending.Remove(pending);
                continue;
            }

            var outcome = Decide(pending, now, grants, evictions);
            if (outcome is not null)
            {
                _pending.Remove(pending);
                if (outcome is GpuPoolException error)
                {
                    Log.AllocationRefused(_logger, pending.Work.Request.Tenant, error.Message);
                    pending.Work.Reply.TrySetException(error);
                }
            }
        }

        foreach (var victim in evictions)
        {
            await RunQuietlyAsync(() => MarkPreemptedAsync(victim)).ConfigureAwait(false);
        }

        var removals = _removals.Where(r => r.NotBefore <= now).ToList();
        _removals.RemoveAll(r => r.NotBefore <= now);
        if (grants.Count > 0 || removals.Count > 0)
        {
            StartCommit(grants, removals, cancellationToken);
        }
    }

    /// <summary>
    /// Commits a batch's grants and removals off the loop; the loop goes on applying store changes and deciding the
    /// next batch meanwhile (up to <see cref="MaxCommitsInFlight"/> batches in flight), and settles the outcomes
    /// itself when the <see cref="CommittedWork"/> arrives. Once the loop has stopped, the outcomes go straight to the callers.
    /// </summary>
    private void StartCommit(List<Grant> grants, List<Removal> removals, CancellationToken cancellationToken)
    {
        _commitsInFlight++;
        var commit = Task.Run(async () =>
        {
            var done = new CommittedWork(grants, removals);
            try
            {
                await CommitAllAsync(done, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                // CommitAllAsync answers every failure per item; this is a bug, and must still answer everyone.
                Log.AllocatorFailed(_logger, ex);
                done.FailUnanswered(new GpuPoolException(ErrorCode.Internal, "the scheduler failed while writing to the store (see its log): " + ex.Message));
            }

            if (!_work.Writer.TryWrite(done))
            {
                Answer(done);
            }
        }, CancellationToken.None);
        lock (_commits)
        {
            _commits.Add(commit);
        }

        _ = commit.ContinueWith(t => { lock (_commits) { _commits.Remove(t); } }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>
    /// On the loop: a committed batch's grants answered and the room of every failed one given back; the room of every
    /// ended lease given back, and a removal the pool needs (expired, lost) that failed tried again a tick later.
    /// </summary>
    private void Settle(CommittedWork done)
    {
        _commitsInFlight--;
        for (var i = 0; i < done.Grants.Count; i++)
        {
            var (grant, (reply, _)) = (done.Grants[i], done.Outcomes[i]);
            foreach (var record in grant.Records)
            {
                if (reply is not null)
                {
                    Log.LeaseGranted(_logger, record.LeaseId, record.Tenant, record.BrokerId, record.DeviceIndex, record.MemoryBytes, record.ComputeShare);
                }
                else
                {
                    // The room it was charged goes back; a record that did get written shows up by the watch.
                    Forget(record.LeaseId);
                }
            }
        }

        var now = _time.GetUtcNow();
        for (var i = 0; i < done.Removals.Count; i++)
        {
            var removal = done.Removals[i];
            if (done.RemovalErrors[i] is null)
            {
                foreach (var id in removal.LeaseIds)
                {
                    Forget(id);
                    _removing.Remove(id);
                    if (removal.Reason is null)
                    {
                        Log.LeaseReleased(_logger, id);
                    }
                }
            }
            else if (removal.Reason is not null)
            {
                removal.NotBefore = now + _options.TickInterval;
                _removals.Add(removal);
            }
            else
            {
                foreach (var id in removal.LeaseIds)
                {
                    _removing.Remove(id);
                }
            }
        }

        Answer(done);
    }

    private static void Answer(CommittedWork done)
    {
        for (var i = 0; i < done.Grants.Count; i++)
        {
            var (reply, error) = done.Outcomes[i];
            if (reply is not null)
            {
                done.Grants[i].Pending.Work.Reply.TrySetResult(reply);
            }
            else
            {
                done.Grants[i].Pending.Work.Reply.TrySetException(error!);
            }
        }

        for (var i = 0; i < done.Removals.Count; i++)
        {
            done.Removals[i].Answer(done.RemovalErrors[i]);
        }
    }

    /// <summary>Null: keep waiting. A grant: placed (added to <paramref name="grants"/>). An exception: answer with it.</summary>
    private object? Decide(Pending pending, DateTimeOffset now, List<Grant> grants, List<LeaseRecord> evictions)
    {
        var request = pending.Work.Request;
        var quota = QuotaOf(request.Tenant);
        if (quota is null)
        {
            return new GpuPoolException(ErrorCode.PermissionDenied, $"tenant '{request.Tenant}' has no quota in this pool any more");
        }

        var placement = _model.TryPlace(pending.Ask);
        var wholeMemory = placement is not null && pending.Ask.IsGang ? _model.FindDevice(placement.BrokerId, placement.DeviceIndexes[0])!.MemoryTotalBytes : 0;
        var admission = Admission.Check(quota, _model.UsageOf(request.Tenant), pending.Ask, wholeMemory, pending.Class.Name);
        switch (admission.Verdict)
        {
            case AdmissionVerdict.Refuse:
                return new GpuPoolException(ErrorCode.QuotaExceeded, admission.Reason);
            case AdmissionVerdict.Wait:
                return now >= pending.Deadline ? new GpuPoolException(ErrorCode.QuotaExceeded, admission.Reason + (request.WaitTimeoutMs > 0 ? $" (waited {request.WaitTimeoutMs} ms)" : "")) : null;
        }

        var borrowed = admission.Verdict == AdmissionVerdict.Borrow;
        if (placement is not null)
        {
            var grant = CreateGrant(pending, placement, borrowed, now);
            foreach (var record in grant.Records)
            {
                _model.UpsertLease(record);
                _liveness.Track(record, now);
            }

            grants.Add(grant);
            return grant;
        }

        // Borrowed capacity is idle capacity only: a borrower never evicts anyone. An ask that found no eviction
        // searches again only once room may have come (the search walks every lease of the pool). A victim that is
        // ending already is not marked (a marked record must never outlive its deletion): once its removal settles,
        // the next round sees the room it leaves.
        Eviction? eviction = null;
        if (!borrowed && !pending.Evicting && pending.NoEvictionAt != _model.RoomGeneration)
        {
            eviction = _model.FindEviction(pending.Ask, pending.Class.Value);
            if (eviction is null)
            {
                pending.NoEvictionAt = _model.RoomGeneration;
            }
            else if (eviction.Victims.Any(v => _removing.ContainsKey(v.LeaseId)))
            {
                eviction = null;
            }
        }

        if (eviction is not null)
        {
            var deadline = now + _options.PreemptionGrace;
            foreach (var victim in eviction.Victims)
            {
                var marked = victim.Clone();
                marked.PreemptDeadline = Timestamp.FromDateTimeOffset(deadline);
                marked.PreemptReason = $"preempted by a request of priority class '{pending.Class.Name}' (tenant '{request.Tenant}')";
                _model.UpsertLease(marked);
                _evicting[victim.LeaseId] = deadline;
                evictions.Add(marked);
                Log.Preempting(_logger, victim.LeaseId, victim.Tenant, pending.Class.Name, request.Tenant);
            }

            // It waits at least until the victims are gone, whatever its own wait timeout.
            pending.Evicting = true;
            pending.Deadline = Max(pending.Deadline, deadline + _options.PreemptionGrace);
            return null;
        }

        if (now < pending.Deadline)
        {
            return null;
        }

        var (memory, share) = _model.LargestFree();
        var waited = request.WaitTimeoutMs > 0 ? $" after waiting {request.WaitTimeoutMs} ms" : "";
        return _model.BrokerCount == 0
            ? new GpuPoolException(ErrorCode.ResourceExhausted, "no broker is registered with this pool: start one (gpupool up, or gpupool broker)")
            : new GpuPoolException(ErrorCode.ResourceExhausted, pending.Ask.IsGang
                ? $"no host has {pending.Ask.WholeDevices} free devices{ModelText(pending.Ask)}{waited}"
                : $"no device has room for {Units.FormatBytes(pending.Ask.MemoryBytes)} with compute share {pending.Ask.ComputeShare}{ModelText(pending.Ask)}{waited}: the most free memory on one device is {Units.FormatBytes(memory)} and the most free share is {share}");
    }

    private void Applied(string prefix, long revision)
        => _applied[prefix] = Math.Max(_applied.GetValueOrDefault(prefix), revision);

    private void CompleteSyncs()
    {
        for (var i = _syncs.Count - 1; i >= 0; i--)
        {
            if (_applied.GetValueOrDefault(_syncs[i].Prefix) >= _syncs[i].Revision)
            {
                _syncs[i].Done.TrySetResult();
                _syncs.RemoveAt(i);
            }
        }
    }

    private static DateTimeOffset Max(DateTimeOffset a, DateTimeOffset b) => a > b ? a : b;

    /// <summary>Highest class first; within a class the tenant holding least goes next, FIFO per tenant.</summary>
    private List<Pending> Order()
    {
        var ordered = new List<Pending>(_pending.Count);
        foreach (var byClass in _pending.GroupBy(p => p.Class.Value).OrderByDescending(g => g.Key))
        {
            var queues = byClass.GroupBy(p => p.Work.Request.Tenant, StringComparer.Ordinal)
                .ToDictionary(g => g.Key, g => new Queue<Pending>(g.OrderBy(p => p.Sequence)), StringComparer.Ordinal);
            var served = queues.Keys.ToDictionary(t => t, t => _model.UsageOf(t).MilliGpus, StringComparer.Ordinal);
            while (queues.Count > 0)
            {
                var tenant = queues.Keys.MinBy(t => (served[t], t), Comparer<(ulong, string)>.Create(static (a, b) => a.Item1 != b.Item1 ? a.Item1.CompareTo(b.Item1) : string.CompareOrdinal(a.Item2, b.Item2)))!;
                var next = queues[tenant].Dequeue();
                ordered.Add(next);
                served[tenant] += Admission.Cost(next.Ask, 0).MilliGpus;
                if (queues[tenant].Count == 0)
                {
                    queues.Remove(tenant);
                }
            }
        }

        return ordered;
    }

    private Grant CreateGrant(Pending pending, Site placement, bool borrowed, DateTimeOffset now)
    {
        var request = pending.Work.Request;
        var broker = _model.FindBroker(placement.BrokerId)!;
        var ttl = TimeSpan.FromSeconds(request.TtlSeconds);
        var gangId = pending.Ask.IsGang ? "g-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6)) : "";
        var records = new List<LeaseRecord>(placement.DeviceIndexes.Count);
        foreach (var index in placement.DeviceIndexes)
        {
            var device = _model.FindDevice(placement.BrokerId, index)!;
            records.Add(new LeaseRecord
            {
                LeaseId = NewLeaseId(records),
                Tenant = request.Tenant,
                BrokerId = broker.BrokerId,
                BrokerEndpoint = broker.Endpoint,
                DeviceIndex = index,
                MemoryBytes = pending.Ask.IsGang ? device.MemoryTotalBytes : request.MemoryBytes,
                ComputeShare = pending.Ask.IsGang ? device.ComputeCapacity : request.ComputeShare,
                PriorityClass = pending.Class.Name,
                PriorityValue = pending.Class.Value,
                Preemptible = pending.Class.Preemptible || borrowed,
                Borrowed = borrowed,
                Created = Timestamp.FromDateTimeOffset(now),
                TtlSeconds = request.TtlSeconds,
                BrokerFastPathTcp = broker.FastPathTcp,
                BrokerFastPathUnix = broker.FastPathUnix,
                BrokerHost = broker.Host,
                GangId = gangId,
            });
        }

        return new Grant(pending, records, ttl);
    }

    /// <summary>
    /// A lease id no lease this leader knows has (the store's absent-check catches one it does not know yet); after a
    /// few tries it gives up and lets the commit refuse the collision.
    /// </summary>
    private string NewLeaseId(List<LeaseRecord> siblings)
    {
        var id = _options.NewLeaseId();
        for (var tries = 1; tries < 8 && (_model.FindLease(id) is not null || _removing.ContainsKey(id) || siblings.Exists(r => r.LeaseId == id)); tries++)
        {
            id = _options.NewLeaseId();
        }

        return id;
    }

    /// <summary>
    /// Commits a batch: the records of its grants (each checked absent) and the deletions of the leases it ends
    /// (with a tombstone where the pool ended them), as many as fit in one fenced transaction
    /// (<see cref="TxnLimits.MaxOperations"/>), so a batch costs the store a few transactions whatever its size.
    /// A shared transaction that fails a check is retried item by item, so an id collision costs only its own
    /// grant. Runs off the loop and touches no state of it: it fills in each item's outcome, and the loop settles.
    /// </summary>
    private async Task CommitAllAsync(CommittedWork batch, CancellationToken cancellationToken)
    {
        string? tombstones = null;
        if (batch.Removals.Any(r => r.Reason is not null))
        {
            try
            {
                tombstones = await TombstoneSessionAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                var error = CommitError(ex);
                for (var i = 0; i < batch.Removals.Count; i++)
                {
                    batch.RemovalErrors[i] = batch.Removals[i].Reason is null ? null : error;
                }
            }
        }

        // Items in order, cut into transactions of at most MaxOperations checks and writes; an item too large to
        // share goes alone.
        var items = Enumerable.Range(0, batch.Grants.Count).Select(i => new Item(batch, i, -1))
            .Concat(Enumerable.Range(0, batch.Removals.Count).Where(i => batch.RemovalErrors[i] is null).Select(i => new Item(batch, -1, i)));
        var chunks = new List<List<Item>>();
        var fence = Fence().Count;
        var operations = fence;
        foreach (var item in items)
        {
            if (chunks.Count == 0 || (chunks[^1].Count > 0 && operations + item.Operations > TxnLimits.MaxOperations))
            {
                chunks.Add([]);
                operations = fence;
            }

            chunks[^1].Add(item);
            operations += item.Operations;
        }

        var ended = _time.GetUtcNow();
        await Task.WhenAll(chunks.Select(chunk => CommitChunkAsync(chunk, tombstones, ended, cancellationToken))).ConfigureAwait(false);
    }

    /// <summary>The items of <paramref name="chunk"/> in one fenced transaction; one by one if it fails a check other than the fence.</summary>
    private async Task CommitChunkAsync(List<Item> chunk, string? tombstones, DateTimeOffset ended, CancellationToken cancellationToken)
    {
        try
        {
            var (checks, writes) = Transaction(chunk, tombstones, ended);
            var result = await _store.TransactAsync(checks, writes, cancellationToken).ConfigureAwait(false);
            if (result.Succeeded)
            {
                foreach (var item in chunk)
                {
                    item.Succeed(this);
                }

                return;
            }

            if (_term is not null && result.FailedChecks.Contains(_term.Key))
            {
                Fail(new GpuPoolException(ErrorCode.Unavailable, LostLeadership));
                return;
            }

            if (chunk.Count == 1)
            {
                // Only a grant checks its keys: its lease id collided with an existing lease, and nothing was written.
                Fail(new GpuPoolException(ErrorCode.Unavailable, "a lease id collided with an existing lease; retry"));
                return;
            }
        }
        catch (Exception ex)
        {
            var error = CommitError(ex);
            Fail(error);

            // The transaction may have been applied (a store that stopped answering): a granted record nobody holds
            // would live until its TTL, so it is deleted now if the store lets us.
            var written = chunk.Where(i => i.IsGrant).SelectMany(i => i.Grant.Records).Select(r => TxnWrite.Delete(StoreKeys.Leases + r.LeaseId)).ToList();
            if (written.Count > 0)
            {
                await RunQuietlyAsync(() => _store.TransactAsync(Fence(), written, CancellationToken.None).AsTask()).ConfigureAwait(false);
            }

            return;
        }

        // A lease id collided: nothing was written; each item on its own finds whose.
        await Task.WhenAll(chunk.Select(item => CommitChunkAsync([item], tombstones, ended, cancellationToken))).ConfigureAwait(false);

        void Fail(GpuPoolException error)
        {
            foreach (var item in chunk)
            {
                item.Fail(error);
            }
        }
    }

    private const string LostLeadership = "this scheduler replica lost the leadership while writing to the store; retry";

    /// <summary>
    /// The fence; for every granted record a check that its key is free and a put; for every ended lease a delete,
    /// and a tombstone (bound to the unrenewed tombstone session) saying why, where the pool ended it.
    /// </summary>
    private (List<TxnCheck> Checks, List<TxnWrite> Writes) Transaction(List<Item> items, string? tombstones, DateTimeOffset ended)
    {
        var checks = new List<TxnCheck>(Fence());
        var writes = new List<TxnWrite>();
        foreach (var item in items)
        {
            if (item.IsGrant)
            {
                foreach (var record in item.Grant.Records)
                {
                    checks.Add(TxnCheck.Absent(StoreKeys.Leases + record.LeaseId));
                    writes.Add(TxnWrite.Put(StoreKeys.Leases + record.LeaseId, record.ToByteArray()));
                }

                continue;
            }

            var removal = item.Removal;
            foreach (var id in removal.LeaseIds)
            {
                writes.Add(TxnWrite.Delete(StoreKeys.Leases + id));
                if (removal.Reason is not null)
                {
                    var tombstone = new LeaseTombstone { LeaseId = id, Reason = removal.Reason, Ended = Timestamp.FromDateTimeOffset(ended) };
                    writes.Add(TxnWrite.Put(StoreKeys.Tombstones + id, tombstone.ToByteArray(), tombstones));
                }
            }
        }

        return (checks, writes);
    }

    private static GpuPoolException CommitError(Exception ex) => ex switch
    {
        GpuPoolException gp => gp,
        StoreUnavailableException => new GpuPoolException(ErrorCode.Unavailable, "the coordination store is unavailable, so nothing was allocated: " + ex.Message),
        OperationCanceledException => NotLeading(),
        _ => new GpuPoolException(ErrorCode.Internal, "allocation failed while writing the lease: " + ex.Message),
    };

    private AllocateReply Reply(Grant grant)
    {
        var now = _time.GetUtcNow();
        var reply = new AllocateReply { Expires = Timestamp.FromDateTimeOffset(now + grant.Ttl) };
        foreach (var record in grant.Records)
        {
            var member = new GangMember { Lease = record, Token = LeaseManager.Sign(_options, record, now) };
            if (reply.Lease is null)
            {
                reply.Lease = member.Lease;
                reply.Token = member.Token;
            }

            if (grant.Records.Count > 1)
            {
                reply.Gang.Add(member);
            }
        }

        return reply;
    }

    /// <summary>
    /// Writes the victim's preemption deadline; the broker tells its sessions, keepalives tell its holder. No removal
    /// of it is under way (<see cref="Decide"/> makes sure), and none starts before this write is done, as the loop
    /// waits for it: the record it puts can never outlive its deletion.
    /// </summary>
    private async Task MarkPreemptedAsync(LeaseRecord marked)
        => await _store.TransactAsync(Fence(), [TxnWrite.Put(StoreKeys.Leases + marked.LeaseId, marked.ToByteArray())], _stop.Token).ConfigureAwait(false);

    private ClusterView Snapshot()
    {
        var view = new ClusterView();
        view.Brokers.AddRange(_model.Brokers.OrderBy(b => b.BrokerId, StringComparer.Ordinal));
        view.Devices.AddRange(_model.DeviceViews().OrderBy(d => d.BrokerId, StringComparer.Ordinal).ThenBy(d => d.Device.Index));
        view.Leases.AddRange(_model.Leases.OrderBy(l => l.LeaseId, StringComparer.Ordinal));
        view.Draining.AddRange(_model.Drained.Order(StringComparer.Ordinal));
        foreach (var pending in Order())
        {
            view.Queue.Add(new QueuedRequest
            {
                Tenant = pending.Work.Request.Tenant,
                PriorityClass = pending.Class.Name,
                MemoryBytes = pending.Ask.MemoryBytes,
                ComputeShare = pending.Ask.ComputeShare,
                WholeDevices = pending.Ask.WholeDevices,
                Since = Timestamp.FromDateTimeOffset(pending.Work.Received),
                Deadline = Timestamp.FromDateTimeOffset(pending.Deadline),
            });
        }

        return view;
    }

    private IReadOnlyList<TxnCheck> Fence() => _term is null ? [] : [_term.Fence];

    private async Task RunQuietlyAsync(Func<Task> job)
    {
        try
        {
            await job().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is StoreUnavailableException or StoreSessionNotFoundException or OperationCanceledException or ObjectDisposedException)
        {
            Log.StoreWriteFailed(_logger, ex.Message);
        }
        catch (Exception ex)
        {
            Log.AllocatorFailed(_logger, ex);
        }
    }

    private static void Fail(Work work, GpuPoolException error)
    {
        switch (work)
        {
            case AllocateWork a:
                a.Reply.TrySetException(error);
                break;
            case SnapshotWork s:
                s.Reply.TrySetException(error);
                break;
            case RenewWork r:
                r.Reply.TrySetException(error);
                break;
            case ReleaseWork r:
                r.Reply.TrySetException(error);
                break;
            case CommittedWork c:
                // Committed or not, its outcome stands: the store has the leases that did commit.
                Answer(c);
                break;
        }
    }

    private static BrokerRecord? ParseBroker(KvEntry entry) => Parse(entry, BrokerRecord.Parser);

    private static LeaseRecord? ParseLease(KvEntry entry) => Parse(entry, LeaseRecord.Parser);

    private static T? Parse<T>(KvEntry entry, MessageParser<T> parser)
        where T : class, IMessage<T>
    {
        try
        {
            return parser.ParseFrom(entry.Value.Span);
        }
        catch (InvalidProtocolBufferException)
        {
            return null;
        }
    }

    private abstract class Work;

    private sealed class Tick : Work
    {
        public static readonly Tick Instance = new();
    }

    private sealed class ResetWork(string prefix, IReadOnlyList<KvEntry> entries, long revision) : Work
    {
        public long Revision { get; } = revision;

        public string Prefix { get; } = prefix;

        public IReadOnlyList<KvEntry> Entries { get; } = entries;
    }

    private sealed class ChangeWork(string prefix, WatchEvent change) : Work
    {
        public string Prefix { get; } = prefix;

        public WatchEvent Event { get; } = change;
    }

    private sealed class AllocateWork(AllocateRequest request, DateTimeOffset received) : Work
    {
        public AllocateRequest Request { get; } = request;

        public DateTimeOffset Received { get; } = received;

        public TaskCompletionSource<AllocateReply> Reply { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class RenewWork(string leaseId) : Work
    {
        public string LeaseId { get; } = leaseId;

        public TaskCompletionSource<LeaseRecord?> Reply { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class ReleaseWork(string leaseId) : Work
    {
        public string LeaseId { get; } = leaseId;

        public TaskCompletionSource<bool> Reply { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>A batch's commit, and once it has finished, its outcomes: each grant's reply or error, each removal's error (null: done), in order.</summary>
    private sealed class CommittedWork(List<Grant> grants, List<Removal> removals) : Work
    {
        public List<Grant> Grants { get; } = grants;

        public (AllocateReply? Reply, GpuPoolException? Error)[] Outcomes { get; } = new (AllocateReply?, GpuPoolException?)[grants.Count];

        public List<Removal> Removals { get; } = removals;

        public GpuPoolException?[] RemovalErrors { get; } = new GpuPoolException?[removals.Count];

        public void FailUnanswered(GpuPoolException error)
        {
            for (var i = 0; i < Outcomes.Length; i++)
            {
                if (Outcomes[i].Reply is null)
                {
                    Outcomes[i] = (null, error);
                }
            }

            Array.Fill(RemovalErrors, error);
        }
    }

    /// <summary>One grant or one removal of a batch being committed.</summary>
    private readonly record struct Item(CommittedWork Batch, int GrantIndex, int RemovalIndex)
    {
        public bool IsGrant => GrantIndex >= 0;

        public Grant Grant => Batch.Grants[GrantIndex];

        public Removal Removal => Batch.Removals[RemovalIndex];

        /// <summary>Checks and writes it takes in a transaction.</summary>
        public int Operations => IsGrant ? 2 * Grant.Records.Count : Removal.LeaseIds.Count * (Removal.Reason is null ? 1 : 2);

        public void Succeed(Allocator allocator)
        {
            if (IsGrant)
            {
                Batch.Outcomes[GrantIndex] = (allocator.Reply(Grant), null);
            }
            else
            {
                Batch.RemovalErrors[RemovalIndex] = null;
            }
        }

        public void Fail(GpuPoolException error)
        {
            if (IsGrant)
            {
                Batch.Outcomes[GrantIndex] = (null, error);
            }
            else
            {
                Batch.RemovalErrors[RemovalIndex] = error;
            }
        }
    }

    /// <summary>
    /// Leases to delete together (a gang's members, or one lease), with the tombstone reason where the pool ends them
    /// (expired, lost, preempted; null: their holder released them), and the holders' release calls waiting on it.
    /// </summary>
    private sealed class Removal(IReadOnlyList<string> leaseIds, string? reason)
    {
        public IReadOnlyList<string> LeaseIds { get; } = leaseIds;

        public string? Reason { get; } = reason;

        public List<TaskCompletionSource<bool>> Waiters { get; } = [];

        /// <summary>Not committed before this (a failed removal the pool needs waits a tick before it is tried again).</summary>
        public DateTimeOffset NotBefore { get; set; }

        /// <summary>Tells the waiting release calls: done (true), or the error.</summary>
        public void Answer(GpuPoolException? error)
        {
            foreach (var waiter in Waiters)
            {
                if (error is null)
                {
                    waiter.TrySetResult(true);
                }
                else
                {
                    waiter.TrySetException(error);
                }
            }

            Waiters.Clear();
        }
    }

    private sealed class SyncWork(string prefix, long revision) : Work
    {
        public string Prefix { get; } = prefix;

        public long Revision { get; } = revision;

        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class SnapshotWork : Work
    {
        public TaskCompletionSource<ClusterView> Reply { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class Pending(AllocateWork work, PlacementAsk ask, PriorityClass cls, DateTimeOffset deadline, long sequence)
    {
        public AllocateWork Work { get; } = work;

        public PlacementAsk Ask { get; } = ask;

        public PriorityClass Class { get; } = cls;

        public DateTimeOffset Deadline { get; set; } = deadline;

        public long Sequence { get; } = sequence;

        /// <summary>Victims have been chosen and told; the request waits for them to go.</summary>
        public bool Evicting { get; set; }

        /// <summary>The model's <see cref="PoolModel.RoomGeneration"/> when a search found no eviction (-1: none yet).</summary>
        public long NoEvictionAt { get; set; } = -1;
    }

    private sealed record Grant(Pending Pending, IReadOnlyList<LeaseRecord> Records, TimeSpan Ttl);
}
