using System.Buffers;
using System.IO.Pipelines;
using System.Threading.Channels;
using GpuPool.Broker.Sessions;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Broker.Transport;

/// <summary>
/// Replies on a fast-path connection. Replies queue from any thread; one writer task turns them into
/// frames and flushes only when the queue is empty, so replies that pile up while a flush is in flight
/// leave in one write. Device-to-host bytes are copied once into a staging block (the device may
/// overwrite them as soon as the copy op returns), then once into the connection's buffers. At most
/// <see cref="StagedChunks"/> chunks wait at a time: a large copy to the host holds its stream until the
/// connection has taken the earlier chunks, as a copy engine waits for the bus, so memory stays bounded
/// and the staging blocks, from the broker's block pool, are reused instead of allocated.
/// </summary>
internal sealed class FrameReplies : ISessionReplies
{
    private const int StagedChunks = 16;

    private readonly Channel<Item> _items = Channel.CreateUnbounded<Item>(new UnboundedChannelOptions { SingleReader = true });
    private readonly SemaphoreSlim _staging = new(StagedChunks, StagedChunks);
    private readonly PipeWriter _output;
    private readonly BlockMemoryPool _blocks;
    private readonly CancellationToken _cancellation;

    /// <param name="output">The connection's writer.</param>
    /// <param name="blocks">Where device-to-host chunks are staged; a chunk larger than a block (a reply
    /// chunk size configured past it) is staged in an ArrayPool array instead.</param>
    /// <param name="writing">Ends the writer (the connection is closing).</param>
    /// <param name="session">Ends the session (the lease ended, the connection closed): a device stream
    /// waiting for a staging buffer then gives up instead of holding the lease's context open.</param>
    public FrameReplies(PipeWriter output, BlockMemoryPool blocks, CancellationToken writing, CancellationToken session)
    {
        _output = output;
        _blocks = blocks;
        _cancellation = session;
        Completion = WriteAsync(writing);
    }

    /// <summary>A reply, or a staged chunk of copy data in <see cref="Block"/> or <see cref="Array"/>.</summary>
    private readonly record struct Item(OpReply? Reply, ulong Seq, ulong Offset, IMemoryOwner<byte>? Block, byte[]? Array, int Length, bool Last)
    {
        public bool IsData => Block is not null || Array is not null;

        public ReadOnlySpan<byte> Bytes => Block is not null ? Block.Memory.Span[..Length] : Array.AsSpan(0, Length);
    }

    public Task Completion { get; }

    public void Reply(OpReply reply) => _items.Writer.TryWrite(new Item(reply, reply.Seq, 0, null, null, 0, false));

    public void Data(ulong seq, ulong offset, ReadOnlySpan<byte> bytes, bool last)
    {
        try
        {
            // Blocks the device stream (not the session's reader) while the connection is behind.
            _staging.Wait(_cancellation);
        }
        catch (OperationCanceledException)
        {
            return;
        }

        var item = bytes.Length <= _blocks.BlockSize
            ? new Item(null, seq, offset, _blocks.Rent(bytes.Length), null, bytes.Length, last)
            : new Item(null, seq, offset, null, ArrayPool<byte>.Shared.Rent(bytes.Length), bytes.Length, last);
        bytes.CopyTo(item.Block is { } block ? block.Memory.Span : item.Array);
        if (!_items.Writer.TryWrite(item))
        {
            Release(item);
        }
    }

    private void Release(in Item item)
    {
        item.Block?.Dispose();
        if (item.Array is { } array)
        {
            ArrayPool<byte>.Shared.Return(array);
        }

        _staging.Release();
    }

    public void Complete() => _items.Writer.TryComplete();

    private async Task WriteAsync(CancellationToken cancellationToken)
    {
        var reader = _items.Reader;

        // The reader waits without a token, so the channel can hand it the same waiter every time (a
        // cancellable wait allocates one per wait); cancelling completes the channel to wake it instead.
        using var stop = cancellationToken.UnsafeRegister(static items => ((Channel<Item>)items!).Writer.TryComplete(), _items);
        try
        {
            while (await reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
            {
                var unflushed = 0L;
                while (!cancellationToken.IsCancellationRequested && reader.TryRead(out var item))
                {
                    if (item.IsData)
                    {
                        OpFrames.WriteData(_output, item.Seq, item.Offset, item.Bytes, item.Last);
                        Release(item);
                        unflushed += item.Length;

                        // Bulk data is flushed as it goes, so the pipe's backpressure holds instead of a copy piling up.
                        if (unflushed >= 1 << 20)
                        {
                            unflushed = 0;
                            var partial = await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
                            if (partial.IsCompleted || partial.IsCanceled)
                            {
                                return;
                            }
                        }
                    }
                    else
                    {
                        OpFrames.WriteReply(_output, item.Reply!);
                    }
                }

                cancellationToken.ThrowIfCancellationRequested();
                var flush = await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
                if (flush.IsCompleted || flush.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or InvalidOperationException)
        {
            // The connection is gone; the reader side ends the session.
        }
        finally
        {
            // Return what is still queued so pooled buffers are not lost.
            _items.Writer.TryComplete();
            while (reader.TryRead(out var item))
            {
                if (item.IsData)
                {
                    Release(item);
                }
            }
        }
    }
}
