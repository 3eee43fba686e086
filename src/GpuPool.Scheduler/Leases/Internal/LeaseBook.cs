using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Placement;
using Microsoft.Extensions.Logging;

namespace GpuPool.Scheduler.Leases.Internal;

/// <summary>
/// The leader loop's book of leases: the pool model they are charged to, when each expires
/// (<see cref="LeaseLiveness"/>), the victims being preempted, and the leases being ended; and what holding,
/// renewing, releasing, losing, expiring and settling a lease does to each. One thread (the loop), no locks.
/// </summary>
internal sealed class LeaseBook(ILogger logger)
{
    private readonly LeaseLiveness _liveness = new();

    /// <summary>Victims being preempted: lease id → when the broker and the scheduler revoke it.</summary>
    private readonly Dictionary<string, DateTimeOffset> _evicting = new(StringComparer.Ordinal);

    /// <summary>Leases to end that wait for the next commit, and every lease being ended (waiting or committing), by id.</summary>
    private readonly List<Removal> _removals = [];
    private readonly Dictionary<string, Removal> _removing = new(StringComparer.Ordinal);

    public PoolModel Model { get; } = new();

    /// <summary>Whether the lease is being ended (its removal waits or is being committed).</summary>
    public bool IsEnding(string leaseId) => _removing.ContainsKey(leaseId);

    /// <summary>A lease the store holds, or a grant about to be committed: charged to the model, and followed for expiry (a new one with a full TTL from <paramref name="now"/>).</summary>
    public void Hold(LeaseRecord lease, DateTimeOffset now)
    {
        Model.UpsertLease(lease);
        _liveness.Track(lease, now);
    }

    /// <summary>A lease whose record is gone from the store: nothing of it is left in the book.</summary>
    public void Forget(string leaseId)
    {
        Model.RemoveLease(leaseId);
        _liveness.Untrack(leaseId);
        _evicting.Remove(leaseId);
    }

    /// <summary>A broker stopped heartbeating (or deregistered): its leases are lost, and their holders told on their next call.</summary>
    public void BrokerGone(string brokerId)
    {
        foreach (var lease in Model.RemoveBroker(brokerId))
        {
            Lose(lease, $"its broker {brokerId} stopped heartbeating");
        }
    }

    /// <summary>
    /// Ends a lease (its gang with it) that the pool takes away: its room is free at once, and its record is deleted
    /// with a tombstone saying why, which its holder reads on its next call.
    /// </summary>
    public void Lose(LeaseRecord lease, string reason)
    {
        var members = _liveness.MembersOf(lease.LeaseId);
        foreach (var id in members.Count == 0 ? [lease.LeaseId] : members)
        {
            if (_removing.ContainsKey(id))
            {
                continue;
            }

            Forget(id);
            Log.LeaseLost(logger, id, reason);
            Enqueue(new Removal([id], reason));
        }
    }

    /// <summary>A keepalive: the lease's current record (with any preemption deadline), or null when it has ended or is ending.</summary>
    public LeaseRecord? Renew(string leaseId, DateTimeOffset now)
    {
        var lease = Model.FindLease(leaseId);
        var renewed = lease is not null && !_removing.ContainsKey(leaseId)
            && _liveness.Renew(leaseId, now, TimeSpan.FromSeconds(Math.Max(1, lease.TtlSeconds)));
        return renewed ? lease : null;
    }

    /// <summary>The holder ends its lease (its gang with it): the room stays charged until the record is gone, then comes back. False to <paramref name="reply"/> when it had ended.</summary>
    public void Release(string leaseId, TaskCompletionSource<bool> reply)
    {
        if (_removing.TryGetValue(leaseId, out var ending))
        {
            ending.Waiters.Add(reply);
            return;
        }

        var members = _liveness.MembersOf(leaseId);
        if (members.Count == 0)
        {
            reply.TrySetResult(false);
            return;
        }

        var removal = new Removal(members, null);
        removal.Waiters.Add(reply);
        Enqueue(removal);
    }

    /// <summary>A victim marked for preemption: its marked record replaces the one in the model, and it is lost at <paramref name="revokeAt"/>.</summary>
    public void MarkVictim(LeaseRecord marked, DateTimeOffset revokeAt)
    {
        Model.UpsertLease(marked);
        _evicting[marked.LeaseId] = revokeAt;
    }

    /// <summary>Victims whose grace is over are lost; leases whose keepalives stopped are ended, their room charged until their records are gone.</summary>
    public void EndOverdue(DateTimeOffset now)
    {
        foreach (var (leaseId, deadline) in _evicting.ToArray())
        {
            if (deadline <= now)
            {
                _evicting.Remove(leaseId);
                if (Model.FindLease(leaseId) is { } victim)
                {
                    Lose(victim, victim.PreemptReason);
                }
            }
        }

        foreach (var members in _liveness.TakeExpired(now))
        {
            var live = members.Where(id => !_removing.ContainsKey(id)).ToArray();
            if (live.Length == 0)
            {
                continue;
            }

            var ttl = Model.FindLease(live[0])?.TtlSeconds ?? 0;
            var reason = $"it expired: no keepalive from its holder for its TTL of {ttl} s";
            foreach (var id in live)
            {
                Log.LeaseLost(logger, id, reason);
            }

            Enqueue(new Removal(live, reason));
        }
    }

    public bool HasRemovalsDue(DateTimeOffset now) => _removals.Any(r => r.NotBefore <= now);

    /// <summary>Takes the removals the next commit carries.</summary>
    public List<Removal> TakeRemovalsDue(DateTimeOffset now)
    {
        var due = _removals.Where(r => r.NotBefore <= now).ToList();
        _removals.RemoveAll(r => r.NotBefore <= now);
        return due;
    }

    /// <summary>
    /// A committed batch: the room of every failed grant given back; the room of every ended lease given back, and a
    /// removal the pool needs (expired, lost) that failed tried again at <paramref name="retryAt"/>.
    /// </summary>
    public void Settle(CommitBatch batch, DateTimeOffset retryAt)
    {
        for (var i = 0; i < batch.Grants.Count; i++)
        {
            var (grant, (reply, _)) = (batch.Grants[i], batch.Outcomes[i]);
            foreach (var record in grant.Records)
            {
                if (reply is not null)
                {
                    Log.LeaseGranted(logger, record.LeaseId, record.Tenant, record.BrokerId, record.DeviceIndex, record.MemoryBytes, record.ComputeShare);
                }
                else
                {
                    // The room it was charged goes back; a record that did get written shows up by the watch.
                    Forget(record.LeaseId);
                }
            }
        }

        for (var i = 0; i < batch.Removals.Count; i++)
        {
            var removal = batch.Removals[i];
            if (batch.RemovalErrors[i] is null)
            {
                foreach (var id in removal.LeaseIds)
                {
                    Forget(id);
                    _removing.Remove(id);
                    if (removal.Reason is null)
                    {
                        Log.LeaseReleased(logger, id);
                    }
                }
            }
            else if (removal.Reason is not null)
            {
                removal.NotBefore = retryAt;
                _removals.Add(removal);
            }
            else
            {
                foreach (var id in removal.LeaseIds)
                {
                    _removing.Remove(id);
                }
            }
        }
    }

    /// <summary>Tells the release calls of every removal still waiting for a commit <paramref name="error"/> (the loop stopped).</summary>
    public void FailWaitingRemovals(GpuPoolException error)
    {
        foreach (var removal in _removals)
        {
            removal.Answer(error);
        }

        _removals.Clear();
    }

    private void Enqueue(Removal removal)
    {
        _removals.Add(removal);
        foreach (var id in removal.LeaseIds)
        {
            _removing[id] = removal;
        }
    }
}
