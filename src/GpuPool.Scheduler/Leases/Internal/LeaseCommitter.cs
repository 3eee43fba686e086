using System.Security.Cryptography;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using GpuPool.Coordination;
using GpuPool.Coordination.Election;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Placement;
using GpuPool.Scheduler.Queue;
using Microsoft.Extensions.Logging;

namespace GpuPool.Scheduler.Leases.Internal;

/// <summary>
/// Turns the loop's decisions into store writes: makes a placed request's lease records (on the loop), then
/// commits a batch's grants and removals (off the loop), many per transaction, each transaction fenced by the
/// leader's term so a deposed leader writes nothing; tombstones say why the pool ended a lease. It fills in each
/// grant's reply (with signed tokens) or error, and touches nothing of the loop while it commits.
/// </summary>
internal sealed class LeaseCommitter(SchedulerOptions options, IClusterStore store, LeaderTerm? term, LeaseBook book, ILogger logger) : IDisposable
{
    internal const string LostLeadership = "this scheduler replica lost the leadership while writing to the store; retry";

    private readonly TimeProvider _time = options.TimeProvider;

    /// <summary>Guards <see cref="_tombstones"/>, which commits running at once share.</summary>
    private readonly SemaphoreSlim _tombstoneGate = new(1, 1);

    /// <summary>The unrenewed session tombstones are written under, and when it was made.</summary>
    private (string Id, DateTimeOffset Created)? _tombstones;

    /// <summary>On the loop: the records of a request placed on <paramref name="placement"/> (one per device of a gang, which shares a gang id).</summary>
    public Grant CreateGrant(PendingRequest pending, Site placement, bool borrowed, DateTimeOffset now)
    {
        var request = pending.Request;
        var model = book.Model;
        var broker = model.FindBroker(placement.BrokerId)!;
        var gangId = pending.Ask.IsGang ? "g-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6)) : "";
        var records = new List<LeaseRecord>(placement.DeviceIndexes.Count);
        foreach (var index in placement.DeviceIndexes)
        {
            var device = model.FindDevice(placement.BrokerId, index)!;
            records.Add(new LeaseRecord
            {
                LeaseId = NewLeaseId(records),
                Tenant = request.Tenant,
                BrokerId = broker.BrokerId,
                BrokerEndpoint = broker.Endpoint,
                DeviceIndex = index,
                MemoryBytes = pending.Ask.IsGang ? device.MemoryTotalBytes : request.MemoryBytes,
                ComputeShare = pending.Ask.IsGang ? device.ComputeCapacity : request.ComputeShare,
                ShareMode = request.ShareMode,
                PriorityClass = pending.Class.Name,
                PriorityValue = pending.Class.Value,
                Preemptible = pending.Class.Preemptible || borrowed,
                Borrowed = borrowed,
                Created = Timestamp.FromDateTimeOffset(now),
                TtlSeconds = request.TtlSeconds,
                BrokerFastPathTcp = broker.FastPathTcp,
                BrokerFastPathUnix = broker.FastPathUnix,
                BrokerHost = broker.Host,
                BrokerMachineId = broker.MachineId,
                GangId = gangId,
            });
        }

        return new Grant(pending, records, TimeSpan.FromSeconds(request.TtlSeconds));
    }

    /// <summary>
    /// Commits a batch: the records of its grants (each checked absent) and the deletions of the leases it ends
    /// (with a tombstone where the pool ended them), as many as fit in one fenced transaction
    /// (<see cref="TxnLimits.MaxOperations"/>), so a batch costs the store a few transactions whatever its size.
    /// A shared transaction that fails a check is retried item by item, so an id collision costs only its own
    /// grant. Never throws: every item ends with its outcome filled in.
    /// </summary>
    public async Task CommitAsync(CommitBatch batch, CancellationToken cancellationToken)
    {
        try
        {
            await CommitAllAsync(batch, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // CommitAllAsync answers every failure per item; this is a bug, and must still answer everyone.
            Log.AllocatorFailed(logger, ex);
            batch.FailUnanswered(new GpuPoolException(ErrorCode.Internal, "the scheduler failed while writing to the store (see its log): " + ex.Message));
        }
    }

    /// <summary>
    /// Writes a victim's preemption deadline; the broker tells its sessions, keepalives tell its holder. No removal
    /// of it is under way (the decider makes sure), and none starts before this write is done, as the loop waits
    /// for it: the record it puts can never outlive its deletion. A failed write is logged, not thrown.
    /// </summary>
    public Task MarkPreemptedAsync(LeaseRecord marked, CancellationToken cancellationToken)
        => RunQuietlyAsync(async () => await store.TransactAsync(Fence(), [TxnWrite.Put(StoreKeys.Leases + marked.LeaseId, marked.ToByteArray())], cancellationToken).ConfigureAwait(false));

    public void Dispose() => _tombstoneGate.Dispose();

    /// <summary>
    /// A lease id no lease this leader knows has (the store's absent-check catches one it does not know yet); after a
    /// few tries it gives up and lets the commit refuse the collision.
    /// </summary>
    private string NewLeaseId(List<LeaseRecord> siblings)
    {
        var id = options.NewLeaseId();
        for (var tries = 1; tries < 8 && (book.Model.FindLease(id) is not null || book.IsEnding(id) || siblings.Exists(r => r.LeaseId == id)); tries++)
        {
            id = options.NewLeaseId();
        }

        return id;
    }

    private async Task CommitAllAsync(CommitBatch batch, CancellationToken cancellationToken)
    {
        string? tombstones = null;
        if (batch.Removals.Any(r => r.Reason is not null))
        {
            try
            {
                tombstones = await TombstoneSessionAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                var error = CommitError(ex);
                for (var i = 0; i < batch.Removals.Count; i++)
                {
                    batch.RemovalErrors[i] = batch.Removals[i].Reason is null ? null : error;
                }
            }
        }

        // Items in order, cut into transactions of at most MaxOperations checks and writes; an item too large to
        // share goes alone.
        var items = Enumerable.Range(0, batch.Grants.Count).Select(i => new Item(batch, i, -1))
            .Concat(Enumerable.Range(0, batch.Removals.Count).Where(i => batch.RemovalErrors[i] is null).Select(i => new Item(batch, -1, i)));
        var chunks = new List<List<Item>>();
        var fence = Fence().Count;
        var operations = fence;
        foreach (var item in items)
        {
            if (chunks.Count == 0 || (chunks[^1].Count > 0 && operations + item.Operations > TxnLimits.MaxOperations))
            {
                chunks.Add([]);
                operations = fence;
            }

            chunks[^1].Add(item);
            operations += item.Operations;
        }

        var ended = _time.GetUtcNow();
        await Task.WhenAll(chunks.Select(chunk => CommitChunkAsync(chunk, tombstones, ended, cancellationToken))).ConfigureAwait(false);
    }

    /// <summary>The items of <paramref name="chunk"/> in one fenced transaction; one by one if it fails a check other than the fence.</summary>
    private async Task CommitChunkAsync(List<Item> chunk, string? tombstones, DateTimeOffset ended, CancellationToken cancellationToken)
    {
        try
        {
            var (checks, writes) = Transaction(chunk, tombstones, ended);
            var result = await store.TransactAsync(checks, writes, cancellationToken).ConfigureAwait(false);
            if (result.Succeeded)
            {
                foreach (var item in chunk)
                {
                    item.Succeed(this);
                }

                return;
            }

            if (term is not null && result.FailedChecks.Contains(term.Key))
            {
                Fail(new GpuPoolException(ErrorCode.Unavailable, LostLeadership));
                return;
            }

            if (chunk.Count == 1)
            {
                // Only a grant checks its keys: its lease id collided with an existing lease, and nothing was written.
                Fail(new GpuPoolException(ErrorCode.Unavailable, "a lease id collided with an existing lease; retry"));
                return;
            }
        }
        catch (Exception ex)
        {
            var error = CommitError(ex);
            Fail(error);

            // The transaction may have been applied (a store that stopped answering): a granted record nobody holds
            // would live until its TTL, so it is deleted now if the store lets us.
            var written = chunk.Where(i => i.IsGrant).SelectMany(i => i.Grant.Records).Select(r => TxnWrite.Delete(StoreKeys.Leases + r.LeaseId)).ToList();
            if (written.Count > 0)
            {
                await RunQuietlyAsync(() => store.TransactAsync(Fence(), written, CancellationToken.None).AsTask()).ConfigureAwait(false);
            }

            return;
        }

        // A lease id collided: nothing was written; each item on its own finds whose.
        await Task.WhenAll(chunk.Select(item => CommitChunkAsync([item], tombstones, ended, cancellationToken))).ConfigureAwait(false);

        void Fail(GpuPoolException error)
        {
            foreach (var item in chunk)
            {
                item.Fail(error);
            }
        }
    }

    /// <summary>
    /// The fence; for every granted record a check that its key is free and a put; for every ended lease a delete,
    /// and a tombstone (bound to the unrenewed tombstone session) saying why, where the pool ended it.
    /// </summary>
    private (List<TxnCheck> Checks, List<TxnWrite> Writes) Transaction(List<Item> items, string? tombstones, DateTimeOffset ended)
    {
        var checks = new List<TxnCheck>(Fence());
        var writes = new List<TxnWrite>();
        foreach (var item in items)
        {
            if (item.IsGrant)
            {
                foreach (var record in item.Grant.Records)
                {
                    checks.Add(TxnCheck.Absent(StoreKeys.Leases + record.LeaseId));
                    writes.Add(TxnWrite.Put(StoreKeys.Leases + record.LeaseId, record.ToByteArray()));
                }

                continue;
            }

            var removal = item.Removal;
            foreach (var id in removal.LeaseIds)
            {
                writes.Add(TxnWrite.Delete(StoreKeys.Leases + id));
                if (removal.Reason is not null)
                {
                    var tombstone = new LeaseTombstone { LeaseId = id, Reason = removal.Reason, Ended = Timestamp.FromDateTimeOffset(ended) };
                    writes.Add(TxnWrite.Put(StoreKeys.Tombstones + id, tombstone.ToByteArray(), tombstones));
                }
            }
        }

        return (checks, writes);
    }

    /// <summary>
    /// Tombstones are bound to a session that is never renewed, so they vanish on their own: the store never
    /// fills with them. A fresh session every sixth of <see cref="SchedulerOptions.TombstoneTtl"/> keeps each
    /// tombstone for between five sixths of it and all of it. Commits running at once share it.
    /// </summary>
    private async Task<string> TombstoneSessionAsync(CancellationToken cancellationToken)
    {
        await _tombstoneGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var now = _time.GetUtcNow();
            if (_tombstones is not { } current || now - current.Created > options.TombstoneTtl / 6)
            {
                var session = await store.CreateSessionAsync(options.TombstoneTtl, cancellationToken).ConfigureAwait(false);
                _tombstones = current = (session.Id, now);
            }

            return current.Id;
        }
        finally
        {
            _tombstoneGate.Release();
        }
    }

    private static GpuPoolException CommitError(Exception ex) => ex switch
    {
        GpuPoolException gp => gp,
        StoreUnavailableException => new GpuPoolException(ErrorCode.Unavailable, "the coordination store failed while the lease was written, so nothing was allocated (a record that may have reached it is removed, or ends at its TTL); retry in a moment. The store said: " + ex.Message),
        OperationCanceledException => Allocator.NotLeading(),
        _ => new GpuPoolException(ErrorCode.Internal, "allocation failed while writing the lease: " + ex.Message),
    };

    /// <summary>The caller's answer to a committed grant: the lease (each member of a gang) with a token signed now.</summary>
    private AllocateReply Reply(Grant grant)
    {
        var now = _time.GetUtcNow();
        var reply = new AllocateReply { Expires = Timestamp.FromDateTimeOffset(now + grant.Ttl) };
        foreach (var record in grant.Records)
        {
            var member = new GangMember { Lease = record, Token = LeaseManager.Sign(options, record, now) };
            if (reply.Lease is null)
            {
                reply.Lease = member.Lease;
                reply.Token = member.Token;
            }

            if (grant.Records.Count > 1)
            {
                reply.Gang.Add(member);
            }
        }

        return reply;
    }

    private IReadOnlyList<TxnCheck> Fence() => term is null ? [] : [term.Fence];

    private async Task RunQuietlyAsync(Func<Task> job)
    {
        try
        {
            await job().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is StoreUnavailableException or StoreSessionNotFoundException or OperationCanceledException or ObjectDisposedException)
        {
            Log.StoreWriteFailed(logger, ex.Message);
        }
        catch (Exception ex)
        {
            Log.AllocatorFailed(logger, ex);
        }
    }

    /// <summary>One grant or one removal of a batch being committed.</summary>
    private readonly record struct Item(CommitBatch Batch, int GrantIndex, int RemovalIndex)
    {
        public bool IsGrant => GrantIndex >= 0;

        public Grant Grant => Batch.Grants[GrantIndex];

        public Removal Removal => Batch.Removals[RemovalIndex];

        /// <summary>Checks and writes it takes in a transaction.</summary>
        public int Operations => IsGrant ? 2 * Grant.Records.Count : Removal.LeaseIds.Count * (Removal.Reason is null ? 1 : 2);

        public void Succeed(LeaseCommitter committer)
        {
            if (IsGrant)
            {
                Batch.Outcomes[GrantIndex] = (committer.Reply(Grant), null);
            }
            else
            {
                Batch.RemovalErrors[RemovalIndex] = null;
            }
        }

        public void Fail(GpuPoolException error)
        {
            if (IsGrant)
            {
                Batch.Outcomes[GrantIndex] = (null, error);
            }
            else
            {
                Batch.RemovalErrors[RemovalIndex] = error;
            }
        }
    }
}
