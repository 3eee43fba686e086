using System.Buffers;
using System.Threading.Channels;
using Google.Protobuf;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using Grpc.Core;
using Grpc.Net.Client;

namespace GpuPool.Client.Transport;

/// <summary>The portable transport: ops and replies as protobuf messages on one gRPC bidirectional stream.</summary>
internal sealed class GrpcSessionTransport : SessionTransport
{
    private readonly AsyncDuplexStreamingCall<OpRequest, OpReply> _call;
    private readonly CancellationTokenSource _callCts = new();
    private readonly Channel<OpRequest> _outgoing = Channel.CreateBounded<OpRequest>(new BoundedChannelOptions(256) { SingleReader = true });
    private IReplyTarget _target = null!;
    private Task _reader = Task.CompletedTask;
    private Task _writer = Task.CompletedTask;

    public GrpcSessionTransport(GrpcChannel channel, int maxMessageBytes)
    {
        _call = new Protocol.V1.DeviceSession.DeviceSessionClient(channel).Open(cancellationToken: _callCts.Token);
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

    public override ValueTask SendAsync(OpRequest request, CancellationToken cancellationToken)
        => _outgoing.Writer.TryWrite(request) ? default : _outgoing.Writer.WriteAsync(request, cancellationToken);

    public override ValueTask SendCopyToDeviceAsync(ulong seq, ulong ptr, ulong stream, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        => SendAsync(new OpRequest { Seq = seq, MemcpyHtod = new MemcpyHtoD { Ptr = ptr, Stream = stream, Data = ByteString.CopyFrom(data.Span) } }, cancellationToken);

    private async Task WriteLoopAsync()
    {
        try
        {
            await foreach (var request in _outgoing.Reader.ReadAllAsync().ConfigureAwait(false))
            {
                await _call.RequestStream.WriteAsync(request).ConfigureAwait(false);
            }

            await _call.RequestStream.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException or IOException or OperationCanceledException)
        {
            // A write fails once the broker has ended the call, and then only says "cancelled"; the status the
            // broker ended it with (lease ended, message too large) reaches the reader, which reports it.
            // Ours is the fallback for a reader that does not finish.
            await Task.WhenAny(_reader, Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
            _target.OnClosed(ex is RpcException rpc
                ? FromCall(rpc)
                : new GpuPoolException(ErrorCode.Unavailable, $"device session: sending to the broker failed ({ex.Message})", inner: ex));
        }
    }

    private async Task ReadLoopAsync()
    {
        try
        {
            await foreach (var reply in _call.ResponseStream.ReadAllAsync().ConfigureAwait(false))
            {
                Dispatch(reply);
            }

            _target.OnClosed(new GpuPoolException(ErrorCode.Unavailable, "the device session is closed"));
        }
        catch (RpcException ex)
        {
            _target.OnClosed(FromCall(ex));
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or OperationCanceledException)
        {
            _target.OnClosed(new GpuPoolException(ErrorCode.Unavailable, $"device session: the connection to the broker failed ({ex.Message})", inner: ex));
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
    private static GpuPoolException FromCall(RpcException ex)
        => ex.StatusCode == StatusCode.Internal && ex.Trailers.GetValueBytes(GpuPoolException.TrailerKey) is null && ex.Status.DebugException is IOException
            ? new GpuPoolException(ErrorCode.Unavailable, $"device session: the connection to the broker was closed ({ex.Status.DebugException.Message})", inner: ex)
            : GpuPoolException.FromRpc(ex, "device session");

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
}
