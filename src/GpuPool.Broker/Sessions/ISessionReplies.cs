using System.Threading.Channels;
using Google.Protobuf;
using GpuPool.Protocol.V1;
using Grpc.Core;

namespace GpuPool.Broker.Sessions;

/// <summary>
/// Where a session's replies go, whatever the transport. Thread-safe: device-to-host data arrives on
/// device threads while the session's reader answers other ops.
/// </summary>
internal interface ISessionReplies
{
    void Reply(OpReply reply);

    /// <summary>A chunk of a device-to-host copy; the bytes are valid only during the call.</summary>
    void Data(ulong seq, ulong offset, ReadOnlySpan<byte> bytes, bool last);

    /// <summary>No more replies will come; <see cref="Completion"/> ends once the queued ones are written.</summary>
    void Complete();

    Task Completion { get; }
}

/// <summary>Replies on the gRPC op stream: one writer task, because the stream takes one write at a time.</summary>
internal sealed class GrpcReplies : ISessionReplies
{
    private readonly Channel<OpReply> _replies = Channel.CreateUnbounded<OpReply>(new UnboundedChannelOptions { SingleReader = true });

    public GrpcReplies(IServerStreamWriter<OpReply> stream, CancellationToken cancellationToken)
        => Completion = WriteAsync(stream, cancellationToken);

    public Task Completion { get; }

    public void Reply(OpReply reply) => _replies.Writer.TryWrite(reply);

    public void Data(ulong seq, ulong offset, ReadOnlySpan<byte> bytes, bool last)
        => Reply(new OpReply { Seq = seq, Data = new DataChunk { Offset = offset, Bytes = ByteString.CopyFrom(bytes), LastChunk = last } });

    public void Complete() => _replies.Writer.TryComplete();

    private async Task WriteAsync(IServerStreamWriter<OpReply> stream, CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var reply in _replies.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                await stream.WriteAsync(reply, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or InvalidOperationException)
        {
            // The client went away; the reader side notices too and ends the session.
        }
    }
}
