using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Placement;

namespace GpuPool.Scheduler.Queue;

/// <summary>What the leader does with one waiting request this round: <see cref="Place"/>, <see cref="Preempt"/>, <see cref="Wait"/> or <see cref="Refuse"/>.</summary>
internal abstract record QueueDecision
{
    private QueueDecision()
    {
    }

    /// <summary>There is room now: grant on <paramref name="Site"/>; <paramref name="Borrowed"/>: past the tenant's quota, on idle capacity, so preemptible.</summary>
    public sealed record Place(Site Site, bool Borrowed) : QueueDecision;

    /// <summary>
    /// No room, but evicting <paramref name="Victims"/> (their records as marked: deadline and reason) makes some on
    /// <paramref name="Site"/>: they are revoked at <paramref name="RevokeAt"/>, and the request waits until
    /// <paramref name="WaitUntil"/> at least, holding the site (<see cref="QueueDecider.NewRound"/>).
    /// </summary>
    public sealed record Preempt(IReadOnlyList<LeaseRecord> Victims, DateTimeOffset RevokeAt, DateTimeOffset WaitUntil, Site Site) : QueueDecision;

    /// <summary>
    /// Keep waiting. <paramref name="NoEvictionAt"/>: the model's room generation at which a search for an eviction
    /// found none, so the request does not search again until room may have come; null when no search was made, or
    /// its answer holds for this round only. <paramref name="SearchAgainAt"/>: when a lease that its class's minimum
    /// runtime kept out of that search becomes a candidate (null: none was kept out).
    /// </summary>
    public sealed record Wait(long? NoEvictionAt, DateTimeOffset? SearchAgainAt = null) : QueueDecision
    {
        public static readonly Wait WithoutSearch = new((long?)null);
    }

    /// <summary>Answer the caller with <paramref name="Error"/>.</summary>
    public sealed record Refuse(GpuPoolException Error) : QueueDecision;
}
