using System.Buffers;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Google.Protobuf;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;
using Grpc.Core;
using Grpc.Net.Client;

namespace GpuPool.Client.Transport;

/// <summary>
/// The portable transport: ops and replies as protobuf messages on one gRPC bidirectional stream. The stream
/// is bound with our own marshallers (wire-compatible with session.proto) so that bulk bytes are copied as
/// little as the protocol allows: a copy to the device is serialized straight from the caller's memory, and
/// the caller is let go as soon as its bytes are serialized; a chunk of a copy to the host goes from the
/// received message straight into the caller's buffer, never through a <c>ByteString</c>.
/// </summary>
internal sealed class GrpcSessionTransport : SessionTransport
{
    private static readonly Method<object, object> OpenMethod = new(
        MethodType.DuplexStreaming,
        GrpcOpStream.ServiceName,
        GrpcOpStream.MethodName,
        Marshallers.Create<object>(SerializeOp, static _ => throw new NotSupportedException("the client does not receive ops")),
        Marshallers.Create<object>(static (_, _) => throw new NotSupportedException("the client does not send replies"), DeserializeReply));

    private readonly AsyncDuplexStreamingCall<object, object> _call;
    private readonly CancellationTokenSource _callCts = new();

    /// <summary>Ops (<see cref="OpRequest"/>) and copy chunks (<see cref="CopyChunk"/>) in sequence order.</summary>
    private readonly Channel<object> _outgoing = Channel.CreateBounded<object>(new BoundedChannelOptions(256) { SingleReader = true });
    private readonly string _peer;
    private IReplyTarget _target = null!;
    private GpuPoolException? _closed;
    private Task _reader = Task.CompletedTask;
    private Task _writer = Task.CompletedTask;

    /// <param name="peer">Who is at the other end, for messages: "broker b1 at http://10.0.0.5:7071".</param>
    public GrpcSessionTransport(GrpcChannel channel, int maxMessageBytes, string peer)
    {
        _peer = peer;
        _call = channel.CreateCallInvoker().AsyncDuplexStreamingCall(OpenMethod, null, new CallOptions(cancellationToken: _callCts.Token));
        UseMessageLimit(maxMessageBytes, PreferredChunk);
    }

    /// <summary>Copy chunk size when the broker allows it.</summary>
    public const int PreferredChunk = 1 << 20;

    public override string Name => "grpc";

    public override void Start(IReplyTarget target)
    {
        _target = target;

        // The reader first: a writer whose write fails waits for it.
        _reader = Task.Run(ReadLoopAsync);
        _writer = Task.Run(WriteLoopAsync);
    }

    public override ValueTask SendOpenAsync(ulong seq, string leaseId, string token, CancellationToken cancellationToken)
        => Enqueue(new OpRequest { Seq = seq, Open = new SessionOpen { LeaseId = leaseId, Token = token } }, cancellationToken);

    /// <summary>The op as its session.proto message: protobuf is this transport's wire, so each op is one message.</summary>
    public override ValueTask SendAsync<TOp>(ulong seq, in TOp op, ReadOnlySpan<byte> payload, CancellationToken cancellationToken)
    {
        var request = new OpRequest { Seq = seq };
        op.ToProto(request, payload);
        return Enqueue(request, cancellationToken);
    }

    private ValueTask Enqueue(OpRequest request, CancellationToken cancellationToken)
        => _outgoing.Writer.TryWrite(request) ? default : _outgoing.Writer.WriteAsync(request, cancellationToken);

    /// <summary>
    /// Queues a chunk that refers to the caller's bytes, not a copy of them, and waits until the writer has
    /// serialized it (or the stream has failed, or the chunk was withdrawn before the writer took it).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public override async ValueTask SendCopyToDeviceAsync(ulong seq, ulong ptr, ulong stream, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        var chunk = new CopyChunk(new OpRequest { Seq = seq, MemcpyHtod = new MemcpyHtoD { Ptr = ptr, Stream = stream, Data = UnsafeByteOperations.UnsafeWrap(data) } });
        if (!_outgoing.Writer.TryWrite(chunk))
        {
            await _outgoing.Writer.WriteAsync(chunk, cancellationToken).ConfigureAwait(false);
        }

        // Until the writer takes the chunk, cancelling withdraws it; once taken, its bytes are being read, and
        // the caller may not have its buffer back before they have been.
        using var withdraw = cancellationToken.CanBeCanceled
            ? cancellationToken.UnsafeRegister(static (state, token) => ((CopyChunk)state!).TryWithdraw(token), chunk)
            : default;
        await chunk.Serialized.ConfigureAwait(false);
    }

    private async Task WriteLoopAsync()
    {
        CopyChunk? current = null;
        try
        {
            await foreach (var item in _outgoing.Reader.ReadAllAsync().ConfigureAwait(false))
            {
                current = item as CopyChunk;
                if (current is not null && !current.TryTake())
                {
                    continue;
                }

                await _call.RequestStream.WriteAsync(item).ConfigureAwait(false);
                current = null;
            }

            await _call.RequestStream.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException or IOException or OperationCanceledException)
        {
            // A write fails once the broker has ended the call, and then only says "cancelled"; the status the
            // broker ended it with (lease ended, message too large) reaches the reader, which reports it.
            // Ours is the fallback for a reader that does not finish.
            await Task.WhenAny(_reader, Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
            Close(ex is RpcException rpc
                ? FromCall(rpc)
                : new GpuPoolException(ErrorCode.Unavailable, $"device session: sending to {_peer} failed ({ex.Message})", inner: ex));

            // Copies waiting for their chunks to be taken fail with the session's error: nothing more is sent.
            current?.Fail(_closed!);
            while (_outgoing.Reader.TryRead(out var item))
            {
                (item as CopyChunk)?.Fail(_closed!);
            }
        }
    }

    private async Task ReadLoopAsync()
    {
        // Flows, with the execution context, into the deserializer that the reads below run.
        Reading.Value = this;
        try
        {
            await foreach (var reply in _call.ResponseStream.ReadAllAsync().ConfigureAwait(false))
            {
                if (reply is ReceivedData data)
                {
                    data.Dispatch(_target);
                }
                else if (reply == Delivered)
                {
                    continue;
                }
                else
                {
                    Dispatch((OpReply)reply);
                }
            }

            Close(new GpuPoolException(ErrorCode.Unavailable, "the device session is closed"));
        }
        catch (RpcException ex)
        {
            Close(FromCall(ex));
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or OperationCanceledException)
        {
            Close(new GpuPoolException(ErrorCode.Unavailable, $"device session: the connection to {_peer} failed ({ex.Message})", inner: ex));
        }
    }

    /// <summary>
    /// The session is over: the first error is the one reported; nothing more is queued, and the call is cancelled
    /// so that a write waiting on flow control fails now and lets its copy go.
    /// </summary>
    private void Close(GpuPoolException error)
    {
        if (Interlocked.CompareExchange(ref _closed, error, null) is null)
        {
            _target.OnClosed(error);
        }

        _outgoing.Writer.TryComplete();
        try
        {
            _callCts.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Disposed: the call is over already.
        }
    }

    private void Dispatch(OpReply reply)
    {
        if (reply.Error is { } error)
        {
            _target.OnError(reply.Seq, GpuPoolException.FromProto(error));
            return;
        }

        switch (reply.ResultCase)
        {
            case OpReply.ResultOneofCase.Data:
                _target.OnData(reply.Seq, reply.Data.Offset, new ReadOnlySequence<byte>(reply.Data.Bytes.Memory), reply.Data.LastChunk);
                break;
            case OpReply.ResultOneofCase.Session:
                _target.OnValue(reply.Seq, new ReplyValue(0, 0, reply.Session));
                break;
            case OpReply.ResultOneofCase.DevicePtr:
                _target.OnValue(reply.Seq, new ReplyValue(reply.DevicePtr, 0, null));
                break;
            case OpReply.ResultOneofCase.Handle:
                _target.OnValue(reply.Seq, new ReplyValue(reply.Handle, 0, null));
                break;
            case OpReply.ResultOneofCase.ElapsedMs:
                _target.OnValue(reply.Seq, new ReplyValue(BitConverter.SingleToUInt32Bits(reply.ElapsedMs), 0, null));
                break;
            case OpReply.ResultOneofCase.Ready:
                _target.OnValue(reply.Seq, new ReplyValue(reply.Ready ? 1UL : 0, 0, null));
                break;
            case OpReply.ResultOneofCase.MemInfo:
                _target.OnValue(reply.Seq, new ReplyValue(reply.MemInfo.FreeBytes, reply.MemInfo.TotalBytes, null));
                break;
            case OpReply.ResultOneofCase.Global:
                _target.OnValue(reply.Seq, new ReplyValue(reply.Global.DevicePtr, reply.Global.Bytes, null));
                break;
            case OpReply.ResultOneofCase.Usage:
                _target.OnValue(reply.Seq, new ReplyValue(reply.Usage.DeviceTimeNs, reply.Usage.RecentSharePpm, null));
                break;
            case OpReply.ResultOneofCase.Notice:
                _target.OnNotice(reply.Notice);
                break;
            default:
                _target.OnValue(reply.Seq, default);
                break;
        }
    }

    /// <summary>
    /// The error a failed call stands for. A connection the broker closed under the call (it stopped, or the
    /// network broke) comes out of grpc-dotnet as Internal; it is Unavailable, not a bug of ours.
    /// </summary>
    private GpuPoolException FromCall(RpcException ex)
        => ex.StatusCode == StatusCode.Internal && ex.Trailers.GetValueBytes(GpuPoolException.TrailerKey) is null && ex.Status.DebugException is IOException
            ? new GpuPoolException(ErrorCode.Unavailable, $"device session: the connection to {_peer} was closed ({ex.Status.DebugException.Message})", inner: ex)
            : GpuPoolException.FromRpc(ex, "device session", _peer);

    private static void SerializeOp(object message, SerializationContext context)
    {
        var chunk = message as CopyChunk;
        var request = chunk?.Request ?? (OpRequest)message;
        context.SetPayloadLength(request.CalculateSize());
        request.WriteTo(context.GetBufferWriter());
        context.Complete();
        chunk?.Done();
    }

    /// <summary>
    /// A chunk of a copy to the host is handed to the session inside the deserializer, straight from the message
    /// buffer into the caller's destination, when the deserializer can tell whose read it runs in: the reader
    /// loop's transport, which reaches it through the execution context. In order: the reader takes one message
    /// at a time. Without it (the context did not flow) the chunk goes through a pooled array.
    /// </summary>
    private static readonly AsyncLocal<GrpcSessionTransport?> Reading = new();

    /// <summary>What the deserializer returns for a chunk it has already handed to the session.</summary>
    private static readonly object Delivered = new();

    private static object DeserializeReply(DeserializationContext context)
    {
        var message = context.PayloadAsReadOnlySequence();
        if (!GrpcOpStream.TryReadCopyData(message, out var seq, out var offset, out var last, out var data))
        {
            return OpReply.Parser.ParseFrom(message);
        }

        if (Reading.Value is { } transport)
        {
            transport._target.OnData(seq, offset, data, last);
            return Delivered;
        }

        var length = (int)data.Length;
        var array = length == 0 ? [] : ArrayPool<byte>.Shared.Rent(length);
        data.CopyTo(array);
        return new ReceivedData(seq, offset, last, array, length);
    }

    public override async ValueTask DisposeAsync()
    {
        _outgoing.Writer.TryComplete();
        try
        {
            await _writer.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            await _reader.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // The broker did not close its side in time; cancel the call below.
        }

        await _callCts.CancelAsync().ConfigureAwait(false);
        _call.Dispose();
        _callCts.Dispose();
    }

    /// <summary>A chunk of a copy to the device, referring to the caller's bytes until the writer has serialized them.</summary>
    private sealed class CopyChunk(OpRequest request)
    {
        private const int Queued = 0, Taken = 1, Withdrawn = 2;
        private readonly TaskCompletionSource _serialized = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _state;

        public OpRequest Request => request;

        /// <summary>Completes once the caller's bytes are no longer needed; fails when they were not sent.</summary>
        public Task Serialized => _serialized.Task;

        /// <summary>The writer takes the chunk to send it; false when its caller withdrew it first.</summary>
        public bool TryTake() => Interlocked.CompareExchange(ref _state, Taken, Queued) == Queued;

        public void TryWithdraw(CancellationToken token)
        {
            if (Interlocked.CompareExchange(ref _state, Withdrawn, Queued) == Queued)
            {
                _serialized.TrySetCanceled(token);
            }
        }

        public void Done() => _serialized.TrySetResult();

        public void Fail(GpuPoolException error) => _serialized.TrySetException(error);
    }

    /// <summary>A chunk of a copy to the host, its bytes in a pooled array until dispatched.</summary>
    private sealed class ReceivedData(ulong seq, ulong offset, bool last, byte[] array, int length)
    {
        public void Dispatch(IReplyTarget target)
        {
            try
            {
                target.OnData(seq, offset, new ReadOnlySequence<byte>(array, 0, length), last);
            }
            finally
            {
                if (array.Length > 0)
                {
                    ArrayPool<byte>.Shared.Return(array);
                }
            }
        }
    }
}
