using GpuPool.Scheduler.Placement;

namespace GpuPool.Scheduler.Queue;

/// <summary>
/// One pass of the leader over its queue, in <see cref="QueueDecider.Order(IReadOnlyCollection{PendingRequest}, DateTimeOffset)"/>'s
/// order: the reservations made so far. The first request of each class that finds no room (its class's head) holds
/// the site where it is closest to fitting, and a request whose victims are going holds the room they leave; a request
/// of the same or a lower class is neither placed nor evicts there, so small asks are placed around a large one
/// (backfill) instead of taking, one by one, the room it waits for. Made afresh each pass, so a head that is placed,
/// refused or overtaken by a higher class holds nothing the next time.
/// </summary>
internal sealed class QueueRound(bool reservations)
{
    private readonly List<(PendingRequest Owner, Site Site)> _reserved = [];
    private readonly HashSet<int> _heads = [];

    /// <summary>The sites held this pass, and for whom.</summary>
    public IReadOnlyList<(PendingRequest Owner, Site Site)> Reserved => _reserved;

    /// <summary>Whether no request of <paramref name="pending"/>'s class has found no room before it this pass.</summary>
    public bool NeedsHead(PendingRequest pending) => reservations && !_heads.Contains(pending.Class.Value);

    /// <summary>
    /// <paramref name="pending"/> found no room: when it is the first of its class to, it is its class's head and holds
    /// <paramref name="site"/> (null: no site could ever hold it).
    /// </summary>
    public void Head(PendingRequest pending, Site? site)
    {
        if (reservations && _heads.Add(pending.Class.Value) && site is not null)
        {
            Reserve(pending, site);
        }
    }

    /// <summary>Holds <paramref name="site"/> for <paramref name="owner"/>.</summary>
    public void Reserve(PendingRequest owner, Site site)
    {
        if (reservations && !_reserved.Any(r => ReferenceEquals(r.Owner, owner) && r.Site == site))
        {
            _reserved.Add((owner, site));
        }
    }

    /// <summary>
    /// The devices (broker id, index) <paramref name="pending"/> may neither be placed on nor evict on: those held for
    /// another request of its class or a higher one. Null when there are none.
    /// </summary>
    public Func<string, uint, bool>? ExclusionFor(PendingRequest pending)
    {
        List<Site>? sites = null;
        foreach (var (owner, site) in _reserved)
        {
            if (!ReferenceEquals(owner, pending) && owner.Class.Value >= pending.Class.Value)
            {
                (sites ??= []).Add(site);
            }
        }

        return sites is null ? null : (brokerId, index) => sites.Exists(s => s.BrokerId == brokerId && s.DeviceIndexes.Contains(index));
    }
}
