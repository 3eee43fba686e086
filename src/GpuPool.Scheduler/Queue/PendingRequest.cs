using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Placement;

namespace GpuPool.Scheduler.Queue;

/// <summary>An allocation waiting in the leader's queue: what it asks for, until when it may wait, and its caller's reply.</summary>
internal sealed class PendingRequest(AllocateRequest request, DateTimeOffset received, TaskCompletionSource<AllocateReply> reply, PlacementAsk ask, PriorityClass cls, DateTimeOffset deadline, long sequence)
{
    public AllocateRequest Request { get; } = request;

    public DateTimeOffset Received { get; } = received;

    public TaskCompletionSource<AllocateReply> Reply { get; } = reply;

    public PlacementAsk Ask { get; } = ask;

    public PriorityClass Class { get; } = cls;

    /// <summary>When it is refused if it has found no room (pushed back while victims are preempted for it).</summary>
    public DateTimeOffset Deadline { get; set; } = deadline;

    /// <summary>Arrival order, for FIFO per tenant.</summary>
    public long Sequence { get; } = sequence;

    /// <summary>Victims have been chosen and told; the request waits for them to go.</summary>
    public bool Evicting { get; set; }

    /// <summary>The model's <see cref="PoolModel.RoomGeneration"/> when a search found no eviction (-1: none yet).</summary>
    public long NoEvictionAt { get; set; } = -1;

    /// <summary>When that search is made again though no room came: a lease its class's minimum runtime kept out comes of age (null: never).</summary>
    public DateTimeOffset? SearchAgainAt { get; set; }

    /// <summary>Where the victims chosen for it are going: the room it holds until it is placed.</summary>
    public Site? EvictionSite { get; set; }
}
