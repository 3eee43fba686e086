namespace GpuPool.Protocol.V1;

/// <summary>
/// Where each record of cluster.proto lives in the coordination store: the one list of keys the scheduler and
/// the brokers both read and write.
/// </summary>
public static class StoreKeys
{
    /// <summary>
    /// brokers/{id}: BrokerRecord, written by the broker under its registration session; the broker's heartbeat
    /// renews the session every third of its TTL, and the record vanishes when no heartbeat comes for a TTL.
    /// </summary>
    public const string Brokers = "brokers/";

    /// <summary>
    /// leases/{id}: LeaseRecord, written by the leading scheduler and bound to no session: it lives until the leader
    /// deletes it (released, no keepalive for its ttl_seconds, preempted, or its broker gone). Brokers watch it.
    /// </summary>
    public const string Leases = "leases/";

    /// <summary>quotas/{tenant}: Quota.</summary>
    public const string Quotas = "quotas/";

    /// <summary>priorities/{name}: PriorityClass.</summary>
    public const string Priorities = "priorities/";

    /// <summary>draining/{broker id}: present while an admin has drained the broker.</summary>
    public const string Draining = "draining/";

    /// <summary>tombstones/{lease id}: LeaseTombstone, why a lease ended without its holder releasing it; under an unrenewed session, so it vanishes by itself.</summary>
    public const string Tombstones = "tombstones/";

    /// <summary>
    /// tenants/{tenant}/tokens/{token id}: TenantTokenRecord, one per tenant token an admin issued (never the token
    /// itself). The allow-list: a token is valid only while its record exists, so deleting the record revokes it.
    /// Every scheduler replica watches the prefix.
    /// </summary>
    public const string Tenants = "tenants/";

    /// <summary>The key of one tenant token's record.</summary>
    public static string TenantToken(string tenant, string tokenId) => $"{Tenants}{tenant}/tokens/{tokenId}";

    /// <summary>The prefix of one tenant's token records.</summary>
    public static string TenantTokens(string tenant) => $"{Tenants}{tenant}/tokens/";

    /// <summary>The pool's public signing key (PEM): written by the first scheduler replica, checked by the rest and by every broker.</summary>
    public const string SchedulerPublicKey = "scheduler/public-key";

    /// <summary>The scheduler's leader lock; its value is the leader's endpoint.</summary>
    public const string Leader = "scheduler/leader";

    /// <summary>
    /// Who holds the leader lock, under the lock's session: "{machine id} {process id}", so that a replica restarted on
    /// the leader's machine after it died (on another port) takes the lead at once rather than a lock TTL later.
    /// </summary>
    public const string LeaderOwner = "scheduler/leader-owner";
}
