using GpuPool.Protocol.V1;

namespace GpuPool.Scheduler.Placement;

/// <summary>
/// Chooses a device for a slice: among devices with room for both the memory and the compute share,
/// the best fit — the one left with the least free memory — so large holes stay for large asks.
/// Pure, so it is tested without a store or a network.
/// </summary>
public static class SlicePlacer
{
    public static DeviceView? Place(IEnumerable<DeviceView> devices, IEnumerable<BrokerRecord> brokers, ulong memoryBytes, uint computeShare, string? deviceModel)
    {
        var draining = brokers.Where(b => b.Draining).Select(b => b.BrokerId).ToHashSet(StringComparer.Ordinal);
        DeviceView? best = null;
        ulong bestLeft = ulong.MaxValue;
        foreach (var d in devices)
        {
            if (draining.Contains(d.BrokerId))
            {
                continue;
            }

            if (!string.IsNullOrEmpty(deviceModel) && !d.Device.Name.Contains(deviceModel, StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }

            var free = d.Device.MemoryTotalBytes - Math.Min(d.Device.MemoryTotalBytes, d.MemoryLeasedBytes);
            var shareFree = d.Device.ComputeCapacity - Math.Min(d.Device.ComputeCapacity, d.ComputeLeased);
            if (free < memoryBytes || shareFree < computeShare)
            {
                continue;
            }

            var left = free - memoryBytes;
            if (left < bestLeft)
            {
                best = d;
                bestLeft = left;
            }
        }

        return best;
    }
}
