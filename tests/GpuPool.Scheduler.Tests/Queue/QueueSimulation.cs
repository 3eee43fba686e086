using Google.Protobuf.WellKnownTypes;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Placement;
using GpuPool.Scheduler.Policy;
using GpuPool.Scheduler.Queue;

namespace GpuPool.Scheduler.Tests.Queue;

/// <summary>
/// The leader's queue over time, without a store: each step (one second of a made-up clock) ends the leases whose
/// time is up, queues the asks that arrive, and decides the queue in order with one <see cref="QueueRound"/>, as the
/// allocator's loop does, charging each grant to the model before the next decision. Leases run a fixed time.
/// </summary>
internal sealed class QueueSimulation
{
    public static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private readonly PoolPolicy _policy = new(openTenants: true);
    private readonly QueueDecider _decider;
    private readonly List<PendingRequest> _pending = [];
    private readonly Dictionary<PendingRequest, TimeSpan> _runFor = [];
    private readonly Dictionary<string, DateTimeOffset> _ends = new(StringComparer.Ordinal);
    private long _sequence;
    private int _leases;

    public QueueSimulation(bool reservations, TimeSpan? maxPassOver = null)
    {
        foreach (var cls in PriorityClasses.Defaults)
        {
            _policy.Classes[cls.Name] = cls;
        }

        _decider = new QueueDecider(Model, _policy, static _ => false, TimeSpan.FromSeconds(10), maxPassOver, reservations);
    }

    public PoolModel Model { get; } = new();

    public DateTimeOffset Now { get; private set; } = T0;

    /// <summary>Every grant so far: when, to which request, and its records.</summary>
    public List<(DateTimeOffset At, PendingRequest Request, IReadOnlyList<LeaseRecord> Records)> Grants { get; } = [];

    /// <summary>The reservations of the last step's round.</summary>
    public IReadOnlyList<(PendingRequest Owner, Site Site)> Reserved { get; private set; } = [];

    /// <summary>A lease that is there from the start and ends <paramref name="endsAt"/> after it.</summary>
    public void Hold(string tenant, string brokerId, uint device, ulong memoryBytes, uint share, TimeSpan endsAt)
    {
        var id = "held-" + _leases++;
        Model.UpsertLease(new LeaseRecord { LeaseId = id, Tenant = tenant, BrokerId = brokerId, DeviceIndex = device, MemoryBytes = memoryBytes, ComputeShare = share, PriorityClass = "normal", PriorityValue = 100, Created = Timestamp.FromDateTimeOffset(T0) });
        _ends[id] = T0 + endsAt;
    }

    /// <summary>Queues an ask now; once granted, its lease(s) run <paramref name="runFor"/>.</summary>
    public PendingRequest Ask(AllocateRequest request, TimeSpan runFor)
    {
        var pending = _decider.Admit(request, Now, new(TaskCreationOptions.RunContinuationsAsynchronously), ++_sequence);
        _pending.Add(pending);
        _runFor[pending] = runFor;
        return pending;
    }

    public bool IsWaiting(PendingRequest pending) => _pending.Contains(pending);

    /// <summary>Moves the clock one second on: leases whose time is up end, then the queue is decided.</summary>
    public void Step(Action? arrivals = null)
    {
        Now += TimeSpan.FromSeconds(1);
        foreach (var (id, end) in _ends.Where(e => e.Value <= Now).ToList())
        {
            Model.RemoveLease(id);
            _ends.Remove(id);
        }

        arrivals?.Invoke();
        var round = _decider.NewRound(_pending);
        foreach (var pending in _decider.Order(_pending, Now))
        {
            switch (_decider.Decide(pending, Now, round))
            {
                case QueueDecision.Place place:
                    var records = Grant(pending, place.Site);
                    Grants.Add((Now, pending, records));
                    _pending.Remove(pending);
                    break;
                case QueueDecision.Wait { NoEvictionAt: { } generation } wait:
                    pending.NoEvictionAt = generation;
                    pending.SearchAgainAt = wait.SearchAgainAt;
                    break;
                case QueueDecision.Refuse:
                    _pending.Remove(pending);
                    break;
                case QueueDecision.Preempt:
                    throw new InvalidOperationException("no lease of a simulation is preemptible");
            }
        }

        Reserved = round.Reserved;
    }

    /// <summary>What each tenant holds now, in milli-GPU.</summary>
    public ulong Held(string tenant) => Model.UsageOf(tenant).MilliGpus;

    private List<LeaseRecord> Grant(PendingRequest pending, Site site)
    {
        var records = new List<LeaseRecord>();
        foreach (var index in site.DeviceIndexes)
        {
            var device = Model.FindDevice(site.BrokerId, index)!;
            var record = new LeaseRecord
            {
                LeaseId = "l-" + _leases++,
                Tenant = pending.Request.Tenant,
                BrokerId = site.BrokerId,
                DeviceIndex = index,
                MemoryBytes = pending.Ask.IsGang ? device.MemoryTotalBytes : pending.Ask.MemoryBytes,
                ComputeShare = pending.Ask.IsGang ? device.ComputeCapacity : pending.Ask.ComputeShare,
                PriorityClass = pending.Class.Name,
                PriorityValue = pending.Class.Value,
                Created = Timestamp.FromDateTimeOffset(Now),
            };
            Model.UpsertLease(record);
            _ends[record.LeaseId] = Now + _runFor[pending];
            records.Add(record);
        }

        return records;
    }
}
