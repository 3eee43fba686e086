using System.Buffers;
using System.Threading.Channels;
using Google.Protobuf;
using GpuPool.Broker.Sessions;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.V1;
using Grpc.Core;

namespace GpuPool.Broker.Transport.Grpc;

/// <summary>
/// Replies on the gRPC op stream, as session.proto's messages: one writer task, because the stream takes one write at a
/// time. Device-to-host bytes are copied once into a pooled staging block (the device may overwrite them as soon as the
/// copy op returns) and serialized from it; at most <see cref="StagedChunks"/> chunks wait at a time, so a large copy
/// to the host holds its device stream while the client is behind instead of piling up in the broker.
/// </summary>
internal sealed class GrpcReplies : ISessionReplies
{
    internal const int StagedChunks = 16;

    private readonly Channel<Item> _replies = Channel.CreateUnbounded<Item>(new UnboundedChannelOptions { SingleReader = true });
    private readonly SemaphoreSlim _staging = new(StagedChunks, StagedChunks);
    private readonly CancellationToken _cancellation;

    /// <param name="stream">The call's reply stream.</param>
    /// <param name="cancellationToken">Ends the session: the writer stops, and a device stream waiting for a staging slot gives up.</param>
    public GrpcReplies(IServerStreamWriter<OpReply> stream, CancellationToken cancellationToken)
    {
        _cancellation = cancellationToken;
        Completion = WriteAsync(stream, cancellationToken);
    }

    /// <summary>A reply; a chunk of copy data also holds a staging slot and, unless empty, the block its bytes are in.</summary>
    private readonly record struct Item(OpReply Reply, IMemoryOwner<byte>? Block, bool Staged);

    public Task Completion { get; }

    public void Reply(ulong seq, ReplyKind kind, ulong value = 0, ulong value2 = 0)
    {
        var reply = new OpReply { Seq = seq };
        switch (kind)
        {
            case ReplyKind.DevicePtr:
                reply.DevicePtr = value;
                break;
            case ReplyKind.Handle:
                reply.Handle = value;
                break;
            case ReplyKind.Ready:
                reply.Ready = value != 0;
                break;
            case ReplyKind.ElapsedMs:
                reply.ElapsedMs = BitConverter.UInt32BitsToSingle((uint)value);
                break;
            case ReplyKind.MemInfo:
                reply.MemInfo = new MemInfo { FreeBytes = value, TotalBytes = value2 };
                break;
            case ReplyKind.Global:
                reply.Global = new ModuleGlobal { DevicePtr = value, Bytes = value2 };
                break;
            case ReplyKind.Usage:
                reply.Usage = new SessionUsage { DeviceTimeNs = value, RecentSharePpm = (uint)value2 };
                break;
            default:
                reply.Done = new Empty();
                break;
        }

        Write(reply);
    }

    public void Error(ulong seq, Error error) => Write(new OpReply { Seq = seq, Error = error });

    public void Session(ulong seq, SessionInfo info) => Write(new OpReply { Seq = seq, Session = info });

    public void Notice(Notice notice) => Write(new OpReply { Notice = notice });

    private void Write(OpReply reply) => _replies.Writer.TryWrite(new Item(reply, null, false));

    public void Data(ulong seq, ulong offset, ReadOnlySpan<byte> bytes, bool last)
    {
        try
        {
            // Blocks the device stream (not the session's reader) while the client is behind.
            _staging.Wait(_cancellation);
        }
        catch (OperationCanceledException)
        {
            return;
        }

        var block = bytes.IsEmpty ? null : GrpcOpStreamMethod.Rent(bytes.Length);
        var data = ByteString.Empty;
        if (block is not null)
        {
            var memory = block.Memory[..bytes.Length];
            bytes.CopyTo(memory.Span);
            data = UnsafeByteOperations.UnsafeWrap(memory);
        }

        var item = new Item(new OpReply { Seq = seq, Data = new DataChunk { Offset = offset, Bytes = data, LastChunk = last } }, block, true);
        if (!_replies.Writer.TryWrite(item))
        {
            Release(item);
        }
    }

    public void Complete() => _replies.Writer.TryComplete();

    private void Release(in Item item)
    {
        item.Block?.Dispose();
        if (item.Staged)
        {
            _staging.Release();
        }
    }

    private async Task WriteAsync(IServerStreamWriter<OpReply> stream, CancellationToken cancellationToken)
    {
        var reader = _replies.Reader;
        try
        {
            await foreach (var item in reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                try
                {
                    // Serialized into the response before the write completes; the staged bytes are free after it.
                    await stream.WriteAsync(item.Reply, cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    Release(item);
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or InvalidOperationException)
        {
            // The client went away; the reader side notices too and ends the session.
        }
        finally
        {
            // Return what is still queued so pooled blocks are not lost.
            _replies.Writer.TryComplete();
            while (reader.TryRead(out var item))
            {
                Release(item);
            }
        }
    }
}
