using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Queue;

namespace GpuPool.Scheduler.Leases.Internal;

/// <summary>A placed request's lease records (a gang's members, or one), charged to the model and waiting to be committed.</summary>
internal sealed record Grant(PendingRequest Pending, IReadOnlyList<LeaseRecord> Records, TimeSpan Ttl);

/// <summary>
/// Leases to delete together (a gang's members, or one lease), with the tombstone reason where the pool ends them
/// (expired, lost, preempted; null: their holder released them), and the holders' release calls waiting on it.
/// </summary>
internal sealed class Removal(IReadOnlyList<string> leaseIds, string? reason)
{
    public IReadOnlyList<string> LeaseIds { get; } = leaseIds;

    public string? Reason { get; } = reason;

    public List<TaskCompletionSource<bool>> Waiters { get; } = [];

    /// <summary>Not committed before this (a failed removal the pool needs waits a tick before it is tried again).</summary>
    public DateTimeOffset NotBefore { get; set; }

    /// <summary>Tells the waiting release calls: done (true), or the error.</summary>
    public void Answer(GpuPoolException? error)
    {
        foreach (var waiter in Waiters)
        {
            if (error is null)
            {
                waiter.TrySetResult(true);
            }
            else
            {
                waiter.TrySetException(error);
            }
        }

        Waiters.Clear();
    }
}

/// <summary>A batch's grants and removals, committed together, and once committed each one's outcome: a grant's reply or error, a removal's error (null: done).</summary>
internal sealed class CommitBatch(List<Grant> grants, List<Removal> removals)
{
    public List<Grant> Grants { get; } = grants;

    public (AllocateReply? Reply, GpuPoolException? Error)[] Outcomes { get; } = new (AllocateReply?, GpuPoolException?)[grants.Count];

    public List<Removal> Removals { get; } = removals;

    public GpuPoolException?[] RemovalErrors { get; } = new GpuPoolException?[removals.Count];

    public void FailUnanswered(GpuPoolException error)
    {
        for (var i = 0; i < Outcomes.Length; i++)
        {
            if (Outcomes[i].Reply is null)
            {
                Outcomes[i] = (null, error);
            }
        }

        Array.Fill(RemovalErrors, error);
    }

    /// <summary>Tells every caller its outcome: the allocations their reply or error, the release calls theirs.</summary>
    public void Answer()
    {
        for (var i = 0; i < Grants.Count; i++)
        {
            var (reply, error) = Outcomes[i];
            if (reply is not null)
            {
                Grants[i].Pending.Reply.TrySetResult(reply);
            }
            else
            {
                Grants[i].Pending.Reply.TrySetException(error!);
            }
        }

        for (var i = 0; i < Removals.Count; i++)
        {
            Removals[i].Answer(RemovalErrors[i]);
        }
    }
}
