namespace GpuPool.Scheduler.Policy;

/// <summary>Where the scheduler keeps its state in the coordination store.</summary>
public static class StoreKeys
{
    /// <summary>brokers/{id}: BrokerRecord, bound to the broker's heartbeat session.</summary>
    public const string Brokers = "brokers/";

    /// <summary>leases/{id}: LeaseRecord, bound to the lease's session (its TTL).</summary>
    public const string Leases = "leases/";

    /// <summary>quotas/{tenant}: Quota.</summary>
    public const string Quotas = "quotas/";

    /// <summary>priorities/{name}: PriorityClass.</summary>
    public const string Priorities = "priorities/";

    /// <summary>draining/{broker id}: present while an admin has drained the broker.</summary>
    public const string Draining = "draining/";

    /// <summary>tombstones/{lease id}: why a lease ended without its holder releasing it.</summary>
    public const string Tombstones = "tombstones/";

    /// <summary>The leader lock; its value is the leader's endpoint.</summary>
    public const string Leader = "scheduler/leader";
}
