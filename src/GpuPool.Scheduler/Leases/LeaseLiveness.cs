using GpuPool.Protocol.V1;

namespace GpuPool.Scheduler.Leases;

/// <summary>
/// When each lease expires unless its holder renews it, kept by the leader's allocation loop (one thread, no
/// locks). A lease lives by its keepalives, not by a store session: renewing one costs no store write, and
/// granting and ending one costs a share of a batch's transaction instead of a session grant and revoke each.
/// A gang's members live and end as one. A replica that becomes leader starts every lease it finds with a
/// full TTL, so a failover never ends a lease whose holder is still there.
/// </summary>
internal sealed class LeaseLiveness
{
    private readonly Dictionary<string, Unit> _units = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Unit> _byLease = new(StringComparer.Ordinal);

    /// <summary>Every unit once, by the deadline it had when queued; a renewed unit is queued again when its old entry comes up.</summary>
    private readonly PriorityQueue<Unit, DateTimeOffset> _queue = new();

    public int Count => _byLease.Count;

    /// <summary>The key a lease lives under: its gang's id, or its own.</summary>
    public static string UnitOf(LeaseRecord lease) => string.IsNullOrEmpty(lease.GangId) ? lease.LeaseId : lease.GangId;

    /// <summary>Starts following a lease (a no-op when it is followed already); a new unit gets a full TTL from <paramref name="now"/>.</summary>
    public void Track(LeaseRecord lease, DateTimeOffset now)
    {
        if (_byLease.ContainsKey(lease.LeaseId))
        {
            return;
        }

        var key = UnitOf(lease);
        if (!_units.TryGetValue(key, out var unit))
        {
            unit = new Unit(key, now + TimeSpan.FromSeconds(Math.Max(1, lease.TtlSeconds)));
            _units.Add(key, unit);
            _queue.Enqueue(unit, unit.Deadline);
        }

        unit.LeaseIds.Add(lease.LeaseId);
        _byLease[lease.LeaseId] = unit;
    }

    /// <summary>Stops following one lease; its unit goes when its last member does.</summary>
    public void Untrack(string leaseId)
    {
        if (!_byLease.Remove(leaseId, out var unit))
        {
            return;
        }

        unit.LeaseIds.Remove(leaseId);
        if (unit.LeaseIds.Count == 0)
        {
            _units.Remove(unit.Key);
            unit.Gone = true;
        }
    }

    /// <summary>Pushes the deadline of the lease's unit to <paramref name="now"/> + <paramref name="ttl"/>; false when the lease is not followed.</summary>
    public bool Renew(string leaseId, DateTimeOffset now, TimeSpan ttl)
    {
        if (!_byLease.TryGetValue(leaseId, out var unit))
        {
            return false;
        }

        var deadline = now + ttl;
        if (deadline > unit.Deadline)
        {
            unit.Deadline = deadline;
        }

        return true;
    }

    /// <summary>The ids of every lease that lives and ends with <paramref name="leaseId"/> (itself included); empty when it is not followed.</summary>
    public IReadOnlyList<string> MembersOf(string leaseId)
        => _byLease.TryGetValue(leaseId, out var unit) ? [.. unit.LeaseIds] : [];

    /// <summary>Takes out every unit whose deadline has passed and returns the ids of their leases, a list per unit.</summary>
    public List<IReadOnlyList<string>> TakeExpired(DateTimeOffset now)
    {
        var expired = new List<IReadOnlyList<string>>();
        while (_queue.TryPeek(out var unit, out var queuedAt) && queuedAt <= now)
        {
            _queue.Dequeue();
            if (unit.Gone)
            {
                continue;
            }

            if (unit.Deadline > now)
            {
                // Renewed since it was queued: it comes up again at its new deadline.
                _queue.Enqueue(unit, unit.Deadline);
                continue;
            }

            string[] members = [.. unit.LeaseIds];
            foreach (var id in members)
            {
                Untrack(id);
            }

            expired.Add(members);
        }

        return expired;
    }

    private sealed class Unit(string key, DateTimeOffset deadline)
    {
        public string Key { get; } = key;

        public DateTimeOffset Deadline { get; set; } = deadline;

        public List<string> LeaseIds { get; } = [];

        public bool Gone { get; set; }
    }
}
