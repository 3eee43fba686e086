using GpuPool.Coordination;
using GpuPool.Protocol.V1;

namespace GpuPool.Scheduler.Placement;

/// <summary>A snapshot of the pool read from the store: live brokers, their devices, and the leases on each device.</summary>
public sealed class ClusterState
{
    public required IReadOnlyList<BrokerRecord> Brokers { get; init; }

    public required IReadOnlyList<LeaseRecord> Leases { get; init; }

    public static async Task<ClusterState> ReadAsync(IClusterStore store, CancellationToken cancellationToken)
    {
        var brokers = await store.ListAsync(StoreKeys.Brokers, cancellationToken).ConfigureAwait(false);
        var leases = await store.ListAsync(StoreKeys.Leases, cancellationToken).ConfigureAwait(false);
        return new ClusterState
        {
            Brokers = brokers.Entries.Select(e => BrokerRecord.Parser.ParseFrom(e.Value.Span)).ToArray(),
            Leases = leases.Entries.Select(e => LeaseRecord.Parser.ParseFrom(e.Value.Span)).ToArray(),
        };
    }

    /// <summary>Every device of every broker, with what its leases have taken.</summary>
    public IReadOnlyList<DeviceView> Devices()
    {
        var taken = Leases
            .GroupBy(l => (l.BrokerId, l.DeviceIndex))
            .ToDictionary(g => g.Key, g => (Memory: g.Aggregate(0UL, (s, l) => s + l.MemoryBytes), Share: (uint)g.Sum(l => l.ComputeShare), Count: (uint)g.Count()));
        var views = new List<DeviceView>();
        foreach (var broker in Brokers)
        {
            foreach (var device in broker.Devices)
            {
                taken.TryGetValue((broker.BrokerId, device.Index), out var t);
                views.Add(new DeviceView { BrokerId = broker.BrokerId, Device = device, MemoryLeasedBytes = t.Memory, ComputeLeased = t.Share, LeaseCount = t.Count });
            }
        }

        return views;
    }
}
