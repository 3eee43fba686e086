using GpuPool.Protocol.V1;

namespace GpuPool.Scheduler.Policy;

/// <summary>The quotas and priority classes in force, as the leader last read them from the store (its loop's alone).</summary>
internal sealed class PoolPolicy(bool openTenants)
{
    public Dictionary<string, Quota> Quotas { get; } = new(StringComparer.Ordinal);

    public Dictionary<string, PriorityClass> Classes { get; } = new(StringComparer.Ordinal);

    /// <summary>The tenant's quota; with open tenants, one without a quota record may take the whole pool.</summary>
    public Quota? QuotaOf(string tenant)
        => Quotas.GetValueOrDefault(tenant) ?? (openTenants ? Unlimited(tenant) : null);

    private static Quota Unlimited(string tenant) => new() { Tenant = tenant, MaxMilliGpus = uint.MaxValue, MaxMemoryBytes = ulong.MaxValue, MaxLeases = uint.MaxValue };
}
