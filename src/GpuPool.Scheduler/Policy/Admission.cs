using GpuPool.Protocol;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Placement;

namespace GpuPool.Scheduler.Policy;

public enum AdmissionVerdict
{
    /// <summary>Within the quota.</summary>
    Admit,

    /// <summary>Past the quota, but the tenant may borrow idle capacity: the lease is preemptible.</summary>
    Borrow,

    /// <summary>Past the quota now; it may fit once the tenant's own leases end (or an admin raises the quota).</summary>
    Wait,

    /// <summary>The quota can never admit this request (and the tenant may not borrow).</summary>
    Refuse,
}

public readonly record struct AdmissionResult(AdmissionVerdict Verdict, string Reason);

/// <summary>
/// Admission against a tenant's quota: pure, so quotas are tested without a store. A request counts
/// its compute share (1000 per whole device), its memory and one lease per device.
/// </summary>
public static class Admission
{
    public static AdmissionResult Check(Quota quota, TenantUsage usage, PlacementAsk ask, ulong wholeDeviceMemory, string priorityClass)
    {
        ArgumentNullException.ThrowIfNull(quota);
        ArgumentNullException.ThrowIfNull(usage);
        if (quota.AllowedPriorityClasses.Count > 0 && !quota.AllowedPriorityClasses.Contains(priorityClass))
        {
            return new(AdmissionVerdict.Refuse, $"tenant '{quota.Tenant}' may not use priority class '{priorityClass}' (allowed: {string.Join(", ", quota.AllowedPriorityClasses)})");
        }

        var (milli, memory, leases) = Cost(ask, wholeDeviceMemory);
        if ((milli > quota.MaxMilliGpus || memory > quota.MaxMemoryBytes || leases > quota.MaxLeases) && !quota.AllowBorrowing)
        {
            return new(AdmissionVerdict.Refuse, $"the request ({Describe(milli, memory, leases)}) is larger than tenant '{quota.Tenant}''s whole quota ({Describe(quota.MaxMilliGpus, quota.MaxMemoryBytes, quota.MaxLeases)})");
        }

        if (usage.MilliGpus + milli <= quota.MaxMilliGpus && usage.MemoryBytes + memory <= quota.MaxMemoryBytes && (ulong)usage.Leases + leases <= quota.MaxLeases)
        {
            return new(AdmissionVerdict.Admit, "");
        }

        var reason = $"tenant '{quota.Tenant}' holds {Describe(usage.MilliGpus, usage.MemoryBytes, (ulong)usage.Leases)} of its quota of {Describe(quota.MaxMilliGpus, quota.MaxMemoryBytes, quota.MaxLeases)}; this request needs {Describe(milli, memory, leases)} more";
        return new(quota.AllowBorrowing ? AdmissionVerdict.Borrow : AdmissionVerdict.Wait, reason);
    }

    /// <summary>The quota units a request takes: milli-GPUs, bytes and leases.</summary>
    public static (ulong MilliGpus, ulong MemoryBytes, ulong Leases) Cost(PlacementAsk ask, ulong wholeDeviceMemory)
        => ask.IsGang ? (1000UL * ask.WholeDevices, wholeDeviceMemory * ask.WholeDevices, ask.WholeDevices) : (ask.ComputeShare, ask.MemoryBytes, 1);

    private static string Describe(ulong milli, ulong memory, ulong leases)
        => $"{milli} milli-GPU, {Units.FormatBytes(memory)}, {leases} lease{(leases == 1 ? "" : "s")}";
}
