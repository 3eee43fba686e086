using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using System.Threading.Tasks.Sources;
using GpuPool.Broker.Sessions;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Broker.Transport.FastPath;

/// <summary>
/// Replies on a fast-path connection. Replies queue from any thread as values (no message objects); one writer task
/// turns them into frames and flushes only when the queue is empty, so replies that pile up while a flush is in flight
/// leave in one write. The session's own error (seq 0: the lease ended, a protocol error) is the last frame written:
/// whatever is queued after it, from any thread, is dropped.
/// <para>
/// Device-to-host chunks of 64 KiB and more go straight from device memory to the socket
/// (<see cref="IDirectReplies"/>): the device stream, which holds the copy, waits while the writer sends them, as
/// a copy engine waits for the bus, so the bytes are copied once, by the kernel, and memory stays bounded. Smaller
/// chunks are copied once into a staging block (the device may overwrite them as soon as the copy op returns),
/// then once into the connection's buffers; at most <see cref="StagedChunks"/> of them wait at a time.
/// </para>
/// </summary>
internal sealed class FrameReplies : ISessionReplies, IDirectReplies
{
    private const int StagedChunks = 16;

    /// <summary>
    /// How long a session that has ended lets a direct send in progress finish before cancelling it: a client that
    /// reads takes a chunk in far less, and one that does not must not hold the lease's memory.
    /// </summary>
    private static readonly TimeSpan AbandonGrace = TimeSpan.FromSeconds(1);

    private readonly Channel<Item> _items = Channel.CreateUnbounded<Item>(new UnboundedChannelOptions { SingleReader = true });
    private readonly SemaphoreSlim _staging = new(StagedChunks, StagedChunks);
    private readonly PipeWriter _output;
    private readonly FrameWire _wire;
    private readonly BlockMemoryPool _blocks;
    private readonly CancellationToken _cancellation;
    private readonly CancellationTokenSource _sendCancel;
    private readonly CancellationTokenSource _failed = new();

    // The direct chunks in flight, each in a slot of its own: filled by the device stream before posting, read by the
    // writer, which sends them in the order posted, so the next is on its way while the device stream hears of the last.
    private readonly DirectSlot[] _slots = [new(), new(), new(), new()];
    private readonly SemaphoreSlim _directOwner = new(1, 1);
    private readonly ArrayBufferWriter<byte> _directHeader = new(FrameCodec.HeaderSize + 16);
    private readonly PointerMemory _directBytes = new();

    /// <param name="output">The connection's writer.</param>
    /// <param name="wire">The connection (its socket, or TLS over it), which direct chunks are sent on once <paramref name="output"/> is flushed.</param>
    /// <param name="blocks">Where small device-to-host chunks are staged; a chunk larger than a block (a reply
    /// chunk size configured past it) is staged in an ArrayPool array instead.</param>
    /// <param name="writing">Ends the writer (the connection is closing).</param>
    /// <param name="session">Ends the session (the lease ended, the connection closed): a device stream
    /// waiting for a staging buffer or a direct send then gives up instead of holding the lease's context open.</param>
    public FrameReplies(PipeWriter output, FrameWire wire, BlockMemoryPool blocks, CancellationToken writing, CancellationToken session)
    {
        _output = output;
        _wire = wire;
        _blocks = blocks;
        _cancellation = session;
        _sendCancel = CancellationTokenSource.CreateLinkedTokenSource(writing);
        session.UnsafeRegister(static r => ((FrameReplies)r!).OnSessionEnded(), this);
        Completion = WriteAsync(writing);
    }

    private enum ItemKind : byte
    {
        Reply,
        Error,
        Session,
        Notice,
        Data,
        Direct,
    }

    /// <summary>
    /// One frame to write: a reply's two numbers (<see cref="A"/>, <see cref="B"/>); an error, session description or
    /// notice (<see cref="Message"/>); a staged chunk of copy data at offset <see cref="A"/> in <see cref="Block"/> or
    /// <see cref="Array"/>; or a direct chunk's slot.
    /// </summary>
    private readonly record struct Item(ItemKind Kind, ulong Seq, ulong A = 0, ulong B = 0, object? Message = null, IMemoryOwner<byte>? Block = null, byte[]? Array = null, int Length = 0, bool Last = false, DirectSlot? Direct = null)
    {
        public bool IsData => Kind == ItemKind.Data;

        public ReadOnlySpan<byte> Bytes => Block is not null ? Block.Memory.Span[..Length] : Array.AsSpan(0, Length);
    }

    public Task Completion { get; }

    /// <summary>Cancelled when the writer could not write (the peer went away, or a send was cancelled mid-frame): the connection is unusable.</summary>
    public CancellationToken Failed => _failed.Token;

    public int DirectThreshold => 64 * 1024;

    public int DirectSlots => _slots.Length;

    public bool SessionEnded => _cancellation.IsCancellationRequested;

    public void Reply(ulong seq, ReplyKind kind, ulong value = 0, ulong value2 = 0) => _items.Writer.TryWrite(new Item(ItemKind.Reply, seq, value, value2));

    public void Error(ulong seq, Error error) => _items.Writer.TryWrite(new Item(ItemKind.Error, seq, Message: error));

    public void Session(ulong seq, SessionInfo info) => _items.Writer.TryWrite(new Item(ItemKind.Session, seq, Message: info));

    public void Notice(Notice notice) => _items.Writer.TryWrite(new Item(ItemKind.Notice, 0, Message: notice));

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
            ? new Item(ItemKind.Data, seq, offset, Block: _blocks.Rent(bytes.Length), Length: bytes.Length, Last: last)
            : new Item(ItemKind.Data, seq, offset, Array: ArrayPool<byte>.Shared.Rent(bytes.Length), Length: bytes.Length, Last: last);
        bytes.CopyTo(item.Block is { } block ? block.Memory.Span : item.Array);
        if (!_items.Writer.TryWrite(item))
        {
            Release(item);
        }
    }

    public bool PostDirect(int slot, ulong seq, ulong offset, nint bytes, int length, bool last)
    {
        if (_cancellation.IsCancellationRequested || _failed.IsCancellationRequested)
        {
            return false;
        }

        var direct = _slots[slot];
        direct.Post(seq, offset, bytes, length, last);
        if (!_items.Writer.TryWrite(new Item(ItemKind.Direct, seq, offset, Length: length, Last: last, Direct: direct)))
        {
            direct.End(DirectSlot.NotSent);
            return false;
        }

        return true;
    }

    public bool WaitDirect(int slot) => _slots[slot].Wait();

    public async ValueTask<bool> AcquireDirectAsync()
    {
        try
        {
            await _directOwner.WaitAsync(_cancellation).ConfigureAwait(false);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public bool AcquireDirect()
    {
        try
        {
            _directOwner.Wait(_cancellation);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public void ReleaseDirect() => _directOwner.Release();

    public ValueTask<bool> WaitDirectAsync(int slot) => _slots[slot].WaitAsync();

    /// <summary>
    /// The session is over. Chunks the writer has not started on are given back at once; one it is sending gets a
    /// moment to go (a client that reads takes a chunk in far less), then the send is cancelled, which cuts the
    /// frame and so ends the connection: the device must not wait on a client that stopped reading.
    /// </summary>
    private void OnSessionEnded()
    {
        foreach (var slot in _slots)
        {
            slot.GiveBack();
        }

        try
        {
            _sendCancel.CancelAfter(AbandonGrace);
        }
        catch (ObjectDisposedException)
        {
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
                    if (item.Direct is { } direct)
                    {
                        await SendDirectAsync(direct, cancellationToken).ConfigureAwait(false);
                        unflushed = 0;
                    }
                    else if (item.IsData)
                    {
                        OpFrames.WriteData(_output, item.Seq, item.A, item.Bytes, item.Last);
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
                        WriteReply(item);
                        if (item.Kind == ItemKind.Error && item.Seq == 0)
                        {
                            // The session's own error is its last word: the connection closes after it.
                            _items.Writer.TryComplete();
                            await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
                            return;
                        }
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
        catch (Exception ex) when (ex is OperationCanceledException or IOException or InvalidOperationException or SocketException or ObjectDisposedException)
        {
            // The connection is gone; the reader side ends the session.
            _failed.Cancel();
        }
        finally
        {
            // Return what is still queued so pooled buffers are not lost, and let a device stream waiting on a direct chunk go.
            _items.Writer.TryComplete();
            while (reader.TryRead(out var item))
            {
                if (item.IsData)
                {
                    Release(item);
                }
            }

            foreach (var slot in _slots)
            {
                slot.GiveBack();
            }
        }
    }

    private void WriteReply(in Item item)
    {
        switch (item.Kind)
        {
            case ItemKind.Reply:
                OpFrames.WriteReply(_output, item.Seq, item.A, item.B);
                break;
            case ItemKind.Error:
                OpFrames.WriteError(_output, item.Seq, (Error)item.Message!);
                break;
            case ItemKind.Session:
                OpFrames.WriteSessionInfo(_output, item.Seq, (SessionInfo)item.Message!);
                break;
            default:
                OpFrames.WriteNotice(_output, (Notice)item.Message!);
                break;
        }
    }

    /// <summary>
    /// Sends the posted chunk straight from the device's memory: what is queued before it goes first, then its
    /// header, then its bytes. A failure or a cancelled send leaves a frame cut short, so the writer stops.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SendDirectAsync(DirectSlot direct, CancellationToken cancellationToken)
    {
        if (!direct.TryStart())
        {
            // Given back: the session ended before the writer got to it.
            return;
        }

        var state = DirectSlot.NotSent;
        try
        {
            var flush = await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
            if (flush.IsCompleted || flush.IsCanceled)
            {
                throw new OperationCanceledException("the connection's writer has been completed");
            }

            Span<byte> scratch = stackalloc byte[12];
            _directHeader.ResetWrittenCount();
            FrameCodec.WriteHeader(_directHeader, FrameType.Data, direct.Seq, new FixedBuilder(scratch).U64(direct.Offset).U32(direct.Last ? 1u : 0u).Written, direct.Length);
            await SendAllAsync(_directHeader.WrittenMemory).ConfigureAwait(false);
            _directBytes.Reset(direct.Pointer, direct.Length);
            await SendAllAsync(_directBytes.Memory).ConfigureAwait(false);
            state = DirectSlot.Sent;
        }
        finally
        {
            _directBytes.Reset(0, 0);
            direct.End(state);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SendAllAsync(ReadOnlyMemory<byte> bytes)
    {
        await _wire.SendAsync(bytes, _sendCancel.Token).ConfigureAwait(false);
    }

    /// <summary>
    /// One chunk sent straight from the device's memory: posted by the device stream, sent by the writer or given back
    /// when the session ends first. Whoever ends it completes both the event (for a stream on a thread of its own) and
    /// the task source (for one that waits without a thread), once per post.
    /// </summary>
    private sealed class DirectSlot : IValueTaskSource<bool>
    {
        public const int Idle = 0, Posted = 1, Sending = 2, Sent = 3, NotSent = 4;

        private readonly ManualResetEventSlim _done = new(true);
        private ManualResetValueTaskSourceCore<bool> _sent = new() { RunContinuationsAsynchronously = true };
        private int _state;
        private int _ended = 1;

        // Set as End's last step: Post waits for it, so a waiter woken by the event cannot post again (and reset the
        // task source) while End is still completing the previous post's task source.
        private int _settled = 1;

        public ulong Seq { get; private set; }

        public ulong Offset { get; private set; }

        public nint Pointer { get; private set; }

        public int Length { get; private set; }

        public bool Last { get; private set; }

        public void Post(ulong seq, ulong offset, nint pointer, int length, bool last)
        {
            Seq = seq;
            Offset = offset;
            Pointer = pointer;
            Length = length;
            Last = last;
            if (Volatile.Read(ref _settled) == 0)
            {
                SpinWait.SpinUntil(() => Volatile.Read(ref _settled) == 1);
            }

            Volatile.Write(ref _settled, 0);
            _done.Reset();
            _sent.Reset();
            Volatile.Write(ref _ended, 0);
            Volatile.Write(ref _state, Posted);
        }

        /// <summary>The writer takes the chunk to send it; false when it was given back.</summary>
        public bool TryStart() => Interlocked.CompareExchange(ref _state, Sending, Posted) == Posted;

        /// <summary>Gives back a chunk the writer has not started on (the session ended, or the writer stopped).</summary>
        public void GiveBack()
        {
            if (Interlocked.CompareExchange(ref _state, NotSent, Posted) == Posted)
            {
                End(NotSent);
            }
        }

        public void End(int state)
        {
            if (Interlocked.Exchange(ref _ended, 1) == 0)
            {
                Volatile.Write(ref _state, state);
                _sent.SetResult(state == Sent);
                _done.Set();
                Volatile.Write(ref _settled, 1);
            }
        }

        public bool Wait()
        {
            _done.Wait();
            return Volatile.Read(ref _state) is Idle or Sent;
        }

        public ValueTask<bool> WaitAsync() => new(this, _sent.Version);

        public bool GetResult(short token) => _sent.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => _sent.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
            => _sent.OnCompleted(continuation, state, token, flags);
    }
}
