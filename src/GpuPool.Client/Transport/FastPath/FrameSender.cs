using System.Buffers;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Client.Transport.FastPath;

/// <summary>
/// A connection's one sender. Small frames are appended to a batch that is written whenever the wire is free, so frames
/// written while a send is in flight leave together; a large payload is sent straight from the caller's memory (no
/// staging copy), after whatever was batched before it, and its caller is let go once the kernel has taken the bytes.
/// A sender that falls behind by <see cref="HighWater"/> bytes makes callers wait, so memory stays bounded.
/// </summary>
internal sealed class FrameSender
{
    /// <summary>Payloads up to this size are batched (one copy into the batch); larger ones go straight from the caller's memory.</summary>
    public const int DirectThreshold = 64 * 1024;

    /// <summary>
    /// A batch buffer's starting size: room for the largest batched copy (the tail chunk of a large copy may be one)
    /// beside other frames, so that a batch grows only while the wire is busy, not per copy.
    /// </summary>
    private const int BatchCapacity = 2 * DirectThreshold;

    private const int HighWater = 8 << 20;

    private readonly FrameConnection _connection;
    private readonly object _gate = new();
    private readonly Queue<Segment> _segments = new();
    private readonly Stack<ArrayBufferWriter<byte>> _spareWriters = new();
    private readonly ArrayBufferWriter<byte>[] _bulkHeaders = [new(FrameCodec.HeaderSize + 16), new(FrameCodec.HeaderSize + 16)];
    private readonly SendSignal[] _bulkSent = [new(), new()];
    private readonly SendSignal _wake = new();
    private ArrayBufferWriter<byte> _batch = new(BatchCapacity);
    private bool _sending;
    private bool _closing;
    private bool _done;
    private TaskCompletionSource? _drained;
    private GpuPoolException? _failed;

    public FrameSender(FrameConnection connection) => _connection = connection;

    /// <summary>How many large payloads a caller may have in flight at once, one per slot.</summary>
    public const int BulkSlots = 2;

    private readonly record struct Segment(ReadOnlyMemory<byte> Bytes, ArrayBufferWriter<byte>? Writer, SendSignal? Sent);

    public Task Completion { get; private set; } = Task.CompletedTask;

    public void Start() => Completion = Task.Run(SendLoopAsync);

    /// <summary>Queues an op with a small payload; completes at once unless the sender is far behind.</summary>
    public ValueTask SendAsync<TOp>(ulong seq, in TOp op, ReadOnlySpan<byte> payload, CancellationToken cancellationToken)
        where TOp : struct, IOp<TOp>
    {
        lock (_gate)
        {
            ThrowIfFailed();
            OpFrames.Write(_batch, seq, op, payload);
            return Kicked(cancellationToken);
        }
    }

    public ValueTask SendHelloAsync(ulong seq, string leaseId, string token, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            ThrowIfFailed();
            OpFrames.WriteHello(_batch, seq, leaseId, token);
            return Kicked(cancellationToken);
        }
    }

    public void SendJoin(ulong session, string leaseId, string token)
    {
        lock (_gate)
        {
            ThrowIfFailed();
            StripeFrames.WriteJoin(_batch, session, leaseId, token);
            Kick();
        }
    }

    /// <summary>Queues the op frame of a striped copy (its chunks follow on the connections it names).</summary>
    public void SendStripedCopy(FrameType type, in StripedCopy copy)
    {
        lock (_gate)
        {
            ThrowIfFailed();
            StripeFrames.WriteCopy(_batch, type, copy);
            Kick();
        }
    }

    /// <summary>Queues a copy to the device whose payload is the caller's bytes (see <see cref="SendBulkAsync"/>).</summary>
    public ValueTask SendCopyAsync(ulong seq, in MemcpyHtoDOp op, ReadOnlyMemory<byte> data, int slot, CancellationToken cancellationToken)
    {
        Span<byte> scratch = stackalloc byte[16];
        var fields = new FixedBuilder(scratch);
        op.Write(ref fields);
        return SendBulkAsync(MemcpyHtoDOp.Type, seq, fields.Written, data, slot, cancellationToken);
    }

    /// <summary>Queues a chunk of a striped copy to the device, at <paramref name="offset"/> in the copy (see <see cref="SendBulkAsync"/>).</summary>
    public ValueTask SendChunkAsync(ulong seq, ulong offset, ReadOnlyMemory<byte> data, int slot)
    {
        Span<byte> scratch = stackalloc byte[8];
        return SendBulkAsync(FrameType.StripeChunk, seq, new FixedBuilder(scratch).U64(offset).Written, data, slot, CancellationToken.None);
    }

    /// <summary>
    /// Queues a frame whose payload is the caller's bytes; completes once they may be reused. Up to
    /// <see cref="DirectThreshold"/> they are copied into the batch. Larger ones are sent as they are: whatever is
    /// batched goes first, then this frame's header, then the bytes. Each of the <see cref="BulkSlots"/> has its own
    /// header buffer and signal, so nothing is allocated per chunk; a caller may have one frame in flight per slot and
    /// must await it before using the slot again. Once queued, the frame is not cancelled: half a frame would break the
    /// stream for every later op.
    /// </summary>
    private ValueTask SendBulkAsync(FrameType type, ulong seq, ReadOnlySpan<byte> fixedFields, ReadOnlyMemory<byte> data, int slot, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            ThrowIfFailed();
            if (data.Length <= DirectThreshold)
            {
                FrameCodec.Write(_batch, type, seq, fixedFields, data.Span);
                return Kicked(cancellationToken);
            }

            var header = _bulkHeaders[slot];
            header.ResetWrittenCount();
            FrameCodec.WriteHeader(header, type, seq, fixedFields, data.Length);
            CloseBatch();
            var sent = _bulkSent[slot].Reset();
            _segments.Enqueue(new Segment(header.WrittenMemory, null, null));
            _segments.Enqueue(new Segment(data, null, _bulkSent[slot]));
            Kick();
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
        var inFlight = new InFlight();
        GpuPoolException? failure = null;
        var at = 0;
        for (var i = 0; at < data.Length; i++)
        {
            var n = Math.Min(chunk, data.Length - at);
            var slot = i % BulkSlots;
            try
            {
                // The slot's previous chunk has gone before the slot is used again.
                sent.Value += await inFlight.SettleAsync(slot).ConfigureAwait(false);
                inFlight.Set(slot, SendCopyAsync(firstSeq + (ulong)i, new MemcpyHtoDOp(ptr + (ulong)at, stream), data.Slice(at, n), slot, cancellationToken), n);
            }
            catch (GpuPoolException ex)
            {
                failure = ex;
                break;
            }

            at += n;
        }

        // Both slots let go of the caller's memory before the copy returns, whatever happened.
        for (var slot = 0; slot < BulkSlots; slot++)
        {
            try
            {
                sent.Value += await inFlight.SettleAsync(slot).ConfigureAwait(false);
            }
            catch (GpuPoolException ex)
            {
                failure ??= ex;
            }
        }

        if (failure is not null)
        {
            throw failure;
        }
    }

    /// <summary>The chunks of one copy in flight, one per slot, and their lengths.</summary>
    private struct InFlight
    {
        private ValueTask _first, _second;
        private int _firstLength, _secondLength;

        public void Set(int slot, ValueTask sending, int length)
        {
            if (slot == 0)
            {
                (_first, _firstLength) = (sending, length);
            }
            else
            {
                (_second, _secondLength) = (sending, length);
            }
        }

        /// <summary>Waits for the slot's chunk (once); its length when it was sent, 0 for an empty slot.</summary>
        public ValueTask<int> SettleAsync(int slot)
        {
            var (pending, length) = slot == 0 ? (_first, _firstLength) : (_second, _secondLength);
            Set(slot, default, 0);
            return pending.IsCompletedSuccessfully ? new ValueTask<int>(length) : Wait(pending, length);

            [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
            static async ValueTask<int> Wait(ValueTask pending, int length)
            {
                await pending.ConfigureAwait(false);
                return length;
            }
        }
    }

    /// <summary>Lets queued frames leave, then ends the sender once it has sent them.</summary>
    public async Task CloseAsync()
    {
        await Task.WhenAny(WaitDrainedAsync(CancellationToken.None), Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
        lock (_gate)
        {
            _closing = true;
            Kick();
        }
    }

    /// <summary>The connection's failure, once it has failed.</summary>
    public GpuPoolException? Failure => Volatile.Read(ref _failed);

    /// <summary>
    /// The connection failed: frames still queued will not be sent, their callers are told why, and later sends throw
    /// it. False when it had already failed (the first failure stands).
    /// </summary>
    public bool Fail(GpuPoolException error)
    {
        lock (_gate)
        {
            if (_failed is not null)
            {
                return false;
            }

            Volatile.Write(ref _failed, error);
            foreach (var segment in _segments)
            {
                segment.Sent?.Fail(error);
            }

            _segments.Clear();
            return true;
        }
    }

    /// <summary>Under the gate, so that a frame is never queued after the failure has failed the queue.</summary>
    private void ThrowIfFailed()
    {
        if (_failed is { } failed)
        {
            throw new GpuPoolException(failed.Code, failed.Message, inner: failed);
        }
    }

    private ValueTask Kicked(CancellationToken cancellationToken)
    {
        Kick();
        return _batch.WrittenCount > HighWater ? new ValueTask(WaitDrainedAsync(cancellationToken)) : default;
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
    private void Kick()
    {
        if (!_sending && !_done)
        {
            _sending = true;
            _wake.Complete();
        }
    }

    /// <summary>
    /// The connection's one sender, for its whole life: it sleeps on a reusable signal while there is nothing to send,
    /// so waking it allocates nothing (no work item, no new state machine per burst). <c>_sending</c> is false exactly
    /// while it sleeps: it re-arms the signal in the same locked step in which it finds the queue empty and clears the
    /// flag, so a wake-up is never lost.
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

        var wire = _connection.Wire;
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
                            _done = true;
                            return;
                        }

                        wake = _wake.Reset();
                        break;
                    }
                }

                try
                {
                    await wire.SendAsync(segment.Bytes, CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException or IOException or NotSupportedException)
                {
                    var error = await _connection.SendFailedAsync(ex).ConfigureAwait(false);
                    segment.Sent?.Fail(error);
                    lock (_gate)
                    {
                        _sending = false;
                        _done = true;
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
}
