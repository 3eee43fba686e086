using System.Threading.Channels;
using Google.Protobuf.WellKnownTypes;
using GpuPool.Coordination;
using GpuPool.Coordination.Election;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Leases.Internal;
using GpuPool.Scheduler.Policy;
using GpuPool.Scheduler.Queue;
using Microsoft.Extensions.Logging;

namespace GpuPool.Scheduler.Leases;

/// <summary>
/// The leader's allocation engine: one loop that owns the leader's state and takes its work from a channel
/// (requests, keepalives, releases, store changes, ticks, settled commits) in batches. The
/// <see cref="StoreMirror"/> keeps the state in step with the store, the <see cref="QueueDecider"/> decides each
/// waiting request, the <see cref="LeaseBook"/> keeps the leases and when each ends, and the
/// <see cref="LeaseCommitter"/> writes a batch's grants and removals off the loop while the loop decides the
/// next. The model is charged before a commit, so two requests never take the same room, and a lease's room is
/// given back once its record is gone.
/// </summary>
internal sealed class Allocator : IAsyncDisposable
{
    private const int MaxBatch = 512;

    /// <summary>Batches being committed at once: the loop decides the next while the last one's round trips to the store are under way.</summary>
    private const int MaxCommitsInFlight = 2;

    private readonly SchedulerOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly Channel<AllocatorWork> _work = Channel.CreateUnbounded<AllocatorWork>(new UnboundedChannelOptions { SingleReader = true });
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _loops = [];

    private readonly LeaseBook _book;
    private readonly StoreMirror _mirror;
    private readonly QueueDecider _decider;
    private readonly LeaseCommitter _committer;
    private readonly List<PendingRequest> _pending = [];

    /// <summary>Per broker id: its endpoint's checks (<see cref="CheckBrokers"/>).</summary>
    private readonly Dictionary<string, BrokerCheck> _checks = new(StringComparer.Ordinal);
    private long _sequence;
    private ITimer? _ticker;

    /// <summary>Batches whose commit has started and whose <see cref="CommittedWork"/> the loop has not settled (the loop's own count).</summary>
    private int _commitsInFlight;

    /// <summary>Commits under way, so that disposing waits for them (each answers its callers).</summary>
    private readonly List<Task> _commits = [];

    public Allocator(SchedulerOptions options, IClusterStore store, LeaderTerm? term, ILogger logger)
    {
        _options = options;
        _logger = logger;
        _time = options.TimeProvider;
        _book = new LeaseBook(logger);
        var policy = new PoolPolicy(options.OpenTenants);
        _mirror = new StoreMirror(options, store, _work.Writer, _book, policy, logger);
        _decider = new QueueDecider(_book.Model, policy, _book.IsEnding, options.PreemptionGrace, options.MaxPassOver);
        _committer = new LeaseCommitter(options, store, term, _book, logger);
    }

    /// <summary>Starts the loops; completes when the first listing of every prefix has been applied.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await _mirror.SeedPriorityClassesAsync(cancellationToken).ConfigureAwait(false);
        _loops.Add(Task.Run(() => RunAsync(_stop.Token), CancellationToken.None));
        foreach (var prefix in StoreMirror.Prefixes)
        {
            _loops.Add(Task.Run(() => _mirror.FollowAsync(prefix, _stop.Token), CancellationToken.None));
        }

        using (ExecutionContext.SuppressFlow())
        {
            _ticker = _time.CreateTimer(static s => ((Allocator)s!)._work.Writer.TryWrite(Tick.Instance), this, _options.TickInterval, _options.TickInterval);
        }

        await _mirror.Loaded.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<AllocateReply> AllocateAsync(AllocateRequest request, CancellationToken cancellationToken)
    {
        var work = new AllocateWork(request, _time.GetUtcNow());
        Post(work);
        using var registration = cancellationToken.Register(static w => ((AllocateWork)w!).Reply.TrySetCanceled(), work);
        return await work.Reply.Task.ConfigureAwait(false);
    }

    /// <summary>Renews a lease (its gang's members with it) for its TTL; null when it has ended or is ending.</summary>
    public async Task<LeaseRecord?> RenewAsync(string leaseId, CancellationToken cancellationToken)
    {
        var work = new RenewWork(leaseId);
        Post(work);
        return await work.Reply.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Ends a lease (a gang's members with it) on behalf of its holder; completes when its record is gone from the
    /// store. False when it had ended already.
    /// </summary>
    public async Task<bool> ReleaseAsync(string leaseId, CancellationToken cancellationToken)
    {
        var work = new ReleaseWork(leaseId);
        Post(work);
        return await work.Reply.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Completes once this leader has applied the store's changes under <paramref name="prefix"/> up to
    /// <paramref name="revision"/>: an admin's change is in force when its call returns.
    /// </summary>
    public async Task WaitAppliedAsync(string prefix, long revision, CancellationToken cancellationToken)
    {
        var work = new SyncWork(prefix, revision);
        Post(work);
        await work.Done.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<ClusterView> SnapshotAsync(CancellationToken cancellationToken)
    {
        var work = new SnapshotWork();
        Post(work);
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
            left.Fail(NotLeading());
        }

        foreach (var pending in _pending)
        {
            pending.Reply.TrySetException(NotLeading());
        }

        _pending.Clear();
        _book.FailWaitingRemovals(NotLeading());
        _stop.Dispose();
        _committer.Dispose();
    }

    internal static GpuPoolException NotLeading()
        => new(ErrorCode.Unavailable, NotLeadingMessage);

    private const string NotLeadingMessage = "this scheduler replica stopped leading the pool while the request waited; retry (another replica takes over)";

    /// <summary>The request failed because this replica's term ended under it: nothing of it was written.</summary>
    internal static bool IsLeadershipLoss(GpuPoolException ex)
        => ex.Code == ErrorCode.Unavailable && ex.Message is NotLeadingMessage or Internal.LeaseCommitter.LostLeadership;

    private void Post(AllocatorWork work)
    {
        if (!_work.Writer.TryWrite(work))
        {
            throw NotLeading();
        }
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        var batch = new List<AllocatorWork>(MaxBatch);
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
                        work.Fail(new GpuPoolException(ErrorCode.Internal, "the scheduler failed on this request (see its log): " + ex.Message));
                    }
                }

                _mirror.CompleteSyncs();
                if (_mirror.Loaded.IsCompleted)
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
                            pending.Reply.TrySetException(new GpuPoolException(ErrorCode.Internal, "the scheduler failed while deciding the queue (see its log): " + ex.Message));
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

    private void Apply(AllocatorWork work)
    {
        switch (work)
        {
            case ResetWork reset:
                _mirror.Apply(reset);
                break;
            case ChangeWork change:
                _mirror.Apply(change);
                break;
            case AllocateWork allocate:
                Admit(allocate);
                break;
            case RenewWork renew:
                renew.Reply.TrySetResult(_book.Renew(renew.LeaseId, _time.GetUtcNow()));
                break;
            case ReleaseWork release:
                _book.Release(release.LeaseId, release.Reply);
                break;
            case SnapshotWork snapshot:
                snapshot.Reply.TrySetResult(Snapshot());
                break;
            case SyncWork sync:
                _mirror.WaitApplied(sync);
                break;
            case CommittedWork committed:
                _commitsInFlight--;
                _book.Settle(committed.Batch, _time.GetUtcNow() + _options.TickInterval);
                committed.Batch.Answer();
                break;
            case Tick:
                _book.EndOverdue(_time.GetUtcNow());
                CheckBrokers(_time.GetUtcNow());
                break;
            case BrokerCheckedWork check:
                Checked(check);
                break;
        }
    }

    /// <summary>Starts a check of each broker whose last one has ended and whose interval has passed (see <see cref="SchedulerOptions.BrokerCheckInterval"/>).</summary>
    private void CheckBrokers(DateTimeOffset now)
    {
        var interval = _options.BrokerCheckInterval;
        if (interval <= TimeSpan.Zero)
        {
            return;
        }

        var model = _book.Model;
        foreach (var broker in model.Brokers)
        {
            if (!_checks.TryGetValue(broker.BrokerId, out var state))
            {
                state = _checks[broker.BrokerId] = new BrokerCheck();
            }

            if (!state.InFlight && now >= state.Next)
            {
                (state.InFlight, state.Next) = (true, now + interval);
                var (id, endpoint) = (broker.BrokerId, broker.Endpoint);
                _ = Task.Run(() => CheckAsync(id, endpoint, interval), CancellationToken.None);
            }
        }

        // A broker gone from the pool takes its check with it (one that registers again starts as answering).
        foreach (var gone in _checks.Keys.Where(id => !model.HasBroker(id)).ToList())
        {
            _checks.Remove(gone);
            model.SetUnanswering(gone, false);
        }
    }

    private async Task CheckAsync(string brokerId, string endpoint, TimeSpan timeout)
    {
        string? failure;
        try
        {
            // DnsSafeHost: an IPv6 address without the URL's brackets, which a connect would take for a host name.
            var uri = new Uri(endpoint);
            using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            using var limit = new CancellationTokenSource(timeout);
            await socket.ConnectAsync(uri.DnsSafeHost, uri.Port, limit.Token).ConfigureAwait(false);
            failure = null;
        }
        catch (OperationCanceledException)
        {
            failure = $"no answer within {timeout.TotalSeconds:0.###} s";
        }
        catch (Exception ex)
        {
            // Whatever the check met, it did not reach the broker; and the result must come back, or the broker's
            // check would stay in flight and never run again.
            failure = ex.Message;
        }

        // A loop that has stopped (this replica no longer leads) takes no more work: the result goes with it.
        _work.Writer.TryWrite(new BrokerCheckedWork(brokerId, endpoint, failure));
    }

    private void Checked(BrokerCheckedWork check)
    {
        if (!_checks.TryGetValue(check.BrokerId, out var state))
        {
            return;
        }

        state.InFlight = false;
        var model = _book.Model;
        if (check.Failure is null)
        {
            state.Failures = 0;
            if (model.IsUnanswering(check.BrokerId))
            {
                model.SetUnanswering(check.BrokerId, false);
                Log.BrokerAnswers(_logger, check.BrokerId, check.Endpoint);
            }

            return;
        }

        if (++state.Failures >= 2 && !model.IsUnanswering(check.BrokerId) && model.HasBroker(check.BrokerId))
        {
            model.SetUnanswering(check.BrokerId, true);
            Log.BrokerDoesNotAnswer(_logger, check.BrokerId, check.Endpoint, check.Failure);
        }
    }

    /// <summary>The state of the checks of one broker's endpoint, owned by the loop.</summary>
    private sealed class BrokerCheck
    {
        public bool InFlight;
        public int Failures;
        public DateTimeOffset Next;
    }

    private void Admit(AllocateWork work)
    {
        try
        {
            _pending.Add(_decider.Admit(work.Request, work.Received, work.Reply, ++_sequence));
        }
        catch (GpuPoolException ex)
        {
            work.Reply.TrySetException(ex);
        }
    }

    /// <summary>Decides every waiting request, highest class first and fair across tenants within a class; commits the grants.</summary>
    private async Task ScheduleAsync(CancellationToken cancellationToken)
    {
        // With the most batches in flight, requests wait for one to settle (its CommittedWork wakes the loop): the
        // next batch then takes all of them, and shares its transactions among more grants.
        var now = _time.GetUtcNow();
        if ((_pending.Count == 0 && !_book.HasRemovalsDue(now)) || _commitsInFlight >= MaxCommitsInFlight)
        {
            return;
        }

        var grants = new List<Grant>();
        var victims = new List<LeaseRecord>();
        var round = _decider.NewRound(_pending);
        foreach (var pending in _decider.Order(_pending, now))
        {
            if (pending.Reply.Task.IsCompleted)
            {
                _pending.Remove(pending);
                continue;
            }

            // Each decision is applied before the next is made: a grant's room is taken, a victim is marked.
            switch (_decider.Decide(pending, now, round))
            {
                case QueueDecision.Place place:
                    var grant = _committer.CreateGrant(pending, place.Site, place.Borrowed, now);
                    foreach (var record in grant.Records)
                    {
                        _book.Hold(record, now);
                    }

                    grants.Add(grant);
                    _pending.Remove(pending);
                    break;
                case QueueDecision.Preempt preempt:
                    foreach (var victim in preempt.Victims)
                    {
                        _book.MarkVictim(victim, preempt.RevokeAt);
                        victims.Add(victim);
                        Log.Preempting(_logger, victim.LeaseId, victim.Tenant, pending.Class.Name, pending.Request.Tenant);
                    }

                    pending.Evicting = true;
                    pending.EvictionSite = preempt.Site;
                    pending.Deadline = preempt.WaitUntil;
                    break;
                case QueueDecision.Wait { NoEvictionAt: { } generation } wait:
                    pending.NoEvictionAt = generation;
                    pending.SearchAgainAt = wait.SearchAgainAt;
                    break;
                case QueueDecision.Wait { SearchAgainAt: { } again }:
                    pending.SearchAgainAt = again;
                    break;
                case QueueDecision.Refuse refuse:
                    _pending.Remove(pending);
                    Log.AllocationRefused(_logger, pending.Request.Tenant, refuse.Error.Message);
                    pending.Reply.TrySetException(refuse.Error);
                    break;
            }
        }

        foreach (var victim in victims)
        {
            await _committer.MarkPreemptedAsync(victim, _stop.Token).ConfigureAwait(false);
        }

        var removals = _book.TakeRemovalsDue(now);
        if (grants.Count > 0 || removals.Count > 0)
        {
            StartCommit(new CommitBatch(grants, removals), cancellationToken);
        }
    }

    /// <summary>
    /// Commits a batch off the loop; the loop goes on applying store changes and deciding the next batch meanwhile
    /// (up to <see cref="MaxCommitsInFlight"/> batches in flight), and settles the outcomes itself when the
    /// <see cref="CommittedWork"/> arrives. Once the loop has stopped, the outcomes go straight to the callers.
    /// </summary>
    private void StartCommit(CommitBatch batch, CancellationToken cancellationToken)
    {
        _commitsInFlight++;
        var commit = Task.Run(async () =>
        {
            await _committer.CommitAsync(batch, cancellationToken).ConfigureAwait(false);
            if (!_work.Writer.TryWrite(new CommittedWork(batch)))
            {
                batch.Answer();
            }
        }, CancellationToken.None);
        lock (_commits)
        {
            _commits.Add(commit);
        }

        _ = commit.ContinueWith(t => { lock (_commits) { _commits.Remove(t); } }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private ClusterView Snapshot()
    {
        var model = _book.Model;
        var view = new ClusterView();
        view.Brokers.AddRange(model.Brokers.OrderBy(b => b.BrokerId, StringComparer.Ordinal));
        view.Devices.AddRange(model.DeviceViews().OrderBy(d => d.BrokerId, StringComparer.Ordinal).ThenBy(d => d.Device.Index));
        view.Leases.AddRange(model.Leases.OrderBy(l => l.LeaseId, StringComparer.Ordinal));
        view.Draining.AddRange(model.Drained.Order(StringComparer.Ordinal));
        foreach (var pending in _decider.Order(_pending, _time.GetUtcNow()))
        {
            view.Queue.Add(new QueuedRequest
            {
                Tenant = pending.Request.Tenant,
                PriorityClass = pending.Class.Name,
                MemoryBytes = pending.Ask.MemoryBytes,
                ComputeShare = pending.Ask.ComputeShare,
                WholeDevices = pending.Ask.WholeDevices,
                Since = Timestamp.FromDateTimeOffset(pending.Received),
                Deadline = Timestamp.FromDateTimeOffset(pending.Deadline),
            });
        }

        return view;
    }
}
