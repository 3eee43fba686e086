using Google.Protobuf.WellKnownTypes;
using GpuPool.Protocol;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Placement;
using GpuPool.Scheduler.Policy;

namespace GpuPool.Scheduler.Queue;

/// <summary>
/// Decides the waiting requests against the pool model and the policy: which goes first, and for each whether it
/// is placed, preempts, waits or is refused. It reads the model and writes nothing, so it is tested without a
/// store; the leader's loop applies each decision (charging a grant, marking victims) before it decides the next.
/// </summary>
/// <param name="maxPassOver">
/// How long a request may be passed over by requests of its class that arrived after it (the tenant-fair order puts
/// the tenants holding least first): once it has waited this long it goes ahead of them (<see cref="Order"/>). Null:
/// <see cref="SchedulerOptions.MaxPassOver"/>'s default.
/// </param>
/// <param name="reservations">
/// Whether the first request of each class that finds no room reserves the site where it is closest to fitting
/// (<see cref="QueueRound"/>); off only in tests that show what happens without.
/// </param>
internal sealed class QueueDecider(PoolModel model, PoolPolicy policy, Func<string, bool> isEnding, TimeSpan preemptionGrace, TimeSpan? maxPassOver = null, bool reservations = true)
{
    private readonly TimeSpan _maxPassOver = maxPassOver ?? SchedulerOptions.DefaultMaxPassOver;

    /// <summary>A new pass over <paramref name="queue"/>: requests whose victims are going hold the room those leave.</summary>
    public QueueRound NewRound(IEnumerable<PendingRequest> queue)
    {
        var round = new QueueRound(reservations);
        foreach (var pending in queue)
        {
            if (pending.Evicting && pending.EvictionSite is { } site && !pending.Reply.Task.IsCompleted)
            {
                round.Reserve(pending, site);
            }
        }

        return round;
    }

    /// <summary>
    /// Checks a new request against what never changes while it waits (its class exists, its tenant has a quota,
    /// some device or host of the pool could ever hold it) and makes it a queue entry; throws the refusal.
    /// </summary>
    public PendingRequest Admit(AllocateRequest request, DateTimeOffset received, TaskCompletionSource<AllocateReply> reply, long sequence)
    {
        var className = string.IsNullOrEmpty(request.PriorityClass) ? PriorityClasses.DefaultName : request.PriorityClass;
        if (!policy.Classes.TryGetValue(className, out var cls))
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, $"priority class '{className}' does not exist (classes: {string.Join(", ", policy.Classes.Keys.Order(StringComparer.Ordinal))})");
        }

        if (policy.QuotaOf(request.Tenant) is null)
        {
            throw new GpuPoolException(ErrorCode.PermissionDenied, $"tenant '{request.Tenant}' has no quota in this pool: an admin sets one with `gpupool quota set {request.Tenant} …`");
        }

        var ask = request.WholeDevices > 0 ? PlacementAsk.Gang(request.WholeDevices, request.DeviceModel) : PlacementAsk.Slice(request.MemoryBytes, request.ComputeShare, request.DeviceModel);
        if (model.BrokerCount > 0 && !model.CouldEverFit(ask))
        {
            throw new GpuPoolException(ErrorCode.ResourceExhausted, ask.IsGang
                ? $"no host of this pool has {ask.WholeDevices} devices{ModelText(ask)}"
                : $"no device of this pool is large enough for {Units.FormatBytes(ask.MemoryBytes)} with compute share {ask.ComputeShare}{ModelText(ask)}");
        }

        return new PendingRequest(request, received, reply, ask, cls, received + TimeSpan.FromMilliseconds(request.WaitTimeoutMs), sequence);
    }

    /// <summary>Highest class first; within a class the tenant holding least goes next, FIFO per tenant (no request is overdue).</summary>
    public List<PendingRequest> Order(IReadOnlyCollection<PendingRequest> queue) => Order(queue, DateTimeOffset.MinValue);

    /// <summary>
    /// Highest class first; within a class, first the requests that have waited the longest a request may be passed
    /// over (by arrival), then the tenant holding least goes next, FIFO per tenant.
    /// </summary>
    public List<PendingRequest> Order(IReadOnlyCollection<PendingRequest> queue, DateTimeOffset now)
    {
        var ordered = new List<PendingRequest>(queue.Count);
        foreach (var byClass in queue.GroupBy(p => p.Class.Value).OrderByDescending(g => g.Key))
        {
            // Overdue: the fair order has passed it over long enough (a tenant that holds more would wait behind
            // tenants that hold less for as long as they keep asking).
            var overdue = byClass.Where(p => now - p.Received >= _maxPassOver).OrderBy(p => p.Sequence).ToList();
            ordered.AddRange(overdue);
            var queues = byClass.Except(overdue).GroupBy(p => p.Request.Tenant, StringComparer.Ordinal)
                .ToDictionary(g => g.Key, g => new Queue<PendingRequest>(g.OrderBy(p => p.Sequence)), StringComparer.Ordinal);
            var served = queues.Keys.ToDictionary(t => t, t => model.UsageOf(t).MilliGpus, StringComparer.Ordinal);
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

    /// <summary>What to do with <paramref name="pending"/> now, given the model as the decisions before it left it, with no reservation.</summary>
    public QueueDecision Decide(PendingRequest pending, DateTimeOffset now) => Decide(pending, now, null);

    /// <summary>
    /// What to do with <paramref name="pending"/> now, given the model as the decisions before it this round left it:
    /// it is placed and may evict only where <paramref name="round"/>'s reservations for requests ahead of it leave
    /// room, and the first of its class that finds no room reserves where it is closest to fitting.
    /// </summary>
    public QueueDecision Decide(PendingRequest pending, DateTimeOffset now, QueueRound? round)
    {
        var request = pending.Request;
        var quota = policy.QuotaOf(request.Tenant);
        if (quota is null)
        {
            return Refuse(ErrorCode.PermissionDenied, $"tenant '{request.Tenant}' has no quota in this pool any more");
        }

        var excluded = round?.ExclusionFor(pending);
        var placement = model.TryPlace(pending.Ask, excluded);
        var wholeMemory = placement is not null && pending.Ask.IsGang ? model.FindDevice(placement.BrokerId, placement.DeviceIndexes[0])!.MemoryTotalBytes : 0;
        var admission = Admission.Check(quota, model.UsageOf(request.Tenant), pending.Ask, wholeMemory, pending.Class.Name);
        switch (admission.Verdict)
        {
            case AdmissionVerdict.Refuse:
                return Refuse(ErrorCode.QuotaExceeded, admission.Reason);
            case AdmissionVerdict.Wait:
                return now >= pending.Deadline
                    ? Refuse(ErrorCode.QuotaExceeded, admission.Reason + (request.WaitTimeoutMs > 0 ? $" (waited {request.WaitTimeoutMs} ms)" : ""))
                    : QueueDecision.Wait.WithoutSearch;
        }

        var borrowed = admission.Verdict == AdmissionVerdict.Borrow;
        if (placement is not null)
        {
            return new QueueDecision.Place(placement, borrowed);
        }

        // Borrowed capacity is idle capacity only: a borrower never evicts anyone. A request within its quota may
        // also take back what other tenants borrowed at its class or below (a reclaim). An ask that found no eviction
        // searches again only once room may have come (the search walks every lease of the pool), or once a lease
        // that its class's minimum runtime kept out comes of age; a search that reservations narrowed is not
        // remembered (they are made afresh each round). A victim that is ending already is not marked (a marked
        // record must never outlive its deletion): once its removal settles, the next round sees the room it leaves.
        long? noEvictionAt = null;
        DateTimeOffset? searchAgainAt = null;
        if (!borrowed && !pending.Evicting && (pending.NoEvictionAt != model.RoomGeneration || now >= pending.SearchAgainAt))
        {
            var rule = new EvictionRule(pending.Class.Value) { ReclaimingTenant = request.Tenant, Now = now, MinRuntime = MinRuntimeOf, Excluded = excluded };
            var eviction = model.FindEviction(pending.Ask, rule);
            if (eviction is null)
            {
                noEvictionAt = excluded is null ? model.RoomGeneration : null;
                searchAgainAt = rule.ProtectedUntil;
            }
            else if (!eviction.Victims.Any(v => isEnding(v.LeaseId)))
            {
                round?.Head(pending, eviction.Site);
                return Preempt(pending, eviction, now);
            }
        }

        if (now < pending.Deadline)
        {
            // The first of its class that finds no room holds where it is closest to fitting (one whose victims are
            // going, the room they leave), so that the asks behind it are placed around it (backfill) rather than in
            // the room it waits for. A borrower holds nothing.
            if (round is not null && !borrowed && round.NeedsHead(pending))
            {
                round.Head(pending, pending.Evicting && pending.EvictionSite is not null ? pending.EvictionSite : model.ClosestSite(pending.Ask, excluded));
            }

            return noEvictionAt is null && searchAgainAt is null ? QueueDecision.Wait.WithoutSearch : new QueueDecision.Wait(noEvictionAt, searchAgainAt);
        }

        var (memory, share) = model.LargestFree();
        var waited = request.WaitTimeoutMs > 0 ? $" after waiting {request.WaitTimeoutMs} ms" : "";
        return model.BrokerCount == 0
            ? Refuse(ErrorCode.ResourceExhausted, "no broker is registered with this pool: start one (gpupool up, or gpupool broker)")
            : Refuse(ErrorCode.ResourceExhausted, pending.Ask.IsGang
                ? $"no host has {pending.Ask.WholeDevices} free devices{ModelText(pending.Ask)}{waited}"
                : $"no device has room for {Units.FormatBytes(pending.Ask.MemoryBytes)} with compute share {pending.Ask.ComputeShare}{ModelText(pending.Ask)}{waited}: the most free memory on one device is {Units.FormatBytes(memory)} and the most free share is {share}");
    }

    /// <summary>
    /// The victims marked with the grace's deadline and why (a borrowed lease is reclaimed: its tenant took capacity
    /// past its quota, and the asking tenant is within its own); the request waits at least until they are gone,
    /// whatever its own wait timeout.
    /// </summary>
    private QueueDecision.Preempt Preempt(PendingRequest pending, Eviction eviction, DateTimeOffset now)
    {
        var revokeAt = now + preemptionGrace;
        var preempted = $"preempted by a request of priority class '{pending.Class.Name}' (tenant '{pending.Request.Tenant}')";
        var marked = new List<LeaseRecord>(eviction.Victims.Count);
        foreach (var victim in eviction.Victims)
        {
            var record = victim.Clone();
            record.PreemptDeadline = Timestamp.FromDateTimeOffset(revokeAt);
            record.PreemptReason = victim.Borrowed
                ? $"reclaimed by tenant '{pending.Request.Tenant}' within its quota (priority class '{pending.Class.Name}'): this lease borrowed capacity past tenant '{victim.Tenant}''s quota"
                : preempted;
            marked.Add(record);
        }

        var waitUntil = revokeAt + preemptionGrace;
        return new QueueDecision.Preempt(marked, revokeAt, pending.Deadline > waitUntil ? pending.Deadline : waitUntil, eviction.Site);
    }

    /// <summary>A lease's minimum runtime before eviction: its class's as the policy has it now (none for a class since deleted).</summary>
    private TimeSpan MinRuntimeOf(LeaseRecord lease)
        => policy.Classes.TryGetValue(lease.PriorityClass, out var cls) ? TimeSpan.FromSeconds(cls.MinRuntimeSeconds) : TimeSpan.Zero;

    private static QueueDecision.Refuse Refuse(ErrorCode code, string message) => new(new GpuPoolException(code, message));

    private static string ModelText(PlacementAsk ask) => string.IsNullOrEmpty(ask.DeviceModel) ? "" : $" of model '{ask.DeviceModel}'";
}
