using System.Buffers;
using GpuPool.Broker.Leases;
using GpuPool.Broker.Sessions;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;
using System.IO.Pipelines;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace GpuPool.Broker.Transport;

/// <summary>
/// One raw fast-path connection (TCP or Unix socket): the first frame must be a
/// hello with the lease token; every later frame is an op, run by the same <see cref="SessionExecutor"/>
/// as the gRPC stream. A frame the decoder rejects is answered with a protocol error and closes this
/// connection only.
/// </summary>
internal sealed class FastPathConnectionHandler(LeaseTable leases, BrokerOptions options, ILogger logger)
{
    /// <summary>Copies to the device this large are put on the device straight from the read buffer when they can be.</summary>
    private const int DirectCopyThreshold = 64 * 1024;

    private static readonly TimeSpan ReplyDrainTimeout = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The connections' pipe buffers and device-to-host staging, shared by every connection of this broker:
    /// 1 MiB blocks, reused rather than rented from ArrayPool.Shared, which misses now and then when a
    /// buffer is returned on another thread than the one that rents the next. Up to 64 MiB stays pooled.
    /// </summary>
    private readonly BlockMemoryPool _blocks = new(1 << 20, maxRetained: 64);

    /// <summary>
    /// Serves one accepted socket until either side closes it. Reads go through a PipeReader with large
    /// buffers, so a bulk frame arrives in a few reads rather than thousands of 4 KiB ones.
    /// </summary>
    public async Task RunAsync(Socket socket, string transport, CancellationToken closed)
    {
        await using var stream = new NetworkStream(socket, ownsSocket: true);
        var input = PipeReader.Create(stream, new StreamPipeReaderOptions(_blocks, bufferSize: _blocks.BlockSize, minimumReadSize: 256 << 10, leaveOpen: true));
        var output = PipeWriter.Create(stream, new StreamPipeWriterOptions(_blocks, minimumBufferSize: 256 << 10, leaveOpen: true));
        var batch = new List<(OpRequest Request, IDisposable? Owner)>();
        try
        {
            var hello = await ReadHelloAsync(input, closed).ConfigureAwait(false);
            if (hello is null)
            {
                await FailAsync(output, 0, ErrorCode.Unauthenticated, "a fast-path connection must start with a hello frame carrying the lease token").ConfigureAwait(false);
                return;
            }

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
            var replies = new FrameReplies(output, _blocks, writing.Token, linked.Token);
            var executor = new SessionExecutor(lease, options, replies, transport);
            executor.Start(hello.Seq);
            string? protocolError = null;
            var errorCode = ErrorCode.InvalidArgument;
            try
            {
                while (protocolError is null)
                {
                    var result = await input.ReadAsync(linked.Token).ConfigureAwait(false);
                    var consumed = Decode(result.Buffer, executor, batch, out var stoppedEarly, out protocolError);
                    if (protocolError is not null && FrameCodec.IsOversized(result.Buffer.Slice(consumed), options.MaxMessageBytes))
                    {
                        // Like gRPC's message limit: a clear ResourceExhausted, and only this connection closes.
                        errorCode = ErrorCode.ResourceExhausted;
                    }

                    // Stopped early, the rest of the buffer holds a whole frame still to handle: it is not "examined".
                    input.AdvanceTo(consumed, stoppedEarly ? consumed : result.Buffer.End);
                    foreach (var (request, owner) in batch)
                    {
                        await executor.ExecuteAsync(request, owner, linked.Token).ConfigureAwait(false);
                    }

                    batch.Clear();
                    if (result.IsCompleted && !stoppedEarly)
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

                writing.CancelAfter(ReplyDrainTimeout);
                await executor.FinishAsync().ConfigureAwait(false);
                lease.DetachSession();
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException)
        {
            // The peer went away before or during the hello.
        }
        finally
        {
            foreach (var (_, owner) in batch)
            {
                owner?.Dispose();
            }

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

    /// <summary>Reads frames until the hello; null when the first frame is something else, malformed, or late.</summary>
    private async Task<OpRequest?> ReadHelloAsync(PipeReader input, CancellationToken closed)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(closed);
        timeout.CancelAfter(options.FastPathHelloTimeout);
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(timeout.Token).ConfigureAwait(false);
                var hello = DecodeHello(result.Buffer, out var consumed, out var done);
                input.AdvanceTo(consumed, result.Buffer.End);
                if (done || result.IsCompleted)
                {
                    return hello;
                }
            }
        }
        catch (OperationCanceledException) when (!closed.IsCancellationRequested)
        {
            return null;
        }
    }

    private OpRequest? DecodeHello(ReadOnlySequence<byte> buffer, out SequencePosition consumed, out bool done)
    {
        var reader = new SequenceReader<byte>(buffer);
        var status = FrameCodec.TryDecode(ref reader, FrameCodec.MaxPayload(FrameType.Hello, 0), out var frame, out _);
        consumed = reader.Position;
        done = status != DecodeStatus.NeedMore;
        if (status != DecodeStatus.Frame || frame.Type != FrameType.Hello)
        {
            return null;
        }

        return OpFrames.Read(frame, NoStaging, out _, out _);
    }

    /// <summary>
    /// Decodes the whole frames in the buffer into ops; payloads are staged so the buffer can be released.
    /// A large copy to the device whose stream is idle goes straight from the buffer to the device instead —
    /// only when no op before it is still waiting in <paramref name="into"/>; otherwise decoding stops before
    /// it (<paramref name="stoppedEarly"/>) so it comes first in the next round.
    /// </summary>
    private SequencePosition Decode(ReadOnlySequence<byte> buffer, SessionExecutor executor, List<(OpRequest, IDisposable?)> into, out bool stoppedEarly, out string? protocolError)
    {
        protocolError = null;
        stoppedEarly = false;
        var reader = new SequenceReader<byte>(buffer);
        Span<byte> scratch = stackalloc byte[16];
        while (true)
        {
            var before = reader.Position;
            var status = FrameCodec.TryDecode(ref reader, options.MaxMessageBytes, out var frame, out var error);
            if (status == DecodeStatus.NeedMore)
            {
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

            if (frame.Type == FrameType.MemcpyHtoD && frame.Payload.Length >= DirectCopyThreshold)
            {
                if (into.Count > 0)
                {
                    stoppedEarly = true;
                    return before;
                }

                var f = new FixedFields(frame.Fixed, scratch);
                var ptr = f.U64();
                if (executor.TryCopyToDeviceNow(frame.Seq, ptr, f.U64(), frame.Payload))
                {
                    continue;
                }
            }

            var request = OpFrames.Read(frame, Stage, out var owner, out error);
            if (request is null || request.OpCase == OpRequest.OpOneofCase.Open)
            {
                owner?.Dispose();
                protocolError = error ?? $"frame #{frame.Seq}: the session is already open";
                return reader.Position;
            }

            into.Add((request, owner));
        }
    }

    private static ReadOnlyMemory<byte> Stage(in ReadOnlySequence<byte> payload, out IDisposable? owner)
    {
        var staged = new StagingBuffer((int)payload.Length);
        payload.CopyTo(staged.Span);
        owner = staged;
        return staged.Memory;
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

    /// <summary>A pooled buffer that holds a copy's payload until the device has taken it.</summary>
    private sealed class StagingBuffer(int length) : IDisposable
    {
        private byte[]? _array = ArrayPool<byte>.Shared.Rent(length);

        public Span<byte> Span => _array.AsSpan(0, length);

        public Memory<byte> Memory => _array.AsMemory(0, length);

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _array, null) is { } array)
            {
                ArrayPool<byte>.Shared.Return(array);
            }
        }
    }
}
