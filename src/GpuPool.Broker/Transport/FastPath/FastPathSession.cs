using System.Buffers;
using GpuPool.Broker.Leases;
using GpuPool.Broker.Sessions;
using GpuPool.Devices;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using GpuPool.Protocol.Transport;

namespace GpuPool.Broker.Transport.FastPath;

/// <summary>What became of a chunk of a striped copy to the device.</summary>
internal enum ChunkOutcome
{
    /// <summary>On the device, or staged and queued on its stream.</summary>
    Landed,

    /// <summary>Its copy has already completed or failed; the chunk is dropped.</summary>
    Dropped,

    /// <summary>Its stream is busy and the connection's staging budget is spent: stop reading until it drains.</summary>
    NeedBudget,

    /// <summary>Its copy has not been announced yet: the session's first connection is behind.</summary>
    NotYet,

    /// <summary>The chunk does not fit its copy (a protocol error on its connection).</summary>
    Invalid,
}

/// <summary>A chunk of a striped copy being received straight into device memory, at <see cref="Target"/>.</summary>
internal readonly record struct DirectChunk(FastPathSession.StripedUpload Upload, nint Target, int Length);

/// <summary>
/// One fast-path session as its connections share it: the connection that opened it (index 0), the data
/// connections that joined it (1, 2, …), and the striped copy to the device in progress, if any.
/// <para>
/// A striped copy to the device is announced on the first connection and its chunks arrive on the connections it
/// names, in any order. The first connection runs no later op until the copy has all its bytes (or has failed),
/// so the copy keeps its place in the stream's order: later ops, on any stream, are queued after every chunk.
/// Each chunk lands as it arrives — received from the socket straight into device memory when that is host memory
/// and the stream is idle, else from the connection's buffer once whole (staged and queued when the stream is busy) —
/// so chunks of one copy land in parallel. A copy whose connections have all moved on
/// (closed, or sent frames that come after it) without delivering every byte fails with a sticky error naming it.
/// </para>
/// </summary>
internal sealed class FastPathSession(ulong id, BrokerLease lease, SessionExecutor executor, FrameReplies first, int maxDataConnections, int maxChunkBytes, CancellationToken ended)
{
    /// <summary>Smallest chunk of a striped copy: smaller ones would cost more in frames than striping gains.</summary>
    public const int MinChunkBytes = 64 * 1024;

    private readonly object _gate = new();
    private readonly Lane?[] _lanes = InitialLanes(first);
    private readonly List<Task> _dataConnections = [];
    private int _nextIndex = 1;
    private StripedUpload? _upload;
    private ulong _processed;
    private int _waiting;
    private TaskCompletionSource _progress = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public ulong Id { get; } = id;

    public BrokerLease Lease { get; } = lease;

    public SessionExecutor Executor { get; } = executor;

    /// <summary>Cancelled when the session is over: its data connections close too.</summary>
    public CancellationToken Ended { get; } = ended;

    /// <summary>The copy to the device in progress, whose bytes are still arriving; null when none.</summary>
    public bool UploadInProgress => Volatile.Read(ref _upload) is not null;

    /// <summary>Completes when the copy in progress has all its bytes or has failed.</summary>
    public Task UploadDone => Volatile.Read(ref _upload)?.Done.Task ?? Task.CompletedTask;

    private sealed class Lane(int index, FrameReplies replies)
    {
        public int Index { get; } = index;

        public FrameReplies Replies { get; } = replies;

        public string Name => Index == 0 ? "connection 0 (the session's first)" : $"data connection {Index}";

        public string? ClosedBecause { get; set; }
    }

    private static Lane?[] InitialLanes(FrameReplies first)
    {
        var lanes = new Lane?[StripeFrames.MaxConnections];
        lanes[0] = new Lane(0, first);
        return lanes;
    }

    /// <summary>
    /// Adds a data connection; its index, or null with the reason when the session has no room for another.
    /// <paramref name="closed"/> completes once the connection has let go of everything (awaited when the session ends).
    /// </summary>
    public int? Join(FrameReplies replies, Task closed, out string? error)
    {
        lock (_gate)
        {
            if (Ended.IsCancellationRequested)
            {
                error = "the session has ended";
                return null;
            }

            if (_nextIndex > maxDataConnections)
            {
                error = $"session {Id:x16} already has the {maxDataConnections} data connection(s) this broker allows (FastPathMaxDataConnections); indexes are not reused";
                return null;
            }

            var index = _nextIndex++;
            _lanes[index] = new Lane(index, replies);
            _dataConnections.Add(closed);
            error = null;
            return index;
        }
    }

    /// <summary>A data connection has closed: a copy in progress that names it cannot count on it any more.</summary>
    public void LaneClosed(int index, string reason)
    {
        Lane? lane;
        lock (_gate)
        {
            lane = _lanes[index];
            if (lane is null || lane.ClosedBecause is not null)
            {
                return;
            }

            lane.ClosedBecause = reason;
        }

        MovedPast(index, ulong.MaxValue, $"{lane.Name} closed ({reason})");
    }

    /// <summary>Waits, at most <paramref name="timeout"/>, for the data connections to let go (after the session has ended).</summary>
    public async Task WaitDataConnectionsAsync(TimeSpan timeout)
    {
        Task[] tasks;
        lock (_gate)
        {
            tasks = [.. _dataConnections];
        }

        await Task.WhenAny(Task.WhenAll(tasks), Task.Delay(timeout)).ConfigureAwait(false);
    }

    /// <summary>
    /// The writers of the connections a copy names that are open now, and their mask. Null with the reason when it
    /// names none, or one that never joined; <paramref name="closed"/> says which named one has closed, if any.
    /// </summary>
    public (IDirectReplies Writer, string Name)[]? Lanes(uint connections, out uint open, out string? closed, out string? error)
    {
        error = null;
        closed = null;
        open = 0;
        if (connections == 0)
        {
            error = "it names no connection";
            return null;
        }

        var lanes = new List<(IDirectReplies, string)>(System.Numerics.BitOperations.PopCount(connections));
        lock (_gate)
        {
            for (var i = 0; i < StripeFrames.MaxConnections; i++)
            {
                if ((connections & (1u << i)) == 0)
                {
                    continue;
                }

                var lane = _lanes[i];
                if (lane is null)
                {
                    error = $"it names connection {i}, which has not joined the session";
                    return null;
                }

                if (lane.ClosedBecause is not null)
                {
                    closed ??= $"{lane.Name} had closed before it began ({lane.ClosedBecause})";
                    continue;
                }

                lanes.Add((lane.Replies, lane.Name));
                open |= 1u << i;
            }
        }

        return [.. lanes];
    }

    /// <summary>
    /// Runs a striped copy to the host (its op frame came on the first connection): refused, numbered, when its chunk
    /// size or connections are wrong; a named connection that has closed is left out, and the copy's last word says which carried it.
    /// </summary>
    public void RunStripedCopyToHost(in StripedCopy copy)
    {
        var problem = copy.ChunkBytes < MinChunkBytes || copy.ChunkBytes > maxChunkBytes
            ? $"its chunks of {copy.ChunkBytes} bytes are not between {MinChunkBytes} and the broker's message limit of {maxChunkBytes} bytes"
            : null;
        var open = 0u;
        var lanes = problem is null ? Lanes(copy.Connections, out open, out _, out problem) : null;
        if (lanes is null)
        {
            Executor.Refuse(copy.Seq, ErrorCode.InvalidArgument, $"striped copy of {copy.Bytes} bytes from the device at 0x{copy.Ptr:x} to the host: {problem}");
            return;
        }

        _ = Executor.Run(copy.Seq, (copy, lanes, open), static (executor, s) => executor.StripedCopyToHost(s.copy, s.lanes, s.open));
    }

    /// <summary>
    /// Announces a striped copy to the device (its op has been numbered): from now its chunks land. A copy that is
    /// malformed or names a connection that is not open fails at once, as a sticky error in its stream's order.
    /// </summary>
    public void BeginUpload(in StripedCopy copy)
    {
        var error = copy switch
        {
            { ChunkBytes: < MinChunkBytes } => $"its chunks of {copy.ChunkBytes} bytes are below the {MinChunkBytes}-byte minimum",
            _ when copy.ChunkBytes > maxChunkBytes => $"its chunks of {copy.ChunkBytes} bytes are over the broker's message limit of {maxChunkBytes} bytes",
            _ when copy.Bytes > Executor.MemoryLimit => $"a copy of {copy.Bytes} bytes is larger than the lease's memory ({Executor.MemoryLimit} bytes)",
            _ => null,
        };
        var code = DeviceErrorCode.InvalidArgument;
        if (error is null && copy.Bytes > 0)
        {
            // Chunks meant for a connection that has closed cannot come: the copy fails at once rather than wait.
            if (Lanes(copy.Connections, out _, out var closed, out var laneError) is null)
            {
                error = laneError;
            }
            else if (closed is not null)
            {
                error = closed;
                code = DeviceErrorCode.TransferFailed;
            }
        }

        if (error is not null)
        {
            Executor.FailCopyToDevice(copy.Seq, copy.Stream, code, $"striped copy of {copy.Bytes} bytes to the device at 0x{copy.Ptr:x}: {error}");
        }
        else if (copy.Bytes > 0)
        {
            BrokerMetrics.StripedCopies.Add(1, new KeyValuePair<string, object?>("direction", "to_device"));
            Volatile.Write(ref _upload, new StripedUpload(copy));
        }

        Processed(copy.Seq);
    }

    /// <summary>
    /// The first connection has run every op up to <paramref name="seq"/>: chunks of copies up to it may land (or be
    /// dropped). Called after every batch of ops, so it takes no lock and allocates nothing unless a data connection
    /// is waiting for it.
    /// </summary>
    public void Processed(ulong seq)
    {
        if (seq <= Volatile.Read(ref _processed))
        {
            return;
        }

        // Only the first connection's reader writes it. The fences pair with the waiter's: one of the two sees the other.
        Volatile.Write(ref _processed, seq);
        Interlocked.MemoryBarrier();
        if (Volatile.Read(ref _waiting) == 0)
        {
            return;
        }

        TaskCompletionSource wake;
        lock (_gate)
        {
            wake = _progress;
            _progress = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiting = 0;
        }

        wake.TrySetResult();
    }

    /// <summary>Completes once the first connection has run op <paramref name="seq"/>, for a data connection holding a chunk of it.</summary>
    public Task WaitProcessedAsync(ulong seq, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            Volatile.Write(ref _waiting, 1);
            Interlocked.MemoryBarrier();
            return seq <= Volatile.Read(ref _processed) ? Task.CompletedTask : _progress.Task.WaitAsync(cancellationToken);
        }
    }

    /// <summary>
    /// Takes a chunk frame that arrived on connection <paramref name="lane"/>. <paramref name="budget"/> is that
    /// connection's staging budget, used when the chunk's stream is busy.
    /// </summary>
    public ChunkOutcome OnChunk(int lane, in Frame frame, StagingBudget budget, out string? error)
    {
        error = null;
        var upload = Volatile.Read(ref _upload);
        if (upload is null || upload.Copy.Seq != frame.Seq)
        {
            // Progress first, then the copy: a copy is announced before the progress that says so, so a chunk whose op
            // has been run finds its copy, unless the copy is over.
            var processed = Volatile.Read(ref _processed);
            upload = Volatile.Read(ref _upload);
            if (upload is null || upload.Copy.Seq != frame.Seq)
            {
                return frame.Seq > processed ? ChunkOutcome.NotYet : ChunkOutcome.Dropped;
            }
        }

        var copy = upload.Copy;
        var offset = StripeFrames.ReadChunkOffset(frame);
        var length = (ulong)frame.Payload.Length;
        if ((copy.Connections & (1u << lane)) == 0)
        {
            error = $"a chunk of copy #{copy.Seq} came on connection {lane}, which the copy does not name";
            return ChunkOutcome.Invalid;
        }

        if (offset % copy.ChunkBytes != 0 || offset >= copy.Bytes || length != Math.Min(copy.ChunkBytes, copy.Bytes - offset))
        {
            error = $"a chunk of copy #{copy.Seq} at offset {offset} with {length} bytes does not fit its chunks of {copy.ChunkBytes} bytes in {copy.Bytes}";
            return ChunkOutcome.Invalid;
        }

        var index = offset / copy.ChunkBytes;
        if (!upload.TryClaim(index))
        {
            error = $"the chunk at offset {offset} of copy #{copy.Seq} arrived twice";
            return ChunkOutcome.Invalid;
        }

        var dst = copy.Ptr + offset;
        if (!Executor.TryLandNow(copy.Stream, dst, frame.Payload))
        {
            var charge = budget.ChargeFor((long)length);
            if (!budget.TryReserve(charge))
            {
                upload.Unclaim(index);
                return ChunkOutcome.NeedBudget;
            }

            budget.Stage(frame.Payload, charge, (Executor, copy.Seq, copy.Stream, dst), static (s, at, bytes, owner) => s.Executor.EnqueueCopyToDevice(s.Seq, s.Stream, s.dst + (ulong)at, bytes, owner));
        }

        if (upload.Arrived((long)length))
        {
            Finish(upload, failure: null);
        }

        return ChunkOutcome.Landed;
    }

    /// <summary>
    /// Begins receiving a chunk of the copy in progress (the frame's header and fixed fields have come, its payload
    /// of <paramref name="length"/> bytes is arriving) straight into device memory: when the chunk is one the copy
    /// expects on this connection and its stream is idle, the host address to receive it at. False when it must
    /// arrive whole and take <see cref="OnChunk"/>'s way, which also reports whatever is wrong with it.
    /// </summary>
    public bool TryBeginDirectChunk(int lane, ulong seq, ulong offset, int length, out DirectChunk chunk)
    {
        chunk = default;
        var upload = Volatile.Read(ref _upload);
        if (upload is null || upload.Copy.Seq != seq)
        {
            return false;
        }

        var copy = upload.Copy;
        if ((copy.Connections & (1u << lane)) == 0 || offset % copy.ChunkBytes != 0 || offset >= copy.Bytes || (ulong)length != Math.Min(copy.ChunkBytes, copy.Bytes - offset))
        {
            return false;
        }

        var index = offset / copy.ChunkBytes;
        if (!upload.TryClaim(index))
        {
            return false;
        }

        var target = Executor.TryBeginLand(copy.Stream, copy.Ptr + offset, length);
        if (target == 0)
        {
            upload.Unclaim(index);
            return false;
        }

        chunk = new DirectChunk(upload, target, length);
        return true;
    }

    /// <summary>
    /// Ends a chunk begun by <see cref="TryBeginDirectChunk"/>. A chunk cut short (<paramref name="whole"/> false: its
    /// connection failed) stays claimed and uncounted, so its copy fails once its connections have moved on.
    /// </summary>
    public void EndDirectChunk(in DirectChunk chunk, bool whole)
    {
        Executor.EndLand(whole ? chunk.Length : 0);
        if (whole && chunk.Upload.Arrived(chunk.Length))
        {
            Finish(chunk.Upload, failure: null);
        }
    }

    /// <summary>
    /// Connection <paramref name="lane"/> sent frame <paramref name="next"/>, which comes after the copy in progress,
    /// or closed (<see cref="ulong.MaxValue"/>): it will bring no more of a copy numbered below it. Once every
    /// connection a copy names has, a copy still missing bytes fails.
    /// <para>
    /// A copy announced since the frame was read — the first connection may announce the very copy that frame is a
    /// chunk of, between the data connection finding it "not yet" and saying so here — is not one it moved past.
    /// </para>
    /// </summary>
    public void MovedPast(int lane, ulong next, string? reason = null)
    {
        var upload = Volatile.Read(ref _upload);
        if (upload is null || upload.Copy.Seq >= next || (upload.Copy.Connections & (1u << lane)) == 0)
        {
            return;
        }

        if (upload.MovedPast(lane, reason))
        {
            Finish(upload, upload.Why());
        }
    }

    /// <summary>The session is over: nothing more lands, and whoever waits on the copy in progress lets go.</summary>
    public void End()
    {
        if (Volatile.Read(ref _upload) is { } upload && upload.TryEnd(StripedUpload.Failed))
        {
            Interlocked.CompareExchange(ref _upload, null, upload);
            upload.Done.TrySetResult();
        }
    }

    private void Finish(StripedUpload upload, string? failure)
    {
        if (!upload.TryEnd(failure is null ? StripedUpload.Complete : StripedUpload.Failed))
        {
            return;
        }

        Interlocked.CompareExchange(ref _upload, null, upload);
        if (failure is not null)
        {
            var copy = upload.Copy;
            Executor.FailCopyToDevice(copy.Seq, copy.Stream, DeviceErrorCode.TransferFailed,
                $"striped copy of {copy.Bytes} bytes to the device at 0x{copy.Ptr:x} did not complete: {failure}; {upload.ArrivedBytes} of {copy.Bytes} bytes arrived and landed, the rest did not");
        }

        upload.Done.TrySetResult();
    }

    /// <summary>A striped copy to the device whose chunks are arriving: which have, and which connections have moved on.</summary>
    internal sealed class StripedUpload(StripedCopy copy)
    {
        public const int Open = 0, Complete = 1, Failed = 2;

        private readonly ulong[] _claimed = new ulong[(copy.ChunkCount + 63) / 64];
        private long _arrived;
        private int _state;
        private uint _past;
        private string? _reason;

        public StripedCopy Copy { get; } = copy;

        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public long ArrivedBytes => Interlocked.Read(ref _arrived);

        /// <summary>Marks chunk <paramref name="index"/> as taken; false when it already was.</summary>
        public bool TryClaim(ulong index)
        {
            var bit = 1UL << (int)(index % 64);
            return (Interlocked.Or(ref _claimed[index / 64], bit) & bit) == 0;
        }

        public void Unclaim(ulong index) => Interlocked.And(ref _claimed[index / 64], ~(1UL << (int)(index % 64)));

        /// <summary>Counts bytes that landed; true when the copy is whole.</summary>
        public bool Arrived(long bytes) => Interlocked.Add(ref _arrived, bytes) == (long)Copy.Bytes;

        /// <summary>True when this makes every named connection past the copy while bytes are missing.</summary>
        public bool MovedPast(int lane, string? reason)
        {
            if (reason is not null)
            {
                Interlocked.CompareExchange(ref _reason, reason, null);
            }

            var bit = 1u << lane;
            var past = Interlocked.Or(ref _past, bit) | bit;
            return (past & Copy.Connections) == Copy.Connections && ArrivedBytes < (long)Copy.Bytes;
        }

        public string Why() => Volatile.Read(ref _reason) ?? "the connections it names went on to other frames before all its chunks had come";

        public bool TryEnd(int state) => Interlocked.CompareExchange(ref _state, state, Open) == Open;
    }
}
