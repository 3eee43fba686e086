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
    private ulong _lastSeq;

    public SessionExecutor(BrokerLease lease, BrokerOptions options, ISessionReplies replies, string transport)
    {
        _lease = lease;
        _options = options;
        _context = lease.Context;
        _replies = replies;
        _transport = transport;
    }

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
                    _context.EnqueueCopyToHost(dtoh.Stream, dtoh.Ptr, dtoh.Bytes, new CopyReplySink(this, seq), new OpTag(seq, "memcpy_dtoh"));
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
    /// Turns a device-to-host copy into reply chunks no larger than the configured chunk size. It takes the copy in
    /// pieces too, as a backend that stages through bounded buffers (cuda) hands it over.
    /// </summary>
    private sealed class CopyReplySink(SessionExecutor session, ulong seq) : ICopyToHostSink
    {
        public bool AcceptsChunks => true;

        public void OnData(ReadOnlySpan<byte> data) => OnChunk(0, data, last: true);

        public void OnChunk(ulong offset, ReadOnlySpan<byte> data, bool last)
        {
            var chunk = session._options.EffectiveReplyChunkBytes;
            var at = 0;
            do
            {
                var n = Math.Min(chunk, data.Length - at);
                session._replies.Data(seq, offset + (ulong)at, data.Slice(at, n), last && at + n == data.Length);
                at += n;
            }
            while (at < data.Length);
        }

        public void OnError(StickyError error)
            => session.Reply(new OpReply { Seq = seq, Error = error.Op.Seq == seq ? OpErrors.Own(error.Error) : OpErrors.Sticky(error) });
    }
}
