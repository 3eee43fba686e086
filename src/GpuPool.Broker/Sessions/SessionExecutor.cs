using System.Runtime.CompilerServices;
using GpuPool.Broker.Leases;
using GpuPool.Devices;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.Broker.Sessions;

/// <summary>
/// Runs one device session: reads ops in order, runs host-side ops (alloc, free, modules, handles) at
/// once, hands device work to the lease's context, and answers synchronizing ops once the work they
/// wait for is done — with the sticky error of an earlier op when there is one. Replies go through one
/// writer, because device-to-host copies complete on device threads.
/// </summary>
internal sealed class SessionExecutor
{
    private readonly BrokerLease _lease;
    private readonly BrokerOptions _options;
    private readonly IDeviceContext _context;
    private readonly ISessionReplies _replies;
    private readonly string _transport;
    private readonly ulong _fastPathSession;
    private readonly int _maxDataConnections;
    private ulong _lastSeq;

    /// <param name="fastPathSession">The fast-path session's id, which its data connections name to join (0: none).</param>
    /// <param name="maxDataConnections">How many data connections may join it, told to the client.</param>
    public SessionExecutor(BrokerLease lease, BrokerOptions options, ISessionReplies replies, string transport, ulong fastPathSession = 0, int maxDataConnections = 0)
    {
        _lease = lease;
        _options = options;
        _context = lease.Context;
        _replies = replies;
        _transport = transport;
        _fastPathSession = fastPathSession;
        _maxDataConnections = maxDataConnections;
    }

    /// <summary>The highest sequence number run so far.</summary>
    public ulong LastSeq => _lastSeq;

    public ulong MemoryLimit => _context.MemoryLimit;

    /// <summary>Answers the open op with the session's description; later ops must carry greater sequence numbers.</summary>
    public void Start(ulong openSeq)
    {
        _lastSeq = openSeq;
        Reply(new OpReply { Seq = openSeq, Session = DescribeSession() });
        _lease.AttachNotices(_replies);
    }

    /// <summary>Ends the session: drains the replies, lets device work finish and forgets an unreported error.</summary>
    public async Task FinishAsync()
    {
        _lease.DetachNotices(_replies);
        _replies.Complete();
        await _replies.Completion.ConfigureAwait(false);
        await ForgetUnreportedErrorAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Lets the session's device work finish and drops a failure it never synchronized on: sequence numbers
    /// are per session, so the error would name an op the next session on the lease never sent.
    /// </summary>
    private async Task ForgetUnreportedErrorAsync()
    {
        try
        {
            await _context.SynchronizeAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (DeviceException)
        {
            // The context has closed with its lease; nothing is left to report to anyone.
        }

        _context.TakeError();
    }

    private SessionInfo DescribeSession()
    {
        var device = _lease.Device;
        var info = new SessionInfo
        {
            LeaseId = _lease.Claims.LeaseId,
            DeviceName = device.Name,
            Backend = device.Backend,
            DeviceIndex = (uint)device.Index,
            MemoryLimitBytes = _context.MemoryLimit,
            ComputeShare = (uint)_context.ComputeShare,
            MultiprocessorCount = (uint)device.MultiprocessorCount,
            MaxMessageBytes = (uint)_options.MaxMessageBytes,
            Uuid = device.Uuid,
            Transport = _transport,
            FastPathSession = _fastPathSession,
            MaxDataConnections = (uint)_maxDataConnections,
        };
        foreach (var (id, value) in device.Attributes)
        {
            info.Attributes[id] = value;
        }

        return info;
    }

    /// <summary>
    /// Puts a copy's bytes on the device straight from the connection's buffer when its stream is idle;
    /// false when the op must take the usual way (staged and queued), which also reports any error.
    /// </summary>
    public bool TryCopyToDeviceNow(ulong seq, ulong ptr, ulong stream, in System.Buffers.ReadOnlySequence<byte> payload)
    {
        if (seq <= _lastSeq || !_context.TryCopyToDeviceNow(stream, ptr, payload))
        {
            return false;
        }

        _lastSeq = seq;
        BrokerMetrics.Ops.Add(1);
        BrokerMetrics.BytesToDevice.Add(payload.Length);
        return true;
    }

    /// <summary>Whether <paramref name="seq"/> may be the next op's (greater than the previous one).</summary>
    public bool SeqIsNew(ulong seq) => seq > _lastSeq;

    /// <summary>
    /// Begins landing a chunk of a copy already numbered (a striped one) whose bytes the connection receives straight
    /// into device memory; 0 when it must arrive whole and land or be staged as usual. Safe from several connections at once.
    /// </summary>
    public nint TryBeginLand(ulong stream, ulong dst, int length) => _context.TryBeginDirectWrite(stream, dst, length);

    /// <summary>Ends a direct write begun by <see cref="TryBeginLand"/>; <paramref name="landed"/> bytes came.</summary>
    public void EndLand(long landed)
    {
        _context.EndDirectWrite();
        BrokerMetrics.BytesToDevice.Add(landed);
    }

    /// <summary>Numbers an op and answers it with an error without running it (a malformed striped copy to the host).</summary>
    public void Refuse(ulong seq, ErrorCode code, string message)
    {
        if (TryTakeSeq(seq))
        {
            Reply(new OpReply { Seq = seq, Error = new Error { Code = code, Message = message } });
        }
    }

    /// <summary>
    /// Numbers an op that the connection runs itself (a staged or striped copy): false, with the error replied,
    /// when its sequence number is not greater than the previous one.
    /// </summary>
    public bool TryTakeSeq(ulong seq)
    {
        if (seq <= _lastSeq)
        {
            Reply(new OpReply { Seq = seq, Error = new Error { Code = ErrorCode.InvalidArgument, Message = $"sequence number {seq} is not greater than the previous one ({_lastSeq}); the op was not run" } });
            return false;
        }

        _lastSeq = seq;
        BrokerMetrics.Ops.Add(1);
        return true;
    }

    /// <summary>
    /// Lands a chunk of a copy already numbered (a striped one) straight from the connection's buffer when its
    /// stream is idle; false when it must be staged and queued instead. Safe from several connections at once.
    /// </summary>
    public bool TryLandNow(ulong stream, ulong dst, in System.Buffers.ReadOnlySequence<byte> payload)
    {
        if (!_context.TryCopyToDeviceNow(stream, dst, payload))
        {
            return false;
        }

        BrokerMetrics.BytesToDevice.Add(payload.Length);
        return true;
    }

    /// <summary>Queues a staged piece of copy #<paramref name="seq"/> to the device in its stream's order; <paramref name="owner"/> is disposed once the device has the bytes.</summary>
    public void EnqueueCopyToDevice(ulong seq, ulong stream, ulong dst, ReadOnlyMemory<byte> bytes, IDisposable owner)
    {
        BrokerMetrics.BytesToDevice.Add(bytes.Length);
        _context.EnqueueCopyToDevice(stream, dst, bytes, new OpTag(seq, "memcpy_htod"), owner);
    }

    /// <summary>Fails copy #<paramref name="seq"/> to the device in its stream's order: the error is sticky, as if the copy had run and failed.</summary>
    public void FailCopyToDevice(ulong seq, ulong stream, DeviceErrorCode code, string message)
        => _context.EnqueueFailure(stream, new OpTag(seq, "memcpy_htod"), new DeviceException(code, message));

    /// <summary>
    /// Runs a copy to the host whose chunks go out on <paramref name="lanes"/> (the connections of a striped copy):
    /// chunk i on lane i mod n, each sent straight from device memory while the copy holds its stream.
    /// </summary>
    /// <param name="carriedBy">The connections <paramref name="lanes"/> are (bit i: index i), told to the client in a
    /// Reply once every chunk has been sent: a copy's chunks may still be on their way on the others then.</param>
    public void ExecuteStripedCopyToHost(in Protocol.Transport.StripedCopy copy, (IDirectReplies Writer, string Name)[] lanes, uint carriedBy)
    {
        if (!TryTakeSeq(copy.Seq))
        {
            return;
        }

        if (copy.Bytes > _context.MemoryLimit)
        {
            Reply(new OpReply { Seq = copy.Seq, Error = OpErrors.Own(new DeviceException(DeviceErrorCode.InvalidArgument, $"a copy of {copy.Bytes} bytes is larger than the lease's memory ({_context.MemoryLimit} bytes)")) });
            return;
        }

        BrokerMetrics.BytesToHost.Add((long)copy.Bytes);
        BrokerMetrics.StripedCopies.Add(1, new KeyValuePair<string, object?>("direction", "to_host"));
        _context.EnqueueCopyToHost(copy.Stream, copy.Ptr, copy.Bytes, new CopyReplySink(this, copy.Seq, copy.Ptr, copy.Bytes, (int)copy.ChunkBytes, lanes, carriedBy), new OpTag(copy.Seq, "memcpy_dtoh"));
    }

    /// <summary>
    /// Runs one op. <paramref name="payloadOwner"/> owns the memory of a copy's payload (a staging buffer of
    /// the fast path); it is disposed once the device no longer needs the bytes.
    /// </summary>
    public async Task ExecuteAsync(OpRequest request, IDisposable? payloadOwner, CancellationToken cancellationToken)
    {
        try
        {
            await ExecuteCoreAsync(request, payloadOwner, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            if (request.OpCase != OpRequest.OpOneofCase.MemcpyHtod)
            {
                payloadOwner?.Dispose();
            }
        }
    }

    private async Task ExecuteCoreAsync(OpRequest request, IDisposable? payloadOwner, CancellationToken cancellationToken)
    {
        var seq = request.Seq;
        if (seq <= _lastSeq)
        {
            if (request.OpCase == OpRequest.OpOneofCase.MemcpyHtod)
            {
                payloadOwner?.Dispose();
            }

            Reply(new OpReply { Seq = seq, Error = new Error { Code = ErrorCode.InvalidArgument, Message = $"sequence number {seq} is not greater than the previous one ({_lastSeq}); the op was not run" } });
            return;
        }

        _lastSeq = seq;
        BrokerMetrics.Ops.Add(1);
        try
        {
            switch (request.OpCase)
            {
                case OpRequest.OpOneofCase.MemAlloc:
                    Reply(new OpReply { Seq = seq, DevicePtr = _context.Allocate(request.MemAlloc.Bytes) });
                    break;
                case OpRequest.OpOneofCase.MemFree:
                    await _context.FreeAsync(request.MemFree.Ptr).ConfigureAwait(false);
                    Done(seq);
                    break;
                case OpRequest.OpOneofCase.MemcpyHtod:
                    var htod = request.MemcpyHtod;
                    BrokerMetrics.BytesToDevice.Add(htod.Data.Length);
                    _context.EnqueueCopyToDevice(htod.Stream, htod.Ptr, htod.Data.Memory, new OpTag(seq, "memcpy_htod"), payloadOwner);
                    break;
                case OpRequest.OpOneofCase.MemcpyDtoh:
                    var dtoh = request.MemcpyDtoh;
                    if (dtoh.Bytes > _context.MemoryLimit)
                    {
                        throw new DeviceException(DeviceErrorCode.InvalidArgument, $"a copy of {dtoh.Bytes} bytes is larger than the lease's memory ({_context.MemoryLimit} bytes)");
                    }

                    BrokerMetrics.BytesToHost.Add((long)dtoh.Bytes);
                    var lane = _replies is IDirectReplies direct ? new[] { (direct, "the connection") } : null;
                    _context.EnqueueCopyToHost(dtoh.Stream, dtoh.Ptr, dtoh.Bytes, new CopyReplySink(this, seq, dtoh.Ptr, dtoh.Bytes, lane is null ? _options.EffectiveReplyChunkBytes : _options.EffectiveFastPathReplyChunkBytes, lane), new OpTag(seq, "memcpy_dtoh"));
                    break;
                case OpRequest.OpOneofCase.MemcpyDtod:
                    var dtod = request.MemcpyDtod;
                    _context.EnqueueCopyDeviceToDevice(dtod.Stream, dtod.Dst, dtod.Src, dtod.Bytes, new OpTag(seq, "memcpy_dtod"));
                    break;
                case OpRequest.OpOneofCase.Memset:
                    var ms = request.Memset;
                    _context.EnqueueMemset(ms.Stream, ms.Ptr, ms.Value, (int)Math.Min(ms.ElementSize, int.MaxValue), ms.Count, new OpTag(seq, "memset"));
                    break;
                case OpRequest.OpOneofCase.ModuleLoad:
                    var load = request.ModuleLoad;
                    Handle(seq, load.Builtin ? _context.LoadBuiltinModule() : _context.LoadModule(load.Image.Span));
                    break;
                case OpRequest.OpOneofCase.ModuleUnload:
                    _context.UnloadModule(request.ModuleUnload.Module);
                    Done(seq);
                    break;
                case OpRequest.OpOneofCase.ModuleGetFunction:
                    Handle(seq, _context.GetFunction(request.ModuleGetFunction.Module, request.ModuleGetFunction.Name));
                    break;
                case OpRequest.OpOneofCase.Launch:
                    var l = request.Launch;
                    var dims = new LaunchDims(l.GridX, l.GridY, l.GridZ, l.BlockX, l.BlockY, l.BlockZ, l.SharedMemBytes);
                    _context.EnqueueLaunch(l.Stream, l.Function, dims, l.Params.Memory, new OpTag(seq, "launch"));
                    break;
                case OpRequest.OpOneofCase.StreamCreate:
                    Handle(seq, _context.CreateStream());
                    break;
                case OpRequest.OpOneofCase.StreamDestroy:
                    _context.DestroyStream(request.StreamDestroy.Stream);
                    Done(seq);
                    break;
                case OpRequest.OpOneofCase.StreamSynchronize:
                    await _context.SynchronizeStreamAsync(request.StreamSynchronize.Stream, cancellationToken).ConfigureAwait(false);
                    DoneOrSticky(seq);
                    break;
                case OpRequest.OpOneofCase.StreamWaitEvent:
                    _context.EnqueueStreamWaitEvent(request.StreamWaitEvent.Stream, request.StreamWaitEvent.Event, new OpTag(seq, "stream_wait_event"));
                    break;
                case OpRequest.OpOneofCase.EventCreate:
                    Handle(seq, _context.CreateEvent());
                    break;
                case OpRequest.OpOneofCase.EventDestroy:
                    _context.DestroyEvent(request.EventDestroy.Event);
                    Done(seq);
                    break;
                case OpRequest.OpOneofCase.EventRecord:
                    _context.EnqueueEventRecord(request.EventRecord.Stream, request.EventRecord.Event, new OpTag(seq, "event_record"));
                    break;
                case OpRequest.OpOneofCase.EventSynchronize:
                    await _context.SynchronizeEventAsync(request.EventSynchronize.Event, cancellationToken).ConfigureAwait(false);
                    DoneOrSticky(seq);
                    break;
                case OpRequest.OpOneofCase.EventQuery:
                    Reply(new OpReply { Seq = seq, Ready = _context.QueryEvent(request.EventQuery.Event) });
                    break;
                case OpRequest.OpOneofCase.EventElapsedTime:
                    Reply(new OpReply { Seq = seq, ElapsedMs = _context.EventElapsedMilliseconds(request.EventElapsedTime.Start, request.EventElapsedTime.End) });
                    break;
                case OpRequest.OpOneofCase.Synchronize:
                    await _context.SynchronizeAsync(cancellationToken).ConfigureAwait(false);
                    DoneOrSticky(seq);
                    break;
                case OpRequest.OpOneofCase.MemGetInfo:
                    Reply(new OpReply { Seq = seq, MemInfo = new MemInfo { TotalBytes = _context.MemoryLimit, FreeBytes = _context.MemoryLimit - _context.MemoryUsed } });
                    break;
                case OpRequest.OpOneofCase.Open:
                    throw new GpuPoolException(ErrorCode.FailedPrecondition, "this session is already open");
                default:
                    throw new GpuPoolException(ErrorCode.InvalidArgument, $"operation #{seq} names no known op; this broker may be older than the client");
            }
        }
        catch (DeviceException ex)
        {
            Reply(new OpReply { Seq = seq, Error = OpErrors.Own(ex) });
        }
        catch (GpuPoolException ex)
        {
            Reply(new OpReply { Seq = seq, Error = ex.ToProto() });
        }
    }

    private void DoneOrSticky(ulong seq)
    {
        if (_context.TakeError() is { } sticky)
        {
            Reply(new OpReply { Seq = seq, Error = OpErrors.Sticky(sticky) });
        }
        else
        {
            Done(seq);
        }
    }

    private void Done(ulong seq) => Reply(new OpReply { Seq = seq, Done = new Empty() });

    private void Handle(ulong seq, ulong handle) => Reply(new OpReply { Seq = seq, Handle = handle });

    internal void Reply(OpReply reply) => _replies.Reply(reply);

    /// <summary>
    /// Turns a device-to-host copy into reply chunks no larger than <c>chunk</c>. It takes the copy in pieces too, as a
    /// backend that stages through bounded buffers (cuda) hands it over. When the connection can send straight from
    /// device memory (<see cref="IDirectReplies"/>), chunks go that way, spread over the lanes of a striped copy
    /// (chunk i of the copy on lane i mod n), and the device stream waits until each lane has sent its share; else
    /// they are staged (the gRPC stream). A lane that closes fails the copy with an error naming it.
    /// </summary>
    private sealed class CopyReplySink(SessionExecutor session, ulong seq, ulong ptr, ulong total, int chunk, (IDirectReplies Writer, string Name)[]? lanes, uint? carriedBy = null) : ICopyToHostSink
    {
        private bool _failed;

        public bool AcceptsChunks => true;

        public bool AcceptsMemory => lanes is not null;

        public void OnData(ReadOnlySpan<byte> data) => OnChunk(0, data, last: true);

        public void OnChunk(ulong offset, ReadOnlySpan<byte> data, bool last)
        {
            if (_failed)
            {
                return;
            }

            if (lanes is null || (carriedBy is null && data.Length < lanes[0].Writer.DirectThreshold))
            {
                var at = 0;
                do
                {
                    var n = Math.Min(chunk, data.Length - at);
                    session._replies.Data(seq, offset + (ulong)at, data.Slice(at, n), last && at + n == data.Length);
                    at += n;
                }
                while (at < data.Length);
                return;
            }

            SendDirect(offset, data);
        }

        /// <summary>
        /// The whole copy from device memory (cpu): chunk i goes on lane i mod n, in that lane's next slot; a slot is
        /// waited for before it is used again, so each lane has several chunks in flight and nothing holds a thread.
        /// </summary>
        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
        public async ValueTask OnMemoryAsync(nint bytes, int length)
        {
            if (carriedBy is null && length < lanes![0].Writer.DirectThreshold)
            {
                OnChunk(0, Span(bytes, length), last: true);
                return;
            }

            // The lanes' slots are this copy's until it has sent its chunks; another stream's copy waits its turn.
            var taken = 0;
            while (taken < lanes!.Length && await lanes[taken].Writer.AcquireDirectAsync().ConfigureAwait(false))
            {
                taken++;
            }

            try
            {
                if (taken < lanes.Length)
                {
                    Finish(lanes[taken].Name, 0, whole: false);
                    return;
                }

                await SendFromMemoryAsync(bytes, length).ConfigureAwait(false);
            }
            finally
            {
                for (var k = 0; k < taken; k++)
                {
                    lanes[k].Writer.ReleaseDirect();
                }
            }
        }

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
        private async ValueTask SendFromMemoryAsync(nint bytes, int length)
        {
            var slots = lanes![0].Writer.DirectSlots;
            var posted = new bool[lanes.Length * slots];
            var at = 0;
            string? lost = null;
            for (var i = 0; at < length; i++)
            {
                var position = (ulong)at;
                var k = i % lanes.Length;
                var slot = i / lanes.Length % slots;
                var n = Math.Min(chunk, length - at);
                var lane = lanes[k].Writer;
                if (posted[(k * slots) + slot])
                {
                    posted[(k * slots) + slot] = false;
                    if (!await lane.WaitDirectAsync(slot).ConfigureAwait(false))
                    {
                        lost = lanes[k].Name;
                        break;
                    }
                }

                if (!lane.PostDirect(slot, seq, position, bytes + at, n, position + (ulong)n == total))
                {
                    lost = lanes[k].Name;
                    break;
                }

                posted[(k * slots) + slot] = true;
                at += n;
            }

            // Every lane must have let go of the bytes before the stream goes on.
            for (var p = 0; p < posted.Length; p++)
            {
                if (posted[p] && !await lanes[p / slots].Writer.WaitDirectAsync(p % slots).ConfigureAwait(false))
                {
                    lost ??= lanes[p / slots].Name;
                }
            }

            Finish(lost, (ulong)at, whole: at == length);
        }

        private static unsafe ReadOnlySpan<byte> Span(nint bytes, int length) => new((void*)bytes, length);

        /// <summary>A piece handed over as a span (cuda's staging): sent from it while this thread, the stream's own, waits.</summary>
        private void SendDirect(ulong offset, ReadOnlySpan<byte> data)
        {
            var taken = 0;
            while (taken < lanes!.Length && lanes[taken].Writer.AcquireDirect())
            {
                taken++;
            }

            try
            {
                if (taken < lanes.Length)
                {
                    Finish(lanes[taken].Name, offset, whole: false);
                    return;
                }

                SendFromSpan(offset, data);
            }
            finally
            {
                for (var k = 0; k < taken; k++)
                {
                    lanes[k].Writer.ReleaseDirect();
                }
            }
        }

        private unsafe void SendFromSpan(ulong offset, ReadOnlySpan<byte> data)
        {
            fixed (byte* bytes = data)
            {
                var at = 0;
                string? lost = null;
                while (at < data.Length)
                {
                    var position = offset + (ulong)at;
                    var lane = lanes![(int)(position / (ulong)chunk % (ulong)lanes.Length)];
                    var n = (int)Math.Min((ulong)chunk - (position % (ulong)chunk), (ulong)(data.Length - at));
                    if (!lane.Writer.WaitDirect(0) || !lane.Writer.PostDirect(0, seq, position, (nint)(bytes + at), n, position + (ulong)n == total))
                    {
                        lost = lane.Name;
                        break;
                    }

                    at += n;
                }

                // Every lane must have let go of the bytes before they are given back to the device.
                foreach (var lane in lanes!)
                {
                    if (!lane.Writer.WaitDirect(0))
                    {
                        lost ??= lane.Name;
                    }
                }

                Finish(lost, offset + (ulong)at, whole: offset + (ulong)data.Length == total);
            }
        }

        /// <summary>After the last piece, a striped copy's last word (which connections carried it); after a lost lane, the error naming the copy.</summary>
        private void Finish(string? lost, ulong sent, bool whole)
        {
            if (lost is null)
            {
                if (carriedBy is { } carried && whole)
                {
                    session.Reply(new OpReply { Seq = seq, Handle = carried });
                }

                return;
            }

            // A session that is over says why itself (the lease ended); the copy adds nothing to it.
            _failed = true;
            if (lanes![0].Writer.SessionEnded)
            {
                return;
            }

            session.Reply(new OpReply
            {
                Seq = seq,
                Error = new Error
                {
                    Code = ErrorCode.Unavailable,
                    Message = $"copy #{seq} of {total} bytes from the device at 0x{ptr:x} to the host failed: {lost} closed after {sent} of {total} bytes had been sent; the rest was not",
                    FailedSeq = seq,
                    FailedOp = "memcpy_dtoh",
                },
            });
        }

        public void OnError(StickyError error)
            => session.Reply(new OpReply { Seq = seq, Error = error.Op.Seq == seq ? OpErrors.Own(error.Error) : OpErrors.Sticky(error) });
    }
}
