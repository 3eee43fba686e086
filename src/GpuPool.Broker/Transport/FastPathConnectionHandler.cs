using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Security.Cryptography;
using GpuPool.Broker.Leases;
using GpuPool.Broker.Sessions;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace GpuPool.Broker.Transport;

/// <summary>
/// One raw fast-path connection (TCP or Unix socket). The first frame is a hello with the lease token, which
/// opens a session whose ops are run by the same <see cref="SessionExecutor"/> as the gRPC stream; or a join,
/// with the token and a session's id, which adds a data connection to an open session of the same lease, over
/// which large copies are striped (<see cref="FastPathSession"/>). A frame the decoder rejects is answered with a
/// protocol error and closes this connection only.
/// </summary>
internal sealed class FastPathConnectionHandler(LeaseTable leases, BrokerOptions options, ILogger logger)
{
    /// <summary>Copies to the device this large are put on the device straight from the read buffer when they can be.</summary>
    private const int DirectCopyThreshold = 64 * 1024;

    /// <summary>
    /// Payloads of copies to the device at least this large, whose bytes have only begun to arrive, are received from
    /// the socket straight into device memory when it is host memory and the stream is idle (no pass through a buffer).
    /// </summary>
    private const int DirectReceiveThreshold = 128 * 1024;

    /// <summary>After a payload received straight into device memory, the pipe reads no more than the next frame's header and fixed fields.</summary>
    private const int HeaderReadLimit = FrameCodec.HeaderSize + 16;

    private static readonly TimeSpan ReplyDrainTimeout = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The connections' pipe buffers and staging, shared by every connection of this broker: 1 MiB blocks, reused
    /// rather than rented from ArrayPool.Shared, which misses now and then when a buffer is returned on another
    /// thread than the one that rents the next. Up to 64 MiB stays pooled.
    /// </summary>
    private readonly BlockMemoryPool _blocks = new(1 << 20, maxRetained: 64);

    /// <summary>The open fast-path sessions by id, for data connections to join.</summary>
    private readonly ConcurrentDictionary<ulong, FastPathSession> _sessions = new();

    /// <summary>Why decoding stopped before the end of the buffer.</summary>
    private enum Stop
    {
        None,

        /// <summary>The next frame must wait for the ops decoded before it to run.</summary>
        Batch,

        /// <summary>The next frame is an op, which waits for the striped copy in progress.</summary>
        Upload,

        /// <summary>The next frame's payload must wait for staged chunks to drain.</summary>
        Budget,

        /// <summary>The next frame is a chunk of a copy the session's first connection has not announced yet.</summary>
        Announce,
    }

    /// <summary>A chunk of a striped copy being received straight into device memory: <see cref="Arrived"/> of its bytes were in the pipe.</summary>
    private readonly record struct DirectReceive(DirectChunk Chunk, int Arrived);

    /// <summary>An op to run in order: a request of session.proto, or a striped copy.</summary>
    private readonly record struct PendingOp(OpRequest? Request, FrameType StripedType, StripedCopy Striped);

    /// <summary>
    /// Serves one accepted socket until either side closes it. Reads go through a PipeReader with large
    /// buffers, so a bulk frame arrives in a few reads rather than thousands of 4 KiB ones.
    /// </summary>
    public async Task RunAsync(Socket socket, string transport, CancellationToken closed)
    {
        await using var stream = new NetworkStream(socket, ownsSocket: true);
        var bounded = new BoundedReadStream(socket);
        var input = PipeReader.Create(bounded, new StreamPipeReaderOptions(_blocks, bufferSize: _blocks.BlockSize, minimumReadSize: 256 << 10, leaveOpen: true));
        var output = PipeWriter.Create(stream, new StreamPipeWriterOptions(_blocks, minimumBufferSize: 256 << 10, leaveOpen: true));
        try
        {
            var (hello, join, joinError) = await ReadFirstFrameAsync(input, closed).ConfigureAwait(false);
            if (join is not null)
            {
                await ServeDataConnectionAsync(socket, bounded, input, output, join, closed).ConfigureAwait(false);
            }
            else if (joinError is not null)
            {
                await FailAsync(output, 0, ErrorCode.Unauthenticated, "join refused: " + joinError).ConfigureAwait(false);
            }
            else if (hello is null)
            {
                await FailAsync(output, 0, ErrorCode.Unauthenticated, "a fast-path connection must start with a hello frame carrying the lease token").ConfigureAwait(false);
            }
            else
            {
                await ServeSessionAsync(socket, bounded, input, output, hello, transport, closed).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException)
        {
            // The peer went away before or during the first frame.
        }
        finally
        {
            try
            {
                // Completing the writer flushes what is left; the socket may already be gone (the client hung
                // up, or the broker is stopping and closed it).
                await output.CompleteAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or SocketException or OperationCanceledException)
            {
            }

            await input.CompleteAsync().ConfigureAwait(false);
        }
    }

    /// <summary>The session a hello opens: its ops run in order on this connection until either side ends it.</summary>
    private async Task ServeSessionAsync(Socket socket, BoundedReadStream bounded, PipeReader input, PipeWriter output, OpRequest hello, string transport, CancellationToken closed)
    {
        BrokerLease lease;
        try
        {
            lease = await leases.AttachSessionAsync(hello.Open.LeaseId, hello.Open.Token, closed).ConfigureAwait(false);
        }
        catch (GpuPoolException ex)
        {
            Log.SessionRefused(logger, hello.Open.LeaseId, ex.Message);
            await FailAsync(output, hello.Seq, ex.Code, ex.Message).ConfigureAwait(false);
            return;
        }

        using var linked = CancellationTokenSource.CreateLinkedTokenSource(closed, lease.Ended);
        // The replies outlive the lease by a little (the last one says it ended), but not a client that stops
        // reading: once the session is over, writing gets a few seconds, then the connection is dropped.
        using var writing = CancellationTokenSource.CreateLinkedTokenSource(closed);
        using var sessionEnded = new CancellationTokenSource();
        var replies = new FrameReplies(output, socket, _blocks, writing.Token, linked.Token);
        using var reading = CancellationTokenSource.CreateLinkedTokenSource(linked.Token, replies.Failed);
        var id = NewSessionId();
        var executor = new SessionExecutor(lease, options, replies, transport, id, options.FastPathMaxDataConnections);
        var session = new FastPathSession(id, lease, executor, replies, options.FastPathMaxDataConnections, options.MaxMessageBytes, sessionEnded.Token);
        var budget = new StagingBudget(options.FastPathStagingBytes, _blocks);
        var batch = new List<PendingOp>();
        _sessions[id] = session;
        executor.Start(hello.Seq);
        session.Processed(hello.Seq);
        string? protocolError = null;
        var errorCode = ErrorCode.InvalidArgument;
        var view = new PointerMemory();
        try
        {
            while (protocolError is null)
            {
                var result = await input.ReadAsync(reading.Token).ConfigureAwait(false);
                var consumed = Decode(result.Buffer, session, budget, batch, out var stop, out var charge, out var direct, out protocolError);
                if (protocolError is not null && FrameCodec.IsOversized(result.Buffer.Slice(consumed), options.MaxMessageBytes))
                {
                    // Like gRPC's message limit: a clear ResourceExhausted, and only this connection closes.
                    errorCode = ErrorCode.ResourceExhausted;
                }

                // Stopped early, the rest of the buffer holds a whole frame still to handle: it is not "examined".
                ExpectRest(bounded, result.Buffer, consumed, stop);
                input.AdvanceTo(consumed, stop != Stop.None ? consumed : result.Buffer.End);
                if (direct is { } receive)
                {
                    await ReceiveDirectAsync(socket, bounded, view, session, receive, reading.Token).ConfigureAwait(false);
                    continue;
                }

                await RunAsync(batch, session, reading.Token).ConfigureAwait(false);
                if (stop == Stop.Upload)
                {
                    // This connection has moved on to the op after the copy; it waits until the copy is whole. It
                    // announces every copy itself, so the one in progress is one it has moved past.
                    session.MovedPast(0, ulong.MaxValue);
                    await session.UploadDone.WaitAsync(reading.Token).ConfigureAwait(false);
                }
                else if (stop == Stop.Budget)
                {
                    await budget.WaitAsync(charge, reading.Token).ConfigureAwait(false);
                }

                if (result.IsCompleted && stop == Stop.None)
                {
                    break;
                }
            }
        }
        catch (OperationCanceledException) when (lease.Ended.IsCancellationRequested)
        {
            protocolError = null;
            replies.Reply(new OpReply { Error = new Error { Code = ErrorCode.LeaseEnded, Message = $"lease {lease.Claims.LeaseId} has ended ({lease.EndReason}); its device memory has been freed" } });
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException)
        {
            Log.SessionClosed(logger, lease.Claims.LeaseId, "client disconnected");
        }
        finally
        {
            if (protocolError is not null)
            {
                var message = errorCode == ErrorCode.ResourceExhausted ? $"message larger than the broker's limit: {protocolError}" : "protocol error: " + protocolError;
                replies.Reply(new OpReply { Error = new Error { Code = errorCode, Message = message } });
                Log.SessionClosed(logger, lease.Claims.LeaseId, "protocol error: " + protocolError);
            }

            // The data connections close with the session, and let go of the lease's memory before the next session may open.
            _sessions.TryRemove(id, out _);
            await sessionEnded.CancelAsync().ConfigureAwait(false);
            session.End();
            writing.CancelAfter(ReplyDrainTimeout);
            await session.WaitDataConnectionsAsync(ReplyDrainTimeout * 2).ConfigureAwait(false);
            await executor.FinishAsync().ConfigureAwait(false);
            lease.DetachSession();
        }
    }

    /// <summary>Runs the ops decoded so far, in order, and tells the session how far its first connection has got.</summary>
    private async Task RunAsync(List<PendingOp> batch, FastPathSession session, CancellationToken cancellationToken)
    {
        var executor = session.Executor;
        foreach (var op in batch)
        {
            if (op.Request is { } request)
            {
                await executor.ExecuteAsync(request, payloadOwner: null, cancellationToken).ConfigureAwait(false);
            }
            else if (op.StripedType == FrameType.MemcpyHtoDStriped)
            {
                if (executor.TryTakeSeq(op.Striped.Seq))
                {
                    session.BeginUpload(op.Striped);
                }
            }
            else
            {
                RunStripedCopyToHost(session, op.Striped);
            }
        }

        if (batch.Count > 0)
        {
            batch.Clear();
            session.Processed(executor.LastSeq);
        }
    }

    private void RunStripedCopyToHost(FastPathSession session, in StripedCopy copy)
    {
        var executor = session.Executor;
        var problem = copy.ChunkBytes < FastPathSession.MinChunkBytes || copy.ChunkBytes > options.MaxMessageBytes
            ? $"its chunks of {copy.ChunkBytes} bytes are not between {FastPathSession.MinChunkBytes} and the broker's message limit of {options.MaxMessageBytes} bytes"
            : null;
        var open = 0u;
        var lanes = problem is null ? session.Lanes(copy.Connections, out open, out _, out problem) : null;
        if (lanes is null)
        {
            executor.Refuse(copy.Seq, ErrorCode.InvalidArgument, $"striped copy of {copy.Bytes} bytes from the device at 0x{copy.Ptr:x} to the host: {problem}");
            return;
        }

        // A named connection that has closed is left out: the copy goes over the others, and its last word says which.
        executor.ExecuteStripedCopyToHost(copy, lanes, open);
    }

    /// <summary>
    /// A data connection that asks to join a session: its token must be the lease's, and the session that lease's.
    /// It then carries chunks of striped copies both ways until it or the session closes.
    /// </summary>
    private async Task ServeDataConnectionAsync(Socket socket, BoundedReadStream bounded, PipeReader input, PipeWriter output, JoinRequest join, CancellationToken closed)
    {
        try
        {
            leases.VerifyJoin(join.LeaseId, join.Token);
        }
        catch (GpuPoolException ex)
        {
            Log.JoinRefused(logger, join.LeaseId, ex.Message);
            await FailAsync(output, 0, ex.Code, "join refused: " + ex.Message).ConfigureAwait(false);
            return;
        }

        if (!_sessions.TryGetValue(join.Session, out var session))
        {
            var message = $"join refused: no fast-path session {join.Session:x16} is open on this broker (it has ended, or never existed); open a session with a hello first";
            Log.JoinRefused(logger, join.LeaseId, message);
            await FailAsync(output, 0, ErrorCode.NotFound, message).ConfigureAwait(false);
            return;
        }

        if (!string.Equals(session.Lease.Claims.LeaseId, join.LeaseId, StringComparison.Ordinal))
        {
            var message = $"join refused: session {join.Session:x16} belongs to another lease; a data connection may join only a session of the lease its token was issued for ({join.LeaseId})";
            Log.JoinRefused(logger, join.LeaseId, message);
            await FailAsync(output, 0, ErrorCode.PermissionDenied, message).ConfigureAwait(false);
            return;
        }

        using var writing = CancellationTokenSource.CreateLinkedTokenSource(closed);
        var replies = new FrameReplies(output, socket, _blocks, writing.Token, session.Ended);
        using var reading = CancellationTokenSource.CreateLinkedTokenSource(closed, session.Ended, replies.Failed);
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var index = session.Join(replies, done.Task, out var refusal);
        if (index is not { } lane)
        {
            Log.JoinRefused(logger, join.LeaseId, refusal!);
            replies.Reply(new OpReply { Error = new Error { Code = ErrorCode.ResourceExhausted, Message = "join refused: " + refusal } });
            replies.Complete();
            await replies.Completion.ConfigureAwait(false);
            return;
        }

        // The answer: a Reply (seq 0) whose value is this connection's index, which the session's copies name.
        replies.Reply(new OpReply { Handle = (ulong)lane });
        var budget = new StagingBudget(options.FastPathStagingBytes, _blocks);
        string? protocolError = null;
        var reason = "the client closed it";
        var view = new PointerMemory();
        try
        {
            while (protocolError is null)
            {
                var result = await input.ReadAsync(reading.Token).ConfigureAwait(false);
                var consumed = DecodeChunks(result.Buffer, session, lane, budget, out var stop, out var charge, out var announce, out var direct, out protocolError);
                ExpectRest(bounded, result.Buffer, consumed, stop);
                input.AdvanceTo(consumed, stop != Stop.None ? consumed : result.Buffer.End);
                if (direct is { } receive)
                {
                    await ReceiveDirectAsync(socket, bounded, view, session, receive, reading.Token).ConfigureAwait(false);
                    continue;
                }

                if (stop == Stop.Budget)
                {
                    await budget.WaitAsync(charge, reading.Token).ConfigureAwait(false);
                }
                else if (stop == Stop.Announce)
                {
                    // A chunk of a later copy: this connection has nothing more of the one in progress.
                    session.MovedPast(lane, announce);
                    await session.WaitProcessedAsync(announce, reading.Token).ConfigureAwait(false);
                }

                if (result.IsCompleted && stop == Stop.None)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException)
        {
            reason = session.Ended.IsCancellationRequested ? "the session ended" : ex.Message;
        }
        finally
        {
            if (protocolError is not null)
            {
                reason = "protocol error: " + protocolError;
                replies.Reply(new OpReply { Error = new Error { Code = ErrorCode.InvalidArgument, Message = reason } });
            }

            Log.DataConnectionClosed(logger, lane, session.Id, join.LeaseId, reason);
            session.LaneClosed(lane, reason);
            writing.CancelAfter(ReplyDrainTimeout);
            replies.Complete();
            await replies.Completion.ConfigureAwait(false);
            done.TrySetResult();
        }
    }

    /// <summary>Reads the first frame: a hello, a join, or neither (null; a join whose lengths do not add up gives its reason).</summary>
    private async Task<(OpRequest? Hello, JoinRequest? Join, string? JoinError)> ReadFirstFrameAsync(PipeReader input, CancellationToken closed)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(closed);
        timeout.CancelAfter(options.FastPathHelloTimeout);
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(timeout.Token).ConfigureAwait(false);
                var first = DecodeFirstFrame(result.Buffer, out var consumed, out var done);
                input.AdvanceTo(consumed, result.Buffer.End);
                if (done || result.IsCompleted)
                {
                    return first;
                }
            }
        }
        catch (OperationCanceledException) when (!closed.IsCancellationRequested)
        {
            return default;
        }
    }

    private static (OpRequest?, JoinRequest?, string?) DecodeFirstFrame(ReadOnlySequence<byte> buffer, out SequencePosition consumed, out bool done)
    {
        var reader = new SequenceReader<byte>(buffer);
        var status = FrameCodec.TryDecode(ref reader, FrameCodec.MaxPayload(FrameType.Hello, 0), out var frame, out _);
        consumed = reader.Position;
        done = status != DecodeStatus.NeedMore;
        if (status != DecodeStatus.Frame)
        {
            return default;
        }

        if (frame.Type == FrameType.Join)
        {
            var join = StripeFrames.ReadJoin(frame, out var error);
            return (null, join, error);
        }

        return frame.Type == FrameType.Hello ? (OpFrames.Read(frame, NoStaging, out _, out _), null, null) : default;
    }

    /// <summary>
    /// Decodes the whole frames in the buffer into ops to run in order. Copies to the device do not wait in the
    /// batch: each lands (or is staged and queued) as it is decoded, once the ops before it have run — so decoding
    /// stops before one when the batch is not empty. A large copy whose stream is idle goes straight from the buffer
    /// to the device; one whose stream is busy is staged within the connection's budget, and decoding stops before
    /// it when the budget is spent. While a striped copy is in progress only its chunks are taken; decoding stops
    /// before any op, which comes after the copy.
    /// </summary>
    private SequencePosition Decode(ReadOnlySequence<byte> buffer, FastPathSession session, StagingBudget budget, List<PendingOp> into, out Stop stop, out long charge, out DirectReceive? direct, out string? protocolError)
    {
        protocolError = null;
        stop = Stop.None;
        charge = 0;
        direct = null;
        var executor = session.Executor;
        var reader = new SequenceReader<byte>(buffer);
        Span<byte> scratch = stackalloc byte[16];
        while (true)
        {
            var before = reader.Position;
            var status = FrameCodec.TryDecode(ref reader, options.MaxMessageBytes, out var frame, out var error);
            if (status == DecodeStatus.NeedMore)
            {
                // Only with nothing decoded before it waiting to run: the copy lands now, in its place.
                if (into.Count == 0)
                {
                    direct = StartDirectReceive(ref reader, session, 0);
                }

                return reader.Position;
            }

            if (status == DecodeStatus.Error)
            {
                protocolError = error;
                return reader.Position;
            }

            if (frame.Seq == 0)
            {
                // Seq 0 is the session's own in replies (lease ended, protocol errors); an op may not use it.
                protocolError = $"a {frame.Type} frame has sequence number 0; ops are numbered from 1";
                return reader.Position;
            }

            if (frame.Type == FrameType.StripeChunk)
            {
                if (into.Count > 0)
                {
                    // The op that announces its copy may be in the batch.
                    stop = Stop.Batch;
                    return before;
                }

                switch (session.OnChunk(0, frame, budget, out error))
                {
                    case ChunkOutcome.Landed or ChunkOutcome.Dropped:
                        continue;
                    case ChunkOutcome.NeedBudget:
                        stop = Stop.Budget;
                        charge = budget.ChargeFor(frame.Payload.Length);
                        return before;
                    case ChunkOutcome.NotYet:
                        protocolError = $"frame #{frame.Seq} is a chunk of a striped copy that this connection has not announced";
                        return reader.Position;
                    default:
                        protocolError = error;
                        return reader.Position;
                }
            }

            if (session.UploadInProgress)
            {
                stop = Stop.Upload;
                return before;
            }

            switch (frame.Type)
            {
                case FrameType.MemcpyHtoDStriped or FrameType.MemcpyDtoHStriped:
                    into.Add(new PendingOp(null, frame.Type, StripeFrames.ReadCopy(frame)));

                    // Its chunks may follow at once: it is announced before anything after it is read.
                    stop = Stop.Batch;
                    return reader.Position;

                case FrameType.MemcpyHtoD:
                    if (into.Count > 0)
                    {
                        stop = Stop.Batch;
                        return before;
                    }

                    var f = new FixedFields(frame.Fixed, scratch);
                    var ptr = f.U64();
                    var stream = f.U64();
                    if (frame.Payload.Length >= DirectCopyThreshold && executor.TryCopyToDeviceNow(frame.Seq, ptr, stream, frame.Payload))
                    {
                        continue;
                    }

                    if (executor.SeqIsNew(frame.Seq))
                    {
                        charge = budget.ChargeFor(frame.Payload.Length);
                        if (!budget.TryReserve(charge))
                        {
                            stop = Stop.Budget;
                            return before;
                        }
                    }

                    if (executor.TryTakeSeq(frame.Seq))
                    {
                        budget.Stage(frame.Payload, charge, (executor, frame.Seq, stream, ptr), static (s, at, bytes, owner) => s.executor.EnqueueCopyToDevice(s.Seq, s.stream, s.ptr + (ulong)at, bytes, owner));
                    }

                    charge = 0;
                    continue;
            }

            var request = OpFrames.Read(frame, NoStaging, out _, out error);
            if (request is null || request.OpCase == OpRequest.OpOneofCase.Open)
            {
                protocolError = error ?? $"frame #{frame.Seq}: the session is already open";
                return reader.Position;
            }

            into.Add(new PendingOp(request, default, default));
        }
    }

    /// <summary>Decodes a data connection's frames: chunks of striped copies, and nothing else.</summary>
    private SequencePosition DecodeChunks(ReadOnlySequence<byte> buffer, FastPathSession session, int lane, StagingBudget budget, out Stop stop, out long charge, out ulong announce, out DirectReceive? direct, out string? protocolError)
    {
        protocolError = null;
        stop = Stop.None;
        charge = 0;
        announce = 0;
        direct = null;
        var reader = new SequenceReader<byte>(buffer);
        while (true)
        {
            var before = reader.Position;
            var status = FrameCodec.TryDecode(ref reader, options.MaxMessageBytes, out var frame, out var error);
            if (status == DecodeStatus.NeedMore)
            {
                direct = StartDirectReceive(ref reader, session, lane);
                return reader.Position;
            }

            if (status == DecodeStatus.Error || frame.Type != FrameType.StripeChunk)
            {
                protocolError = error ?? $"frame #{frame.Seq} is a {frame.Type} frame; a data connection carries only StripeChunk frames";
                return reader.Position;
            }

            switch (session.OnChunk(lane, frame, budget, out error))
            {
                case ChunkOutcome.Landed or ChunkOutcome.Dropped:
                    continue;
                case ChunkOutcome.NeedBudget:
                    stop = Stop.Budget;
                    charge = budget.ChargeFor(frame.Payload.Length);
                    return before;
                case ChunkOutcome.NotYet:
                    stop = Stop.Announce;
                    announce = frame.Seq;
                    return before;
                default:
                    protocolError = error;
                    return reader.Position;
            }
        }
    }

    /// <summary>
    /// When the reader is at a large chunk of the striped copy in progress whose payload has only begun to arrive, and
    /// its destination can take the bytes now (host memory, idle stream): copies what has come there, moves the reader
    /// past everything, and says where the rest goes. Null (the reader unmoved) otherwise: the frame waits whole and
    /// takes the usual way, which also reports whatever is wrong with it.
    /// </summary>
    private DirectReceive? StartDirectReceive(ref SequenceReader<byte> reader, FastPathSession session, int lane)
    {
        if (FrameCodec.TryDecodeHeader(reader, options.MaxMessageBytes, out var header, out var fixedFields, out _) != DecodeStatus.Frame
            || header.PayloadLength < DirectReceiveThreshold || header.Seq == 0)
        {
            return null;
        }

        // A copy op of its own (not striped) waits whole in the pipe: cut in the middle, it leaves the destination as it was.
        Span<byte> scratch = stackalloc byte[8];
        if (header.Type != FrameType.StripeChunk
            || !session.TryBeginDirectChunk(lane, header.Seq, new FixedFields(fixedFields, scratch).U64(), (int)header.PayloadLength, out var chunk))
        {
            return null;
        }

        reader.Advance(FrameCodec.HeaderSize + fixedFields.Length);
        var arrived = (int)reader.Remaining;
        unsafe
        {
            reader.UnreadSequence.CopyTo(new Span<byte>((void*)chunk.Target, arrived));
        }

        reader.Advance(arrived);
        return new DirectReceive(chunk, arrived);
    }

    /// <summary>
    /// Receives the rest of a payload straight from the socket into device memory (the pipe holds nothing more and
    /// reads nothing until asked), then ends the write. A connection that fails or closes in the middle ends the write
    /// with the chunk uncounted (its bytes in device memory undefined) and throws: its copy fails, naming the connection.
    /// </summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    private static async ValueTask ReceiveDirectAsync(Socket socket, BoundedReadStream bounded, PointerMemory view, FastPathSession session, DirectReceive receive, CancellationToken cancellationToken)
    {
        var whole = false;
        view.Reset(receive.Chunk.Target + receive.Arrived, receive.Chunk.Length - receive.Arrived);
        try
        {
            // The rest is on its way: waiting for it in poll beats a trip through the socket engine per wake-up.
            await SocketReceiver.ReceiveExactlyAsync(socket, view.Memory, "client", cancellationToken).ConfigureAwait(false);
            whole = true;
        }
        finally
        {
            view.Reset(0, 0);
            session.EndDirectChunk(receive.Chunk, whole);
        }

        // More bulk is likely next: the pipe reads just its header, so that its payload can come this way too.
        bounded.LimitNextRead(HeaderReadLimit);
    }

    /// <summary>A frame cut by the end of what was read: the rest of it is on its way.</summary>
    private static void ExpectRest(BoundedReadStream bounded, in ReadOnlySequence<byte> buffer, SequencePosition consumed, Stop stop)
    {
        if (stop == Stop.None && buffer.Slice(consumed).Length > 0)
        {
            bounded.RestIsComing();
        }
    }

    private ulong NewSessionId()
    {
        Span<byte> bytes = stackalloc byte[8];
        while (true)
        {
            RandomNumberGenerator.Fill(bytes);
            var id = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
            if (id != 0 && !_sessions.ContainsKey(id))
            {
                return id;
            }
        }
    }

    private static ReadOnlyMemory<byte> NoStaging(in ReadOnlySequence<byte> payload, out IDisposable? owner)
    {
        owner = null;
        return ReadOnlyMemory<byte>.Empty;
    }

    private static async Task FailAsync(PipeWriter output, ulong seq, ErrorCode code, string message)
    {
        OpFrames.WriteReply(output, new OpReply { Seq = seq, Error = new Error { Code = code, Message = message } });
        await output.FlushAsync().ConfigureAwait(false);
    }
}
