using GpuPool.Protocol.V1;

namespace GpuPool.Scheduler.Placement;

/// <summary>What a request asks to be placed: a slice of one device, or N whole devices on one host.</summary>
public readonly record struct PlacementAsk(ulong MemoryBytes, uint ComputeShare, uint WholeDevices, string DeviceModel)
{
    public bool IsGang => WholeDevices > 0;

    public static PlacementAsk Slice(ulong memoryBytes, uint computeShare, string deviceModel = "") => new(memoryBytes, computeShare, 0, deviceModel);

    public static PlacementAsk Gang(uint devices, string deviceModel = "") => new(0, 0, devices, deviceModel);
}

/// <summary>Where a request goes: one device for a slice, N devices of one broker for a gang.</summary>
public sealed record Site(string BrokerId, IReadOnlyList<uint> DeviceIndexes);

/// <summary>Leases a preemption would evict so that <see cref="Site"/> fits.</summary>
public sealed record Eviction(Site Site, IReadOnlyList<LeaseRecord> Victims);

/// <summary>
/// Which leases a request may evict, and which devices it may not touch: preemptible leases of a class below
/// <see cref="Priority"/>; with <see cref="ReclaimingTenant"/>, also leases other tenants borrowed past their quota at
/// <see cref="Priority"/> or below; never a lease already being preempted, nor one younger than its class's minimum
/// runtime (<see cref="MinRuntime"/>, by <see cref="Now"/>), nor one on a device <see cref="Excluded"/> names.
/// </summary>
public sealed class EvictionRule(int priority)
{
    public int Priority { get; } = priority;

    /// <summary>The asking tenant, when it is within its quota: it may take back capacity others borrowed (null: it may not).</summary>
    public string? ReclaimingTenant { get; init; }

    /// <summary>The time a lease's age is taken at (its <c>created</c> to now).</summary>
    public DateTimeOffset Now { get; init; }

    /// <summary>A lease's minimum runtime before it may be evicted (its class's); null: none.</summary>
    public Func<LeaseRecord, TimeSpan>? MinRuntime { get; init; }

    /// <summary>Devices (broker id, index) the request may not evict on: reserved for a request ahead of it. Null: none.</summary>
    public Func<string, uint, bool>? Excluded { get; init; }

    /// <summary>
    /// After a search: the earliest time at which a lease its minimum runtime kept out becomes a candidate (null: none
    /// was kept out), so that a request that found no eviction searches again then, though no room came.
    /// </summary>
    public DateTimeOffset? ProtectedUntil { get; private set; }

    /// <summary>Whether <paramref name="lease"/> may be a victim (notes when the minimum runtime alone kept it out).</summary>
    internal bool IsCandidate(LeaseRecord lease)
    {
        if (!lease.Preemptible || lease.PreemptDeadline is not null)
        {
            return false;
        }

        var reclaimable = ReclaimingTenant is not null && lease.Borrowed && lease.PriorityValue <= Priority && !string.Equals(lease.Tenant, ReclaimingTenant, StringComparison.Ordinal);
        if (lease.PriorityValue >= Priority && !reclaimable)
        {
            return false;
        }

        if (MinRuntime is not null && lease.Created is not null && MinRuntime(lease) is { } min && min > TimeSpan.Zero)
        {
            var oldEnough = lease.Created.ToDateTimeOffset() + min;
            if (Now < oldEnough)
            {
                ProtectedUntil = ProtectedUntil is { } earliest && earliest <= oldEnough ? earliest : oldEnough;
                return false;
            }
        }

        return true;
    }

    internal bool Excludes(string brokerId, uint index) => Excluded is not null && Excluded(brokerId, index);
}

/// <summary>
/// The leader's in-memory picture of the pool: brokers and their devices, the leases on each device, and
/// each tenant's usage, kept in step with the store by watches and by the leader's own commits. Indexes
/// make placement cheap on a large pool: devices ordered by free memory (best fit for slices is the first
/// device in that order with room), and brokers ordered by how many of their devices are wholly free (best
/// fit for gangs). Not thread-safe: the allocator's single loop owns it.
/// </summary>
public sealed class PoolModel
{
    private readonly Dictionary<string, BrokerSlot> _brokers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, LeaseRecord> _leases = new(StringComparer.Ordinal);

    /// <summary>Lease ids by broker id, so a broker's coming and going costs its own leases, not the pool's.</summary>
    private readonly Dictionary<string, HashSet<string>> _leasesByBroker = new(StringComparer.Ordinal);
    private readonly Dictionary<string, TenantUsage> _usage = new(StringComparer.Ordinal);
    private readonly HashSet<string> _drained = new(StringComparer.Ordinal);

    /// <summary>Brokers the leader's checks find not answering at their endpoints: out of placement until they do.</summary>
    private readonly HashSet<string> _unanswering = new(StringComparer.Ordinal);

    /// <summary>Placeable devices by (free memory, key): draining brokers' devices are left out.</summary>
    private readonly SortedSet<(ulong Free, DeviceSlot Device)> _byFreeMemory = new(FreeMemoryOrder.Instance);

    /// <summary>The same entries by device name, so an ask naming a model passes over no device of another.</summary>
    private readonly Dictionary<string, SortedSet<(ulong Free, DeviceSlot Device)>> _byNameAndFreeMemory = new(StringComparer.Ordinal);

    /// <summary>Placeable brokers by (wholly free devices, id).</summary>
    private readonly SortedSet<(int WholeFree, string BrokerId)> _byWholeFree = new();

    public int BrokerCount => _brokers.Count;

    public int DeviceCount { get; private set; }

    public int LeaseCount => _leases.Count;

    public IEnumerable<BrokerRecord> Brokers => _brokers.Values.Select(b => b.Record);

    public IEnumerable<LeaseRecord> Leases => _leases.Values;

    public IReadOnlyCollection<string> Drained => _drained;

    public LeaseRecord? FindLease(string leaseId) => _leases.GetValueOrDefault(leaseId);

    public bool HasBroker(string brokerId) => _brokers.ContainsKey(brokerId);

    /// <summary>The broker's record, or null when it is not registered.</summary>
    public BrokerRecord? FindBroker(string brokerId) => _brokers.GetValueOrDefault(brokerId)?.Record;

    /// <summary>A device of a registered broker, or null.</summary>
    public DeviceInfo? FindDevice(string brokerId, uint index)
        => _brokers.TryGetValue(brokerId, out var broker) && broker.Devices.TryGetValue(index, out var device) ? device.Info : null;

    /// <summary>The leases the model holds on a broker's devices (also for a broker that is not registered).</summary>
    public IEnumerable<LeaseRecord> LeasesOn(string brokerId)
        => _leasesByBroker.TryGetValue(brokerId, out var ids) ? ids.Select(id => _leases[id]) : [];

    public TenantUsage UsageOf(string tenant) => _usage.GetValueOrDefault(tenant) ?? TenantUsage.None;

    /// <summary>
    /// Changes whenever room may have come to the pool: a lease gone (or replaced), a broker registered anew or
    /// changed, a broker returned to service. While it stays the same, an ask that found neither a place nor an
    /// eviction finds neither again (a lease added only takes room, and an evictable one offers what it takes),
    /// so the allocator does not search again (<see cref="FindEviction"/> walks every lease of the pool).
    /// </summary>
    public long RoomGeneration { get; private set; }

    /// <summary>Adds or replaces a broker. Its devices keep the leases the model holds for them.</summary>
    public void UpsertBroker(BrokerRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        if (_brokers.TryGetValue(record.BrokerId, out var existing))
        {
            // A heartbeat: the same devices with fresh telemetry. Placement reads only what stays the same, so the
            // slot takes the new record in place, without walking the leases (10,000 hosts heartbeat all the time).
            if (existing.Record.Draining == record.Draining && SameDevices(existing, record))
            {
                existing.Record = record;
                foreach (var info in record.Devices)
                {
                    existing.Devices[info.Index].Info = info;
                }

                return;
            }

            Unindex(existing);
            DeviceCount -= existing.Devices.Count;
        }

        RoomGeneration++;
        var slot = new BrokerSlot(record);
        foreach (var info in record.Devices)
        {
            // A device listed twice counts once: the later entry wins.
            var device = new DeviceSlot(slot, info);
            slot.Devices[info.Index] = device;
        }

        foreach (var lease in LeasesOn(record.BrokerId))
        {
            foreach (var index in DeviceIndexes(lease))
            {
                if (slot.Devices.TryGetValue(index, out var device))
                {
                    device.Add(lease);
                }
            }
        }

        _brokers[record.BrokerId] = slot;
        DeviceCount += slot.Devices.Count;
        Index(slot);
    }

    /// <summary>Removes a broker; returns the leases that were on it (they stay in the model until removed).</summary>
    public IReadOnlyList<LeaseRecord> RemoveBroker(string brokerId)
    {
        if (!_brokers.Remove(brokerId, out var slot))
        {
            return [];
        }

        Unindex(slot);
        DeviceCount -= slot.Devices.Count;
        return [.. LeasesOn(brokerId)];
    }

    /// <summary>Marks a broker (by id) as drained by an admin, or returns it to service.</summary>
    public void SetDrained(string brokerId, bool drained) => SetOut(_drained, brokerId, drained);

    /// <summary>Marks a broker (by id) as not answering at its endpoint (out of placement), or as answering again.</summary>
    public void SetUnanswering(string brokerId, bool unanswering) => SetOut(_unanswering, brokerId, unanswering);

    public bool IsUnanswering(string brokerId) => _unanswering.Contains(brokerId);

    public IReadOnlyCollection<string> Unanswering => _unanswering;

    private void SetOut(HashSet<string> set, string brokerId, bool outOfPlacement)
    {
        var slot = _brokers.GetValueOrDefault(brokerId);
        if (slot is not null)
        {
            Unindex(slot);
        }

        if (outOfPlacement)
        {
            set.Add(brokerId);
        }
        else
        {
            RoomGeneration++;
            set.Remove(brokerId);
        }

        if (slot is not null)
        {
            Index(slot);
        }
    }

    /// <summary>Adds or replaces a lease (by id), charging its device(s) and its tenant.</summary>
    public void UpsertLease(LeaseRecord lease)
    {
        ArgumentNullException.ThrowIfNull(lease);
        RemoveLease(lease.LeaseId);
        _leases[lease.LeaseId] = lease;
        if (!_leasesByBroker.TryGetValue(lease.BrokerId, out var ids))
        {
            ids = new HashSet<string>(StringComparer.Ordinal);
            _leasesByBroker[lease.BrokerId] = ids;
        }

        ids.Add(lease.LeaseId);
        Usage(lease.Tenant).Add(lease, +1);
        OnDevices(lease, static (device, l) => device.Add(l));
    }

    public LeaseRecord? RemoveLease(string leaseId)
    {
        if (!_leases.Remove(leaseId, out var lease))
        {
            return null;
        }

        RoomGeneration++;

        if (_leasesByBroker.TryGetValue(lease.BrokerId, out var ids) && ids.Remove(leaseId) && ids.Count == 0)
        {
            _leasesByBroker.Remove(lease.BrokerId);
        }

        var usage = Usage(lease.Tenant);
        usage.Add(lease, -1);
        if (usage.Leases == 0)
        {
            _usage.Remove(lease.Tenant);
        }

        OnDevices(lease, static (device, l) => device.Remove(l));
        return lease;
    }

    /// <summary>
    /// Applies a change to the lease's device(s), keeping the index entries in step: only the entries of the devices
    /// it touches move, and the broker's entry by wholly free devices only when that count changes.
    /// </summary>
    private void OnDevices(LeaseRecord lease, Action<DeviceSlot, LeaseRecord> change)
    {
        if (!_brokers.TryGetValue(lease.BrokerId, out var broker))
        {
            return;
        }

        var indexed = IsPlaceable(broker);
        var wholeFreeBefore = indexed ? WholeFree(broker) : 0;
        foreach (var index in DeviceIndexes(lease))
        {
            if (broker.Devices.TryGetValue(index, out var device))
            {
                if (indexed)
                {
                    UnindexDevice(device);
                }

                change(device, lease);
                if (indexed)
                {
                    IndexDevice(device);
                }
            }
        }

        var wholeFreeAfter = indexed ? WholeFree(broker) : 0;
        if (wholeFreeAfter != wholeFreeBefore)
        {
            _byWholeFree.Remove((wholeFreeBefore, broker.Record.BrokerId));
            _byWholeFree.Add((wholeFreeAfter, broker.Record.BrokerId));
        }
    }

    private static int WholeFree(BrokerSlot broker)
    {
        var count = 0;
        foreach (var device in broker.Devices.Values)
        {
            count += device.IsWhollyFree ? 1 : 0;
        }

        return count;
    }

    /// <summary>
    /// Best fit: the slice goes where it leaves the least free memory; a gang goes to the host with the fewest wholly
    /// free devices that still has enough. Devices <paramref name="excluded"/> names (broker id, index) are passed
    /// over, as if full: they are reserved for a request ahead of this one.
    /// </summary>
    public Site? TryPlace(PlacementAsk ask, Func<string, uint, bool>? excluded = null)
    {
        if (ask.IsGang)
        {
            foreach (var (_, brokerId) in _byWholeFree.GetViewBetween((checked((int)ask.WholeDevices), ""), (int.MaxValue, "\uffff")))
            {
                var broker = _brokers[brokerId];
                var free = broker.Devices.Values.Where(d => d.IsWhollyFree && ModelMatches(d, ask.DeviceModel) && !(excluded?.Invoke(brokerId, d.Info.Index) ?? false))
                    .Take((int)ask.WholeDevices).ToArray();
                if (free.Length == ask.WholeDevices)
                {
                    return new Site(brokerId, [.. free.Select(d => d.Info.Index)]);
                }
            }

            return null;
        }

        if (string.IsNullOrEmpty(ask.DeviceModel))
        {
            return BestFit(_byFreeMemory, ask, null, excluded) is { } device ? new Site(device.Broker.Record.BrokerId, [device.Info.Index]) : null;
        }

        // The best fit among the device names that match: the same device a scan of every device would find.
        DeviceSlot? best = null;
        foreach (var (name, devices) in _byNameAndFreeMemory)
        {
            if (name.Contains(ask.DeviceModel, StringComparison.OrdinalIgnoreCase))
            {
                best = BestFit(devices, ask, best, excluded) ?? best;
            }
        }

        return best is null ? null : new Site(best.Broker.Record.BrokerId, [best.Info.Index]);
    }

    /// <summary>The first device in (free memory, key) order with room for the ask and not excluded, if it comes before <paramref name="better"/>.</summary>
    private static DeviceSlot? BestFit(SortedSet<(ulong Free, DeviceSlot Device)> devices, PlacementAsk ask, DeviceSlot? better, Func<string, uint, bool>? excluded)
    {
        foreach (var entry in devices.GetViewBetween((ask.MemoryBytes, DeviceSlot.Lowest), (ulong.MaxValue, DeviceSlot.Highest)))
        {
            if (better is not null && FreeMemoryOrder.Instance.Compare(entry, (better.FreeMemory, better)) >= 0)
            {
                return null;
            }

            if (entry.Device.FreeShare >= ask.ComputeShare && !(excluded?.Invoke(entry.Device.Broker.Record.BrokerId, entry.Device.Info.Index) ?? false))
            {
                return entry.Device;
            }
        }

        return null;
    }

    /// <summary>
    /// Where an ask that fits nowhere now is closest to fitting, for a reservation: for a gang, the host whose
    /// matching devices, taken most free first, have the most wholly free and then the fewest leases; for a slice,
    /// the device that large enough whose shortfall (of memory or share, as a part of the device) is least. Ties go
    /// to the lowest broker id and index. Devices <paramref name="excluded"/> names are left out; null when no
    /// placeable device or host could ever hold the ask.
    /// </summary>
    public Site? ClosestSite(PlacementAsk ask, Func<string, uint, bool>? excluded = null)
    {
        Site? best = null;
        (double Shortfall, int Leases) bestCost = (double.MaxValue, int.MaxValue);
        foreach (var broker in _brokers.Values.Where(IsPlaceable).OrderBy(b => b.Record.BrokerId, StringComparer.Ordinal))
        {
            var id = broker.Record.BrokerId;
            var devices = broker.Devices.Values
                .Where(d => ModelMatches(d, ask.DeviceModel) && !(excluded?.Invoke(id, d.Info.Index) ?? false))
                .OrderBy(d => d.Leases.Count).ThenBy(d => d.Info.Index);
            if (ask.IsGang)
            {
                var chosen = devices.Take((int)ask.WholeDevices).ToArray();
                if (chosen.Length < ask.WholeDevices)
                {
                    continue;
                }

                Consider((chosen.Count(d => !d.IsWhollyFree), chosen.Sum(d => d.Leases.Count)), new Site(id, [.. chosen.Select(d => d.Info.Index).Order()]));
                continue;
            }

            foreach (var device in devices.OrderBy(d => d.Info.Index))
            {
                if (device.Info.MemoryTotalBytes < ask.MemoryBytes || device.Info.ComputeCapacity < ask.ComputeShare)
                {
                    continue;
                }

                var memory = (double)Deficit(device.MemoryLeased, ask.MemoryBytes, device.Info.MemoryTotalBytes) / Math.Max(1UL, device.Info.MemoryTotalBytes);
                var share = (double)Deficit(device.ShareLeased, ask.ComputeShare, device.Info.ComputeCapacity) / Math.Max(1U, device.Info.ComputeCapacity);
                Consider((Math.Max(memory, share), device.Leases.Count), new Site(id, [device.Info.Index]));
            }
        }

        return best;

        void Consider((double Shortfall, int Leases) cost, Site site)
        {
            if (cost.CompareTo(bestCost) < 0)
            {
                (best, bestCost) = (site, cost);
            }
        }
    }

    /// <summary>
    /// The cheapest eviction that makes room for <paramref name="ask"/> at priority <paramref name="priority"/>:
    /// only preemptible leases of a lower priority not already being preempted are candidates; the fewest
    /// victims win, then the lowest highest class among them (per device for a slice, per host for a gang, and
    /// across them); within a class the youngest go first. Null when no eviction makes room.
    /// </summary>
    public Eviction? FindEviction(PlacementAsk ask, int priority) => FindEviction(ask, new EvictionRule(priority));

    /// <summary>
    /// As <see cref="FindEviction(PlacementAsk, int)"/>, with the candidates <paramref name="rule"/> allows: within a
    /// class, the youngest still go first (so a reclaim takes the youngest borrowed leases first).
    /// </summary>
    public Eviction? FindEviction(PlacementAsk ask, EvictionRule rule)
    {
        ArgumentNullException.ThrowIfNull(rule);
        Eviction? best = null;
        (int Count, int MaxClass) bestCost = (int.MaxValue, int.MaxValue);
        foreach (var broker in _brokers.Values)
        {
            if (!IsPlaceable(broker))
            {
                continue;
            }

            if (ask.IsGang)
            {
                var options = new List<(DeviceSlot Device, List<LeaseRecord> Victims)>();
                foreach (var device in broker.Devices.Values)
                {
                    if (ModelMatches(device, ask.DeviceModel) && !rule.Excludes(broker.Record.BrokerId, device.Info.Index) && device.Leases.Values.All(rule.IsCandidate))
                    {
                        options.Add((device, [.. device.Leases.Values]));
                    }
                }

                if (options.Count < ask.WholeDevices)
                {
                    continue;
                }

                var chosen = options.OrderBy(o => o.Victims.Count).ThenBy(o => o.Victims.Count == 0 ? int.MinValue : o.Victims.Max(v => v.PriorityValue)).Take((int)ask.WholeDevices).ToArray();
                var victims = chosen.SelectMany(o => o.Victims).ToArray();
                Consider(new Site(broker.Record.BrokerId, [.. chosen.Select(o => o.Device.Info.Index)]), victims);
                continue;
            }

            foreach (var device in broker.Devices.Values)
            {
                if (!ModelMatches(device, ask.DeviceModel) || device.Info.MemoryTotalBytes < ask.MemoryBytes || device.Info.ComputeCapacity < ask.ComputeShare || rule.Excludes(broker.Record.BrokerId, device.Info.Index))
                {
                    continue;
                }

                if (SliceVictims(device, ask, rule) is { Count: > 0 } victims)
                {
                    Consider(new Site(broker.Record.BrokerId, [device.Info.Index]), victims);
                }
            }
        }

        return best;

        void Consider(Site placement, IReadOnlyList<LeaseRecord> victims)
        {
            var cost = (victims.Count, victims.Count == 0 ? int.MinValue : victims.Max(v => v.PriorityValue));
            if (cost.CompareTo(bestCost) < 0)
            {
                best = new Eviction(placement, victims);
                bestCost = cost;
            }
        }
    }

    /// <summary>
    /// The victims on one device for a slice: the fewest evictable leases whose removal makes room, and of those
    /// sets the one whose highest class is lowest (younger before older within a class). Empty when the slice
    /// fits already; null when evicting every candidate is not enough.
    /// </summary>
    private static List<LeaseRecord>? SliceVictims(DeviceSlot device, PlacementAsk ask, EvictionRule rule)
    {
        // What must be freed, from what is leased rather than from the free figures (which stop at zero): on a
        // device leased past its size, as after its broker re-registered smaller, the excess must go too.
        var needMemory = Deficit(device.MemoryLeased, ask.MemoryBytes, device.Info.MemoryTotalBytes);
        var needShare = Deficit(device.ShareLeased, ask.ComputeShare, device.Info.ComputeCapacity);
        if (needMemory == 0 && needShare == 0)
        {
            return [];
        }

        var candidates = device.Leases.Values.Where(rule.IsCandidate)
            .OrderBy(l => l.PriorityValue).ThenByDescending(l => l.Created?.ToDateTimeOffset() ?? default).ThenBy(l => l.LeaseId, StringComparer.Ordinal)
            .ToArray();

        // Taking candidates in that order until the slice fits gives the lowest highest class for its count…
        UInt128 memory = 0, share = 0;
        var taken = 0;
        while (taken < candidates.Length && (memory < needMemory || share < needShare))
        {
            memory += candidates[taken].MemoryBytes;
            share += candidates[taken].ComputeShare;
            taken++;
        }

        if (memory < needMemory || share < needShare)
        {
            return null;
        }

        // …but not always the fewest: one large lease of a higher class can free what several small ones do.
        if (taken > 1)
        {
            for (var count = FewestPossible(candidates, needMemory, needShare); count < taken; count++)
            {
                if (SmallestCover(candidates, count, needMemory, needShare) is { } fewer)
                {
                    return fewer;
                }
            }
        }

        return [.. candidates.Take(taken)];
    }

    private static UInt128 Deficit(UInt128 leased, UInt128 asked, UInt128 capacity)
        => leased + asked > capacity ? leased + asked - capacity : 0;

    /// <summary>A lower bound on the victims: the largest leases first, for memory and for share separately.</summary>
    private static int FewestPossible(LeaseRecord[] candidates, UInt128 needMemory, UInt128 needShare)
    {
        static int Count(IEnumerable<ulong> sizes, UInt128 need)
        {
            var count = 0;
            UInt128 sum = 0;
            foreach (var size in sizes)
            {
                if (sum >= need)
                {
                    break;
                }

                sum += size;
                count++;
            }

            return count;
        }

        return Math.Max(
            Count(candidates.Select(l => l.MemoryBytes).OrderDescending(), needMemory),
            Count(candidates.Select(l => (ulong)l.ComputeShare).OrderDescending(), needShare));
    }

    /// <summary>
    /// <paramref name="count"/> candidates that free enough, whose last (highest class, oldest) is as early in the
    /// preference order as possible, or null. A depth-first search with a bound on the nodes it visits, so that a
    /// device with very many small leases costs a bounded time; past the bound the caller keeps its answer.
    /// </summary>
    private static List<LeaseRecord>? SmallestCover(LeaseRecord[] candidates, int count, UInt128 needMemory, UInt128 needShare)
    {
        var budget = 20_000;
        var chosen = new int[count];

        // Prefix sums: what candidates [i, j) free together is memoryUpTo[j] - memoryUpTo[i].
        var memoryUpTo = new UInt128[candidates.Length + 1];
        var shareUpTo = new UInt128[candidates.Length + 1];
        for (var i = 0; i < candidates.Length; i++)
        {
            memoryUpTo[i + 1] = memoryUpTo[i] + candidates[i].MemoryBytes;
            shareUpTo[i + 1] = shareUpTo[i] + candidates[i].ComputeShare;
        }

        for (var last = count - 1; last < candidates.Length; last++)
        {
            // The cover ends at candidates[last]: pick the rest among the candidates before it.
            chosen[count - 1] = last;
            if (Search(0, count - 1, Sub(needMemory, candidates[last].MemoryBytes), Sub(needShare, candidates[last].ComputeShare), last))
            {
                return [.. chosen.Select(i => candidates[i])];
            }

            if (budget <= 0)
            {
                return null;
            }
        }

        return null;

        bool Search(int from, int left, UInt128 memory, UInt128 share, int end)
        {
            if (memory == 0 && share == 0)
            {
                // With picks to spare a smaller count makes room, and the caller tried smaller counts first.
                return left == 0;
            }

            if (left == 0 || --budget < 0)
            {
                return false;
            }

            for (var i = from; i <= end - left; i++)
            {
                // All of the rest together is not enough: no pick from here on is.
                if (memoryUpTo[end] - memoryUpTo[i] < memory || shareUpTo[end] - shareUpTo[i] < share)
                {
                    return false;
                }

                chosen[count - 1 - left] = i;
                if (Search(i + 1, left - 1, Sub(memory, candidates[i].MemoryBytes), Sub(share, candidates[i].ComputeShare), end))
                {
                    return true;
                }
            }

            return false;
        }

        static UInt128 Sub(UInt128 need, ulong freed) => need > freed ? need - freed : 0;
    }

    /// <summary>Whether any device of the pool could ever hold <paramref name="ask"/> (ignoring what is leased).</summary>
    public bool CouldEverFit(PlacementAsk ask)
    {
        if (ask.IsGang)
        {
            return _brokers.Values.Any(b => b.Devices.Values.Count(d => ModelMatches(d, ask.DeviceModel)) >= ask.WholeDevices);
        }

        return _brokers.Values.Any(b => b.Devices.Values.Any(d => ModelMatches(d, ask.DeviceModel) && d.Info.MemoryTotalBytes >= ask.MemoryBytes && d.Info.ComputeCapacity >= ask.ComputeShare));
    }

    /// <summary>The device views the admin API shows.</summary>
    public IEnumerable<DeviceView> DeviceViews()
        => _brokers.Values.SelectMany(b => b.Devices.Values).Select(d => new DeviceView
        {
            BrokerId = d.Broker.Record.BrokerId,
            Device = d.Info,
            MemoryLeasedBytes = d.MemoryLeased,
            ComputeLeased = d.ShareLeased,
            LeaseCount = (uint)d.Leases.Count,
        });

    /// <summary>The largest free memory and share on one placeable device, for "no room" messages.</summary>
    public (ulong Memory, uint Share) LargestFree()
    {
        ulong memory = 0;
        uint share = 0;
        foreach (var device in _brokers.Values.Where(IsPlaceable).SelectMany(b => b.Devices.Values))
        {
            memory = Math.Max(memory, device.FreeMemory);
            share = Math.Max(share, device.FreeShare);
        }

        return (memory, share);
    }

    public static IEnumerable<uint> DeviceIndexes(LeaseRecord lease) => [lease.DeviceIndex];

    private static bool ModelMatches(DeviceSlot device, string model)
        => string.IsNullOrEmpty(model) || device.Info.Name.Contains(model, StringComparison.OrdinalIgnoreCase);

    private bool IsPlaceable(BrokerSlot broker)
        => !broker.Record.Draining && !_drained.Contains(broker.Record.BrokerId) && !_unanswering.Contains(broker.Record.BrokerId);

    private TenantUsage Usage(string tenant)
    {
        if (!_usage.TryGetValue(tenant, out var usage))
        {
            usage = new TenantUsage();
            _usage[tenant] = usage;
        }

        return usage;
    }

    private void Index(BrokerSlot broker)
    {
        if (!IsPlaceable(broker))
        {
            return;
        }

        foreach (var device in broker.Devices.Values)
        {
            IndexDevice(device);
        }

        _byWholeFree.Add((WholeFree(broker), broker.Record.BrokerId));
    }

    private void Unindex(BrokerSlot broker)
    {
        foreach (var device in broker.Devices.Values)
        {
            UnindexDevice(device);
        }

        _byWholeFree.Remove((WholeFree(broker), broker.Record.BrokerId));
    }

    private void IndexDevice(DeviceSlot device)
    {
        _byFreeMemory.Add((device.FreeMemory, device));
        if (!_byNameAndFreeMemory.TryGetValue(device.Info.Name, out var named))
        {
            named = new SortedSet<(ulong Free, DeviceSlot Device)>(FreeMemoryOrder.Instance);
            _byNameAndFreeMemory[device.Info.Name] = named;
        }

        named.Add((device.FreeMemory, device));
    }

    private void UnindexDevice(DeviceSlot device)
    {
        _byFreeMemory.Remove((device.FreeMemory, device));
        if (_byNameAndFreeMemory.TryGetValue(device.Info.Name, out var named) && named.Remove((device.FreeMemory, device)) && named.Count == 0)
        {
            _byNameAndFreeMemory.Remove(device.Info.Name);
        }
    }

    /// <summary>Whether a broker record lists the same devices, with the same size, capacity and name, as the slot.</summary>
    private static bool SameDevices(BrokerSlot slot, BrokerRecord record)
    {
        if (record.Devices.Count != slot.Devices.Count)
        {
            return false;
        }

        foreach (var info in record.Devices)
        {
            if (!slot.Devices.TryGetValue(info.Index, out var device) || device.Info.MemoryTotalBytes != info.MemoryTotalBytes
                || device.Info.ComputeCapacity != info.ComputeCapacity || device.Info.Name != info.Name)
            {
                return false;
            }
        }

        return true;
    }

    private sealed class BrokerSlot(BrokerRecord record)
    {
        public BrokerRecord Record { get; set; } = record;

        public Dictionary<uint, DeviceSlot> Devices { get; } = [];
    }

    private sealed class DeviceSlot(BrokerSlot broker, DeviceInfo info)
    {
        /// <summary>Sentinels that order before and after every real device in the free-memory index.</summary>
        public static readonly DeviceSlot Lowest = new(null!, new DeviceInfo()) { Key = "" };
        public static readonly DeviceSlot Highest = new(null!, new DeviceInfo()) { Key = "\uffff" };

        public BrokerSlot Broker { get; } = broker;

        /// <summary>The device's latest description; what placement reads of it (size, capacity, name) never changes in place.</summary>
        public DeviceInfo Info { get; set; } = info;

        public string Key { get; private init; } = broker is null ? "" : broker.Record.BrokerId + "/" + info.Index.ToString(System.Globalization.CultureInfo.InvariantCulture);

        public Dictionary<string, LeaseRecord> Leases { get; } = new(StringComparer.Ordinal);

        public ulong MemoryLeased { get; private set; }

        public uint ShareLeased { get; private set; }

        public ulong FreeMemory => Info.MemoryTotalBytes - Math.Min(Info.MemoryTotalBytes, MemoryLeased);

        public uint FreeShare => Info.ComputeCapacity - Math.Min(Info.ComputeCapacity, ShareLeased);

        public bool IsWhollyFree => Leases.Count == 0;

        public void Add(LeaseRecord lease)
        {
            if (Leases.TryAdd(lease.LeaseId, lease))
            {
                MemoryLeased += lease.MemoryBytes;
                ShareLeased += lease.ComputeShare;
            }
        }

        public void Remove(LeaseRecord lease)
        {
            if (Leases.Remove(lease.LeaseId))
            {
                MemoryLeased -= lease.MemoryBytes;
                ShareLeased -= lease.ComputeShare;
            }
        }
    }

    private sealed class FreeMemoryOrder : IComparer<(ulong Free, DeviceSlot Device)>
    {
        public static readonly FreeMemoryOrder Instance = new();

        public int Compare((ulong Free, DeviceSlot Device) x, (ulong Free, DeviceSlot Device) y)
        {
            var c = x.Free.CompareTo(y.Free);
            return c != 0 ? c : string.CompareOrdinal(x.Device.Key, y.Device.Key);
        }
    }
}

/// <summary>What one tenant holds: the quota's units.</summary>
public sealed class TenantUsage
{
    public static readonly TenantUsage None = new();

    public ulong MilliGpus { get; private set; }

    public ulong MemoryBytes { get; private set; }

    public int Leases { get; private set; }

    internal void Add(LeaseRecord lease, int sign)
    {
        MilliGpus = (ulong)((long)MilliGpus + (sign * (long)lease.ComputeShare));
        MemoryBytes = sign > 0 ? MemoryBytes + lease.MemoryBytes : MemoryBytes - lease.MemoryBytes;
        Leases += sign;
    }
}
