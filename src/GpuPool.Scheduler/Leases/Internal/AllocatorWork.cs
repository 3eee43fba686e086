using GpuPool.Coordination;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.Scheduler.Leases.Internal;

/// <summary>A piece of work for the leader's loop: callers' requests, the store's changes, ticks and settled commits.</summary>
internal abstract class AllocatorWork
{
    /// <summary>Answers its caller with <paramref name="error"/> (the loop failed on it, or stopped before it).</summary>
    public virtual void Fail(GpuPoolException error)
    {
    }
}

/// <summary>Time to re-decide the queue, revoke victims whose grace is over and end leases whose keepalives stopped.</summary>
internal sealed class Tick : AllocatorWork
{
    public static readonly Tick Instance = new();
}

/// <summary>A fresh listing of a watched prefix: the mirror replaces what it holds under it.</summary>
internal sealed class ResetWork(string prefix, IReadOnlyList<KvEntry> entries, long revision) : AllocatorWork
{
    public string Prefix { get; } = prefix;

    public IReadOnlyList<KvEntry> Entries { get; } = entries;

    public long Revision { get; } = revision;
}

/// <summary>One change under a watched prefix.</summary>
internal sealed class ChangeWork(string prefix, WatchEvent change) : AllocatorWork
{
    public string Prefix { get; } = prefix;

    public WatchEvent Event { get; } = change;
}

internal sealed class AllocateWork(AllocateRequest request, DateTimeOffset received) : AllocatorWork
{
    public AllocateRequest Request { get; } = request;

    public DateTimeOffset Received { get; } = received;

    public TaskCompletionSource<AllocateReply> Reply { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override void Fail(GpuPoolException error) => Reply.TrySetException(error);
}

internal sealed class RenewWork(string leaseId) : AllocatorWork
{
    public string LeaseId { get; } = leaseId;

    public TaskCompletionSource<LeaseRecord?> Reply { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override void Fail(GpuPoolException error) => Reply.TrySetException(error);
}

internal sealed class ReleaseWork(string leaseId) : AllocatorWork
{
    public string LeaseId { get; } = leaseId;

    public TaskCompletionSource<bool> Reply { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override void Fail(GpuPoolException error) => Reply.TrySetException(error);
}

/// <summary>An admin call waiting until the store's changes under <see cref="Prefix"/> up to <see cref="Revision"/> are applied.</summary>
internal sealed class SyncWork(string prefix, long revision) : AllocatorWork
{
    public string Prefix { get; } = prefix;

    public long Revision { get; } = revision;

    public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

internal sealed class SnapshotWork : AllocatorWork
{
    public TaskCompletionSource<ClusterView> Reply { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override void Fail(GpuPoolException error) => Reply.TrySetException(error);
}

/// <summary>A batch whose commit has finished, for the loop to settle.</summary>
internal sealed class CommittedWork(CommitBatch batch) : AllocatorWork
{
    public CommitBatch Batch { get; } = batch;

    /// <summary>Committed or not, its outcome stands (the store has the leases that did commit): its callers are told that.</summary>
    public override void Fail(GpuPoolException error) => Batch.Answer();
}

/// <summary>What a check of broker <paramref name="brokerId"/>'s endpoint found: it answered, or why not.</summary>
internal sealed class BrokerCheckedWork(string brokerId, string endpoint, string? failure) : AllocatorWork
{
    public string BrokerId { get; } = brokerId;

    public string Endpoint { get; } = endpoint;

    /// <summary>Null when the broker answered.</summary>
    public string? Failure { get; } = failure;
}
