using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Client.Transport;

/// <summary>
/// The raw fast path: frames on one TCP or Unix-socket connection. Small ops are appended to a batch
/// that one sender writes whenever the wire is free, so ops issued while a write is in flight leave
/// together. Large copies to the device are sent straight from the caller's memory (no staging copy);
/// the call returns once the kernel has taken the bytes. Replies are parsed with a PipeReader.
/// </summary>
internal sealed class FastPathSessionTransport : SessionTransport
{
    /// <summary>Copies up to this size are batched (one copy into the batch); larger ones go straight from the caller's memory.</summary>
    private const int DirectCopyThreshold = 64 * 1024;

    /// <summary>
    /// A batch buffer's starting size: room for the largest batched copy (the tail chunk of a large copy
    /// may be one) beside other frames, so that a batch grows only while the wire is busy, not per copy.
    /// </summary>
    private const int BatchCapacity = 2 * DirectCopyThreshold;

    /// <summary>A sender that falls this far behind makes callers wait, so memory stays bounded.</summary>
    private const int HighWater = 8 << 20;

    private readonly Socket _socket;
    private readonly PipeReader _input;
    private readonly object _gate = new();
    private readonly Queue<Segment> _segments = new();
    private readonly Stack<ArrayBufferWriter<byte>> _spareWriters = new();
    private readonly ArrayBufferWriter<byte>[] _copyHeaders = [new(FrameCodec.HeaderSize + 16), new(FrameCodec.HeaderSize + 16)];
    private readonly SendSignal[] _copySent = [new(), new()];
    private readonly SendSignal _wake = new();
    private ArrayBufferWriter<byte> _batch = new(BatchCapacity);
    private bool _sending;
    private bool _closing;
    private bool _senderDone;
    private TaskCompletionSource? _drained;
    private IReplyTarget _target = null!;
    private Task _reader = Task.CompletedTask;
    private Task _sender = Task.CompletedTask;
    private GpuPoolException? _failed;

    /// <summary>
    /// The reply readers' buffers, shared by every session of the process: reused blocks rather than
    /// ArrayPool rentals, which a reader thread that is not the returning one misses now and then.
    /// </summary>
    private static readonly BlockMemoryPool ReadBuffers = new(ReadBufferSize, maxRetained: 64);

    private const int ReadBufferSize = 256 * 1024;

    private readonly string _endpoint;
    private readonly object _laneGate = new();
    private readonly SemaphoreSlim _joinGate = new(1, 1);
    private Lane[] _lanes = [];
    private Striping? _striping;
    private int _joinFailures;

    private FastPathSessionTransport(Socket socket, string endpoint, string name, int maxMessageBytes)
    {
        _socket = socket;
        _endpoint = endpoint;
        Name = name;
        UseMessageLimit(maxMessageBytes, PreferredChunk);
        _input = PipeReader.Create(new NetworkStream(socket, ownsSocket: false), new StreamPipeReaderOptions(ReadBuffers, bufferSize: ReadBufferSize, minimumReadSize: 64 * 1024));
    }

    private readonly record struct Segment(ReadOnlyMemory<byte> Bytes, ArrayBufferWriter<byte>? Writer, SendSignal? Sent);

    /// <summary>Copy chunk size when the broker allows it.</summary>
    public const int PreferredChunk = 4 << 20;

    public override string Name { get; }

    /// <summary>Connects to a Unix socket path or a "host:port" TCP endpoint.</summary>
    public static async Task<FastPathSessionTransport> ConnectAsync(string endpoint, bool unix, int maxMessageBytes, CancellationToken cancellationToken)
    {
        EndPoint target;
        Socket socket;
        if (unix)
        {
            target = new UnixDomainSocketEndPoint(endpoint);
            socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        }
        else
        {
            var colon = endpoint.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(endpoint.AsSpan(colon + 1), out var port) || !IPAddress.TryParse(endpoint.AsSpan(0, colon).Trim("[]"), out var address))
            {
                throw new GpuPoolException(ErrorCode.InvalidArgument, $"fast-path endpoint '{endpoint}' is not host:port");
            }

            target = new IPEndPoint(address, port);
            socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        }

        // TCP buffer sizes stay the kernel's: setting them turns off Linux's autotuning, which does better. A Unix
        // socket has no autotuning, and its default (about 200 KiB) makes a bulk copy wait on wake-ups every few hundred KiB.
        if (unix)
        {
            UseLargeBuffers(socket);
        }

        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(5));
            await socket.ConnectAsync(target, timeout.Token).ConfigureAwait(false);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return new FastPathSessionTransport(socket, endpoint, unix ? "unix" : "tcp", maxMessageBytes);
    }

    /// <summary>Socket buffers of a Unix-socket connection: 4 MiB each way, or the most the kernel allows (net.core.wmem_max/rmem_max).</summary>
    internal static void UseLargeBuffers(Socket socket)
    {
        try
        {
            socket.SendBufferSize = UnixBufferBytes;
            socket.ReceiveBufferSize = UnixBufferBytes;
        }
        catch (SocketException)
        {
            // The kernel's defaults then; a slower copy, not a failure.
        }
    }

    private const int UnixBufferBytes = 4 << 20;

    public override void Start(IReplyTarget target)
    {
        _target = target;
        _reader = Task.Run(ReadLoopAsync);
        _sender = Task.Run(SendLoopAsync);
    }

    public override ValueTask SendAsync(OpRequest request, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            ThrowIfFailed();
            OpFrames.Write(_batch, request);
            KickSender();
            return _batch.WrittenCount > HighWater ? new ValueTask(WaitDrainedAsync(cancellationToken)) : default;
        }
    }

    public override ValueTask SendCopyToDeviceAsync(ulong seq, ulong ptr, ulong stream, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        Span<byte> scratch = stackalloc byte[16];
        return SendBulkAsync(FrameType.MemcpyHtoD, seq, new FixedBuilder(scratch).U64(ptr).U64(stream).Written, data, slot: 0, cancellationToken);
    }

    /// <summary>
    /// Queues a frame whose payload is the caller's bytes; completes once they may be reused. Up to
    /// <see cref="DirectCopyThreshold"/> they are copied into the batch. Larger ones are sent as they are: whatever is
    /// batched goes first, then this frame's header, then the bytes. Each of the two <paramref name="slot"/>s has its
    /// own header buffer and signal, so nothing is allocated per chunk; a caller may have one frame in flight per slot
    /// and must await it before using the slot again. Once queued, the frame is not cancelled: half a frame would
    /// break the stream for every later op.
    /// </summary>
    private ValueTask SendBulkAsync(FrameType type, ulong seq, ReadOnlySpan<byte> fixedFields, ReadOnlyMemory<byte> data, int slot, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            ThrowIfFailed();
            if (data.Length <= DirectCopyThreshold)
            {
                FrameCodec.Write(_batch, type, seq, fixedFields, data.Span);
                KickSender();
                return _batch.WrittenCount > HighWater ? new ValueTask(WaitDrainedAsync(cancellationToken)) : default;
            }

            var header = _copyHeaders[slot];
            header.ResetWrittenCount();
            FrameCodec.WriteHeader(header, type, seq, fixedFields, data.Length);
            CloseBatch();
            var sent = _copySent[slot].Reset();
            _segments.Enqueue(new Segment(header.WrittenMemory, null, null));
            _segments.Enqueue(new Segment(data, null, _copySent[slot]));
            KickSender();
            return sent;
        }
    }

    /// <summary>
    /// Sends a copy to the device in chunks of <paramref name="chunk"/> bytes, chunk i as op <paramref name="firstSeq"/> + i
    /// (the session has numbered them all), straight from the caller's memory with two chunks in flight, so the socket
    /// never waits for the caller between them. Completes once every chunk has been sent; <paramref name="sent"/> counts
    /// the bytes sent, for an error to say how far the copy got.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask SendCopyInChunksAsync(ulong firstSeq, ulong ptr, ulong stream, ReadOnlyMemory<byte> data, int chunk, StrongBox<int> sent, CancellationToken cancellationToken)
    {
        var first = default(ValueTask);
        var second = default(ValueTask);
        int firstLength = 0, secondLength = 0;
        GpuPoolException? failure = null;
        var at = 0;
        for (var i = 0; at < data.Length; i++)
        {
            var n = Math.Min(chunk, data.Length - at);
            try
            {
                // The slot's previous chunk has gone before the slot is used again.
                if (i % 2 == 0)
                {
                    var pending = first;
                    first = default;
                    await pending.ConfigureAwait(false);
                    sent.Value += firstLength;
                    first = SendCopy(firstSeq + (ulong)i, ptr + (ulong)at, stream, data.Slice(at, n), 0, cancellationToken);
                    firstLength = n;
                }
                else
                {
                    var pending = second;
                    second = default;
                    await pending.ConfigureAwait(false);
                    sent.Value += secondLength;
                    second = SendCopy(firstSeq + (ulong)i, ptr + (ulong)at, stream, data.Slice(at, n), 1, cancellationToken);
                    secondLength = n;
                }
            }
            catch (GpuPoolException ex)
            {
                failure = ex;
                break;
            }

            at += n;
        }

        // Both slots let go of the caller's memory before the copy returns, whatever happened.
        try
        {
            await first.ConfigureAwait(false);
            sent.Value += firstLength;
        }
        catch (GpuPoolException ex)
        {
            failure ??= ex;
        }

        try
        {
            await second.ConfigureAwait(false);
            sent.Value += secondLength;
        }
        catch (GpuPoolException ex)
        {
            failure ??= ex;
        }

        if (failure is not null)
        {
            throw failure;
        }
    }

    private ValueTask SendCopy(ulong seq, ulong at, ulong stream, ReadOnlyMemory<byte> bytes, int slot, CancellationToken cancellationToken)
    {
        Span<byte> scratch = stackalloc byte[16];
        return SendBulkAsync(FrameType.MemcpyHtoD, seq, new FixedBuilder(scratch).U64(at).U64(stream).Written, bytes, slot, cancellationToken);
    }

    /// <summary>How large copies are striped, once the session has said it serves data connections.</summary>
    private sealed record Striping(ulong Session, string LeaseId, Func<string> Token, int Stripes, long Threshold, int ChunkBytes, int MaxDataConnections);

    /// <summary>A data connection of this session, and the index the broker gave it.</summary>
    private sealed record Lane(FastPathSessionTransport Connection, int Index);

    /// <summary>The extra data connections open now (one that has failed but whose closing is not handled yet not counted).</summary>
    public int DataConnections => LiveLanes();

    private int LiveLanes()
    {
        var live = 0;
        foreach (var lane in Volatile.Read(ref _lanes))
        {
            live += lane.Connection._failed is null ? 1 : 0;
        }

        return live;
    }

    /// <summary>Turns striping on for copies of at least <paramref name="options"/>' threshold, over the session <paramref name="info"/> names.</summary>
    public void ConfigureStriping(SessionInfo info, SessionOptions options, Func<string> token)
    {
        var stripes = options.Stripes > 0 ? options.Stripes : Name == "unix" ? SessionOptions.DefaultUnixStripes : SessionOptions.DefaultTcpStripes;
        if (info.FastPathSession == 0 || info.MaxDataConnections == 0 || stripes < 2)
        {
            return;
        }

        var chunk = Math.Min(options.StripeChunkBytes, MaxCopyChunk);
        _striping = new Striping(info.FastPathSession, info.LeaseId, token, Math.Min(stripes, (int)info.MaxDataConnections + 1), Math.Max(options.StripeThresholdBytes, 1), chunk, (int)info.MaxDataConnections);
    }

    /// <summary>
    /// Whether a copy of <paramref name="bytes"/> should be striped, after opening the data connections it needs (at
    /// the first large copy). False when striping is off, or no data connection could join (the copy then goes on the
    /// session's own connection).
    /// </summary>
    public async ValueTask<bool> PrepareStripesAsync(long bytes, CancellationToken cancellationToken)
    {
        if (_striping is not { } striping || bytes < striping.Threshold)
        {
            return false;
        }

        if (LiveLanes() + 1 >= striping.Stripes || Volatile.Read(ref _joinFailures) >= 3)
        {
            return LiveLanes() > 0;
        }

        await _joinGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            while (LiveLanes() + 1 < striping.Stripes && _joinFailures < 3)
            {
                if (await JoinAsync(striping, cancellationToken).ConfigureAwait(false) is not { } lane)
                {
                    _joinFailures++;
                    break;
                }

                lock (_laneGate)
                {
                    _lanes = [.. _lanes, lane];
                }
            }
        }
        finally
        {
            _joinGate.Release();
        }

        return LiveLanes() > 0;
    }

    /// <summary>Opens one data connection and joins it to the session; null when it cannot be reached or is refused.</summary>
    private async Task<Lane?> JoinAsync(Striping striping, CancellationToken cancellationToken)
    {
        FastPathSessionTransport connection;
        try
        {
            connection = await ConnectAsync(_endpoint, Name == "unix", MaxMessageBytes, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is SocketException or IOException or GpuPoolException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
            return null;
        }

        var target = new LaneTarget(this, _target);
        connection.UseMessageLimit(MaxMessageBytes, PreferredChunk);
        connection.Start(target);
        lock (connection._gate)
        {
            StripeFrames.WriteJoin(connection._batch, striping.Session, striping.LeaseId, striping.Token());
            connection.KickSender();
        }

        try
        {
            var index = await target.Joined.Task.WaitAsync(TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
            var lane = new Lane(connection, index);
            target.Lane = lane;
            return lane;
        }
        catch (Exception ex) when (ex is GpuPoolException or TimeoutException)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            return null;
        }
    }

    /// <summary>A data connection closed or failed: later copies leave it out, and copies in flight over it fail.</summary>
    private void LaneLost(LaneTarget target, GpuPoolException error)
    {
        if (target.Lane is not { } lane)
        {
            return;
        }

        lock (_laneGate)
        {
            if (Array.IndexOf(_lanes, lane) < 0)
            {
                return;
            }

            _lanes = [.. _lanes.Where(l => l != lane)];
        }

        _target.OnLaneClosed(lane.Index, error);
    }

    /// <summary>The connections a copy stripes over now: this one (index 0) first, then the data connections.</summary>
    private (Lane[] Lanes, uint Mask) CurrentLanes()
    {
        // A data connection that has failed but whose closing is not yet handled is left out already.
        var data = Volatile.Read(ref _lanes);
        var lanes = new List<Lane>(data.Length + 1) { new(this, 0) };
        var mask = 1u;
        foreach (var lane in data)
        {
            if (lane.Connection._failed is null)
            {
                lanes.Add(lane);
                mask |= 1u << lane.Index;
            }
        }

        return ([.. lanes], mask);
    }

    /// <summary>
    /// Sends a copy to the device striped over this connection and the data connections: the op on this one, then
    /// its chunks round-robin, two in flight per connection, straight from the caller's memory. Completes once every
    /// chunk has been sent (the caller may reuse its memory). A data connection that fails stops the copy: the broker
    /// fails it (a sticky error naming it, at the next synchronizing call). This connection failing fails the call.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask SendStripedCopyToDeviceAsync(ulong seq, ulong ptr, ulong stream, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        var striping = _striping!;
        var (lanes, mask) = CurrentLanes();
        var chunk = striping.ChunkBytes;
        lock (_gate)
        {
            ThrowIfFailed();
            StripeFrames.WriteCopy(_batch, FrameType.MemcpyHtoDStriped, new StripedCopy(seq, ptr, stream, (ulong)data.Length, (uint)chunk, mask));
            KickSender();
        }

        var inFlight = new ValueTask[lanes.Length * 2];
        var failure = new StrongBox<GpuPoolException?>();
        var stopped = false;
        var at = 0;
        for (var i = 0; at < data.Length && !stopped; i++)
        {
            var slot = i % inFlight.Length;
            var lane = lanes[slot % lanes.Length];
            stopped = await SettleAsync(inFlight, slot, lane, failure).ConfigureAwait(false);
            if (stopped)
            {
                break;
            }

            var n = Math.Min(chunk, data.Length - at);
            try
            {
                inFlight[slot] = lane.Connection.SendChunkAsync(seq, (ulong)at, data.Slice(at, n), slot / lanes.Length);
            }
            catch (GpuPoolException ex)
            {
                if (lane.Index == 0)
                {
                    failure.Value ??= ex;
                }

                break;
            }

            at += n;
        }

        // Every connection lets go of the caller's memory before the copy returns.
        for (var slot = 0; slot < inFlight.Length; slot++)
        {
            await SettleAsync(inFlight, slot, lanes[slot % lanes.Length], failure).ConfigureAwait(false);
        }

        if (failure.Value is { } failed)
        {
            throw failed;
        }
    }

    /// <summary>Waits for a slot's chunk to be sent; true when its connection failed (this one's failure is kept to throw).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private static async ValueTask<bool> SettleAsync(ValueTask[] inFlight, int slot, Lane lane, StrongBox<GpuPoolException?> failure)
    {
        var pending = inFlight[slot];
        inFlight[slot] = default;
        try
        {
            await pending.ConfigureAwait(false);
            return false;
        }
        catch (GpuPoolException ex)
        {
            if (lane.Index == 0)
            {
                failure.Value ??= ex;
            }

            return true;
        }
    }

    private ValueTask SendChunkAsync(ulong seq, ulong offset, ReadOnlyMemory<byte> bytes, int slot)
    {
        Span<byte> scratch = stackalloc byte[8];
        return SendBulkAsync(FrameType.StripeChunk, seq, new FixedBuilder(scratch).U64(offset).Written, bytes, slot, CancellationToken.None);
    }

    /// <summary>
    /// Asks for a copy to the host striped over this connection and the data connections; returns the connections it
    /// names (bit i: index i), whose Data frames carry its chunks.
    /// </summary>
    public uint SendStripedCopyToHost(ulong seq, ulong ptr, ulong bytes, ulong stream)
    {
        var (_, mask) = CurrentLanes();
        lock (_gate)
        {
            ThrowIfFailed();
            StripeFrames.WriteCopy(_batch, FrameType.MemcpyDtoHStriped, new StripedCopy(seq, ptr, stream, bytes, (uint)_striping!.ChunkBytes, mask));
            KickSender();
        }

        return mask;
    }

    /// <summary>
    /// Replies on a data connection: the join's answer is its own; copy data and errors go to the session; its
    /// closing fails only the copies that used it.
    /// </summary>
    private sealed class LaneTarget(FastPathSessionTransport owner, IReplyTarget session) : IReplyTarget
    {
        public TaskCompletionSource<int> Joined { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Lane? Lane { get; set; }

        public void OnValue(ulong seq, in ReplyValue value)
        {
            if (seq == 0)
            {
                Joined.TrySetResult((int)value.Value);
            }
            else
            {
                session.OnValue(seq, value);
            }
        }

        public void OnData(ulong seq, ulong offset, in ReadOnlySequence<byte> bytes, bool last) => session.OnData(seq, offset, bytes, last);

        public Memory<byte> DataDestination(ulong seq, ulong offset, int length) => session.DataDestination(seq, offset, length);

        public void OnDataReceived(ulong seq, ulong offset, int length, bool last) => session.OnDataReceived(seq, offset, length, last);

        public void OnError(ulong seq, GpuPoolException error)
        {
            if (seq != 0)
            {
                session.OnError(seq, error);
            }
            else if (!Joined.TrySetException(error))
            {
                owner.LaneLost(this, error);
            }
        }

        public void OnNotice(Notice notice)
        {
        }

        public void OnLaneClosed(int lane, GpuPoolException error)
        {
        }

        public void OnClosed(GpuPoolException error)
        {
            Joined.TrySetException(error);
            owner.LaneLost(this, error);
        }
    }

    /// <summary>Moves the batch to the send queue. Under the gate.</summary>
    private void CloseBatch()
    {
        if (_batch.WrittenCount == 0)
        {
            return;
        }

        _segments.Enqueue(new Segment(_batch.WrittenMemory, _batch, null));
        _batch = _spareWriters.Count > 0 ? _spareWriters.Pop() : new ArrayBufferWriter<byte>(BatchCapacity);
    }

    /// <summary>Wakes the sender if it is idle. Under the gate.</summary>
    private void KickSender()
    {
        if (!_sending && !_senderDone)
        {
            _sending = true;
            _wake.Complete();
        }
    }

    /// <summary>
    /// The connection's one sender, for its whole life: it sleeps on a reusable signal while there is
    /// nothing to send, so waking it allocates nothing (no work item, no new state machine per burst).
    /// <c>_sending</c> is false exactly while it sleeps: it re-arms the signal in the same locked step in
    /// which it finds the queue empty and clears the flag, so a wake-up is never lost.
    /// </summary>
    private async Task SendLoopAsync()
    {
        ValueTask wake;
        lock (_gate)
        {
            wake = _wake.Reset();
            if (_sending || _closing)
            {
                // Woken (or closed) before the sender started.
                _sending = true;
                _wake.Complete();
            }
        }

        while (true)
        {
            await wake.ConfigureAwait(false);
            while (true)
            {
                Segment segment;
                lock (_gate)
                {
                    if (_segments.Count == 0)
                    {
                        CloseBatch();
                    }

                    if (!_segments.TryDequeue(out segment))
                    {
                        _sending = false;
                        _drained?.TrySetResult();
                        _drained = null;
                        if (_closing)
                        {
                            _senderDone = true;
                            return;
                        }

                        wake = _wake.Reset();
                        break;
                    }
                }

                try
                {
                    await _socket.SendAsync(segment.Bytes, SocketFlags.None).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    // A send fails once the broker has closed the connection; why it closed (the lease ended, a
                    // protocol error) is in frames the reader may not have parsed yet. Let it, so that reason wins.
                    await Task.WhenAny(_reader, Task.Delay(TimeSpan.FromSeconds(2))).ConfigureAwait(false);
                    Fail(new GpuPoolException(ErrorCode.Unavailable, $"device session: sending to the broker failed ({ex.Message})", inner: ex));
                    segment.Sent?.Fail(_failed!);
                    lock (_gate)
                    {
                        _sending = false;
                        _senderDone = true;
                        _drained?.TrySetResult();
                    }

                    return;
                }

                segment.Sent?.Complete();
                if (segment.Writer is { } used)
                {
                    used.ResetWrittenCount();
                    lock (_gate)
                    {
                        _spareWriters.Push(used);
                    }
                }
            }
        }
    }

    private Task WaitDrainedAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            if (!_sending)
            {
                return Task.CompletedTask;
            }

            _drained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _drained.Task.WaitAsync(cancellationToken);
        }
    }

    /// <summary>Data frames at least this large whose payload is still arriving are received straight into the copy's destination.</summary>
    private const int DirectReceiveThreshold = 128 * 1024;

    /// <summary>A Data frame being received straight into its copy's destination: what is still to come.</summary>
    private readonly record struct DirectReceive(ulong Seq, ulong Offset, Memory<byte> Rest, int Length, bool Last);

    private async Task ReadLoopAsync()
    {
        GpuPoolException closed = new(ErrorCode.Unavailable, "the broker closed the fast-path connection");
        try
        {
            while (true)
            {
                var result = await _input.ReadAsync().ConfigureAwait(false);
                var consumed = Dispatch(result.Buffer, out var protocolError, out var direct);
                _input.AdvanceTo(consumed, direct is null ? result.Buffer.End : consumed);
                if (protocolError is not null)
                {
                    closed = new GpuPoolException(ErrorCode.Internal, "the broker sent a malformed frame: " + protocolError);
                    break;
                }

                if (direct is { } receive)
                {
                    // The pipe holds nothing more and reads nothing until asked: the rest of the payload is read from the
                    // socket into the copy's destination, then the pipe goes on from the next frame.
                    await SocketReceiver.ReceiveExactlyAsync(_socket, receive.Rest, "broker", CancellationToken.None).ConfigureAwait(false);
                    _target.OnDataReceived(receive.Seq, receive.Offset, receive.Length, receive.Last);
                    continue;
                }

                if (result.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
        {
            closed = new GpuPoolException(ErrorCode.Unavailable, $"device session: the connection to the broker failed ({ex.Message})", inner: ex);
        }

        Fail(closed);
        await _input.CompleteAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Hands the whole frames in the buffer to the target. A large Data frame whose payload has only begun to arrive
    /// is not waited for in the pipe: what has come is copied into its copy's destination now, and
    /// <paramref name="direct"/> says where the rest goes, straight from the socket.
    /// </summary>
    private SequencePosition Dispatch(ReadOnlySequence<byte> buffer, out string? protocolError, out DirectReceive? direct)
    {
        protocolError = null;
        direct = null;
        var reader = new SequenceReader<byte>(buffer);
        Span<byte> scratch = stackalloc byte[16];
        while (true)
        {
            var status = FrameCodec.TryDecode(ref reader, 64 << 20, out var frame, out var error);
            if (status == DecodeStatus.NeedMore)
            {
                direct = StartDirectReceive(ref reader);
                return reader.Position;
            }

            if (status != DecodeStatus.Frame)
            {
                protocolError = error;
                return reader.Position;
            }

            switch (frame.Type)
            {
                case FrameType.Reply:
                    var f = new FixedFields(frame.Fixed, scratch);
                    _target.OnValue(frame.Seq, new ReplyValue(f.U64(), f.U64(), null));
                    break;
                case FrameType.Data:
                    var d = new FixedFields(frame.Fixed, scratch);
                    var offset = d.U64();
                    _target.OnData(frame.Seq, offset, frame.Payload, d.U32() != 0);
                    break;
                case FrameType.Error:
                    _target.OnError(frame.Seq, OpFrames.ReadError(frame));
                    break;
                case FrameType.SessionInfo:
                    _target.OnValue(frame.Seq, new ReplyValue(0, 0, SessionInfo.Parser.ParseFrom(frame.Payload)));
                    break;
                case FrameType.Notice:
                    _target.OnNotice(OpFrames.ReadNotice(frame));
                    break;
                default:
                    protocolError = $"frame #{frame.Seq} is a {frame.Type} frame, which a broker does not send";
                    return reader.Position;
            }
        }
    }

    /// <summary>
    /// When the reader is at a large Data frame whose copy has a destination for it, copies the payload that has come
    /// into it and moves the reader past everything; null (the reader unmoved) otherwise, and the frame waits whole.
    /// </summary>
    private DirectReceive? StartDirectReceive(ref SequenceReader<byte> reader)
    {
        if (FrameCodec.TryDecodeHeader(reader, 64 << 20, out var header, out var fixedFields, out _) != DecodeStatus.Frame
            || header.Type != FrameType.Data || header.PayloadLength < DirectReceiveThreshold)
        {
            return null;
        }

        Span<byte> scratch = stackalloc byte[12];
        var d = new FixedFields(fixedFields, scratch);
        var offset = d.U64();
        var last = d.U32() != 0;
        var length = (int)header.PayloadLength;
        var destination = _target.DataDestination(header.Seq, offset, length);
        if (destination.IsEmpty)
        {
            return null;
        }

        reader.Advance(FrameCodec.HeaderSize + fixedFields.Length);
        var arrived = (int)reader.Remaining;
        reader.UnreadSequence.CopyTo(destination.Span);
        reader.Advance(arrived);
        return new DirectReceive(header.Seq, offset, destination[arrived..], length, last);
    }

    private void Fail(GpuPoolException error)
    {
        lock (_gate)
        {
            _failed ??= error;
            foreach (var segment in _segments)
            {
                segment.Sent?.Fail(error);
            }

            _segments.Clear();
        }

        _target.OnClosed(error);
    }

    private void ThrowIfFailed()
    {
        if (_failed is { } failed)
        {
            throw new GpuPoolException(failed.Code, failed.Message, inner: failed);
        }
    }

    public override async ValueTask DisposeAsync()
    {
        // The data connections first: they carry nothing once the copies over them are done.
        Lane[] lanes;
        lock (_laneGate)
        {
            lanes = _lanes;
        }

        foreach (var lane in lanes)
        {
            await lane.Connection.DisposeAsync().ConfigureAwait(false);
        }

        // Let queued frames leave, then close our side; the broker ends the session and closes too.
        var drained = WaitDrainedAsync(CancellationToken.None);
        await Task.WhenAny(drained, Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
        lock (_gate)
        {
            // The sender ends once it has sent what is queued.
            _closing = true;
            KickSender();
        }

        try
        {
            _socket.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException)
        {
        }

        await Task.WhenAny(_reader, Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
        _socket.Dispose();
        await _reader.ConfigureAwait(false);
        await _sender.ConfigureAwait(false);
    }

    /// <summary>
    /// A reusable completion ("the large copy's bytes have been sent", "there is something to send"), so a
    /// chunk costs no allocation. Continuations run on the thread pool, never inline under the caller's lock.
    /// </summary>
    private sealed class SendSignal : IValueTaskSource
    {
        private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
        private int _done;

        public ValueTask Reset()
        {
            _core.Reset();
            Volatile.Write(ref _done, 0);
            return new ValueTask(this, _core.Version);
        }

        public void Complete()
        {
            if (Interlocked.Exchange(ref _done, 1) == 0)
            {
                _core.SetResult(true);
            }
        }

        public void Fail(Exception error)
        {
            if (Interlocked.Exchange(ref _done, 1) == 0)
            {
                _core.SetException(error);
            }
        }

        public void GetResult(short token) => _core.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
            => _core.OnCompleted(continuation, state, token, flags);
    }
}
