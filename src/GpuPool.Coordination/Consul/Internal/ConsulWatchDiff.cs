namespace GpuPool.Coordination.Consul.Internal;

/// <summary>
/// The changes between two listings of a prefix, as watch events in index order. Consul keeps no history of
/// changes, only the present state with each key's CreateIndex and ModifyIndex, so a watch compares
/// successive listings: a key that is new or has a new ModifyIndex is a put at that index; a key that is gone
/// is a delete. Several changes to one key between two listings show as one put of its latest value, and a key
/// created and deleted between them does not show at all.
/// </summary>
internal static class ConsulWatchDiff
{
    /// <param name="before">The previous listing, by key.</param>
    /// <param name="after">The new listing.</param>
    /// <param name="beforeIndex">The index the previous listing was read at.</param>
    /// <param name="afterIndex">The index the new listing was read at.</param>
    /// <remarks>
    /// Consul does not say at which index a key was deleted. The delete happened after the previous listing
    /// (so above <paramref name="beforeIndex"/>) and no later than the new one; a listing's index is the highest
    /// index of the prefix, deletes included, so it is exactly the delete's when the delete was the prefix's last
    /// change. Deletes get <c>max(afterIndex, beforeIndex + 1)</c>: never below a put of the same listing, and
    /// still increasing when Consul's index went backwards.
    /// </remarks>
    public static List<WatchEvent> Diff(IReadOnlyDictionary<string, KvEntry> before, IReadOnlyList<KvEntry> after, long beforeIndex, long afterIndex)
    {
        var events = new List<WatchEvent>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in after)
        {
            seen.Add(entry.Key);
            if (!before.TryGetValue(entry.Key, out var old) || old.ModRevision != entry.ModRevision || old.CreateRevision != entry.CreateRevision)
            {
                events.Add(new WatchEvent(WatchEventKind.Put, entry, entry.ModRevision));
            }
        }

        var deleteRevision = Math.Max(afterIndex, beforeIndex + 1);
        foreach (var old in before.Values)
        {
            if (!seen.Contains(old.Key))
            {
                events.Add(new WatchEvent(WatchEventKind.Delete, old with { ModRevision = deleteRevision }, deleteRevision));
            }
        }

        events.Sort(static (a, b) =>
        {
            var byRevision = a.Revision.CompareTo(b.Revision);
            if (byRevision != 0)
            {
                return byRevision;
            }

            var byKind = a.Kind.CompareTo(b.Kind);
            return byKind != 0 ? byKind : string.CompareOrdinal(a.Entry.Key, b.Entry.Key);
        });
        return events;
    }
}
