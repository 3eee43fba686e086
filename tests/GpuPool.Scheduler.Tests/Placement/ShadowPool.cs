using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Placement;

namespace GpuPool.Scheduler.Tests.Placement;

/// <summary>One device as the oracle sees it: what its broker reports and every lease that names it.</summary>
internal sealed record ShadowDevice(BrokerRecord Broker, DeviceInfo Info, bool Placeable, IReadOnlyList<LeaseRecord> Leases)
{
    public string BrokerId => Broker.BrokerId;

    public UInt128 MemoryLeased => Leases.Aggregate(UInt128.Zero, (sum, l) => sum + l.MemoryBytes);

    public UInt128 ShareLeased => Leases.Aggregate(UInt128.Zero, (sum, l) => sum + l.ComputeShare);

    /// <summary>Free memory as the model defines it: never below zero, even on a device leased past its size.</summary>
    public UInt128 FreeMemory => MemoryLeased >= Info.MemoryTotalBytes ? 0 : Info.MemoryTotalBytes - MemoryLeased;

    public UInt128 FreeShare => ShareLeased >= Info.ComputeCapacity ? 0 : Info.ComputeCapacity - ShareLeased;

    public bool WhollyFree => Leases.Count == 0;

    public bool Matches(string model) => string.IsNullOrEmpty(model) || Info.Name.Contains(model, StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether the slice fits once <paramref name="evicted"/> are gone, counting what is really leased (no clamping).</summary>
    public bool FitsAfter(PlacementAsk ask, IEnumerable<LeaseRecord> evicted)
    {
        var gone = evicted.ToArray();
        var memory = MemoryLeased - gone.Aggregate(UInt128.Zero, (sum, l) => sum + l.MemoryBytes);
        var share = ShareLeased - gone.Aggregate(UInt128.Zero, (sum, l) => sum + l.ComputeShare);
        return memory + ask.MemoryBytes <= Info.MemoryTotalBytes && share + ask.ComputeShare <= Info.ComputeCapacity;
    }

    public override string ToString() => $"{BrokerId}/{Info.Index} ({Info.Name}, free {FreeMemory} B / {FreeShare}, {Leases.Count} leases)";
}

/// <summary>
/// A second picture of the pool kept the naive way: the records as given, and every question answered by a
/// linear scan or by trying every subset. What the tests expect of <see cref="PoolModel"/> comes from here.
/// </summary>
internal sealed class ShadowPool
{
    public Dictionary<string, BrokerRecord> Brokers { get; } = new(StringComparer.Ordinal);

    public Dictionary<string, LeaseRecord> Leases { get; } = new(StringComparer.Ordinal);

    public HashSet<string> Drained { get; } = new(StringComparer.Ordinal);

    public static ShadowPool Of(IEnumerable<BrokerRecord> brokers, IEnumerable<LeaseRecord> leases, IEnumerable<string> drained)
    {
        var shadow = new ShadowPool();
        foreach (var broker in brokers)
        {
            shadow.Brokers[broker.BrokerId] = broker;
        }

        foreach (var lease in leases)
        {
            shadow.Leases[lease.LeaseId] = lease;
        }

        shadow.Drained.UnionWith(drained);
        return shadow;
    }

    public bool IsPlaceable(BrokerRecord broker) => !broker.Draining && !Drained.Contains(broker.BrokerId);

    /// <summary>Every device of every registered broker; a device index listed twice is the later entry.</summary>
    public IReadOnlyList<ShadowDevice> Devices()
    {
        var devices = new List<ShadowDevice>();
        foreach (var broker in Brokers.Values)
        {
            var byIndex = new Dictionary<uint, DeviceInfo>();
            foreach (var info in broker.Devices)
            {
                byIndex[info.Index] = info;
            }

            foreach (var info in byIndex.Values)
            {
                var leases = Leases.Values.Where(l => l.BrokerId == broker.BrokerId && l.DeviceIndex == info.Index).ToArray();
                devices.Add(new ShadowDevice(broker, info, IsPlaceable(broker), leases));
            }
        }

        return devices;
    }

    public ShadowDevice? Device(string brokerId, uint index)
        => Devices().SingleOrDefault(d => d.BrokerId == brokerId && d.Info.Index == index);

    /// <summary>Devices that can take the slice as they are: placeable, the right model, room for memory and share.</summary>
    public IReadOnlyList<ShadowDevice> FeasibleForSlice(PlacementAsk ask)
        => [.. Devices().Where(d => d.Placeable && d.Matches(ask.DeviceModel) && d.FreeMemory >= ask.MemoryBytes && d.FreeShare >= ask.ComputeShare)];

    /// <summary>
    /// Brokers that can take the gang as they are, with two counts each: wholly free devices of the asked model,
    /// and wholly free devices of any model.
    /// </summary>
    public IReadOnlyList<(BrokerRecord Broker, int Matching, int WhollyFree)> FeasibleForGang(PlacementAsk ask)
        => [.. Devices().Where(d => d.Placeable).GroupBy(d => d.BrokerId, StringComparer.Ordinal)
            .Select(g => (g.First().Broker, Matching: g.Count(d => d.WhollyFree && d.Matches(ask.DeviceModel)), WhollyFree: g.Count(d => d.WhollyFree)))
            .Where(b => b.Matching >= ask.WholeDevices)];

    public static bool Evictable(LeaseRecord lease, int priority) => lease.Preemptible && lease.PriorityValue < priority && lease.PreemptDeadline is null;

    /// <summary>
    /// The cheapest eviction for a slice by trying every subset of every device's evictable leases: the fewest
    /// victims, then the lowest highest class among them. Null when no subset makes room anywhere.
    /// </summary>
    public (int Count, int MaxClass)? CheapestSliceEviction(PlacementAsk ask, int priority)
    {
        (int Count, int MaxClass)? best = null;
        foreach (var device in Devices().Where(d => d.Placeable && d.Matches(ask.DeviceModel)))
        {
            var candidates = device.Leases.Where(l => Evictable(l, priority)).ToArray();
            if (candidates.Length > 16)
            {
                throw new InvalidOperationException("the oracle tries every subset: keep pools small");
            }

            for (var mask = 1; mask < 1 << candidates.Length; mask++)
            {
                var victims = candidates.Where((_, i) => (mask & (1 << i)) != 0).ToArray();
                if (device.FitsAfter(ask, victims))
                {
                    var cost = (victims.Length, victims.Max(v => v.PriorityValue));
                    best = best is null || cost.CompareTo(best.Value) < 0 ? cost : best;
                }
            }
        }

        return best;
    }

    /// <summary>
    /// The cheapest eviction for a gang: on one placeable broker, N devices of the model whose leases are all
    /// evictable, every lease on them going; the fewest victims, then the lowest highest class.
    /// </summary>
    public (int Count, int MaxClass)? CheapestGangEviction(PlacementAsk ask, int priority)
    {
        (int Count, int MaxClass)? best = null;
        foreach (var broker in Devices().Where(d => d.Placeable).GroupBy(d => d.BrokerId, StringComparer.Ordinal))
        {
            var options = broker.Where(d => d.Matches(ask.DeviceModel) && d.Leases.All(l => Evictable(l, priority))).ToArray();
            foreach (var chosen in Subsets(options, (int)ask.WholeDevices))
            {
                var victims = chosen.SelectMany(d => d.Leases).ToArray();
                var cost = (victims.Length, victims.Length == 0 ? int.MinValue : victims.Max(v => v.PriorityValue));
                best = best is null || cost.CompareTo(best.Value) < 0 ? cost : best;
            }
        }

        return best;
    }

    public (ulong MilliGpus, ulong MemoryBytes, int Leases) UsageOf(string tenant)
    {
        var leases = Leases.Values.Where(l => l.Tenant == tenant).ToArray();
        return ((ulong)leases.Sum(l => (long)l.ComputeShare), leases.Aggregate(0UL, (sum, l) => sum + l.MemoryBytes), leases.Length);
    }

    private static IEnumerable<T[]> Subsets<T>(T[] items, int size)
    {
        if (size == 0)
        {
            yield return [];
            yield break;
        }

        for (var first = 0; first <= items.Length - size; first++)
        {
            foreach (var rest in Subsets(items[(first + 1)..], size - 1))
            {
                yield return [items[first], .. rest];
            }
        }
    }
}
