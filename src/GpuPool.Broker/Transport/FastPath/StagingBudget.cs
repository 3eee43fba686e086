using System.Buffers;
using System.Numerics;
using GpuPool.Protocol.Transport;

namespace GpuPool.Broker.Transport.FastPath;

/// <summary>
/// Bounds the bytes one fast-path connection holds in staging: copies to the device that arrive while their stream
/// is busy (behind a long memset or kernel) wait in buffers until the stream reaches them. When the budget is
/// spent the connection stops reading until staged chunks have gone to the device, so a client that sends faster
/// than its stream runs is held back by TCP instead of by the broker's memory. Large payloads are staged in the
/// broker's pooled 1 MiB blocks and charged whole blocks; small ones in a pooled array, charged its size. A payload
/// is admitted when nothing is staged, whatever its size, so a chunk larger than the budget still goes.
/// </summary>
internal sealed class StagingBudget
{
    private readonly object _gate = new();
    private readonly BlockMemoryPool _blocks;
    private readonly Stack<StagedPiece> _spare = new();
    private long _staged;
    private long _waitingFor;
    private TaskCompletionSource? _waiter;

    public StagingBudget(long limit, BlockMemoryPool blocks)
    {
        Limit = limit;
        _blocks = blocks;
    }

    public long Limit { get; }

    /// <summary>Bytes staged now.</summary>
    public long Staged => Interlocked.Read(ref _staged);

    /// <summary>The most bytes this connection has held staged at once.</summary>
    public long Peak { get; private set; }

    /// <summary>
    /// What staging a payload of <paramref name="length"/> bytes costs against the budget: whole blocks for a large one; a
    /// power of two, at least 256 bytes, for a small one, so that the pieces (and their kept arrays) stay bounded too.
    /// </summary>
    public long ChargeFor(long length)
        => length > _blocks.BlockSize / 2
            ? (length + _blocks.BlockSize - 1) / _blocks.BlockSize * _blocks.BlockSize
            : (long)BitOperations.RoundUpToPowerOf2((ulong)Math.Max(length, 256));

    /// <summary>Reserves <paramref name="charge"/>; false when it does not fit now (wait with <see cref="WaitAsync"/>).</summary>
    public bool TryReserve(long charge)
    {
        lock (_gate)
        {
            if (!Fits(charge))
            {
                return false;
            }

            _staged += charge;
            Peak = Math.Max(Peak, _staged);
        }

        BrokerMetrics.StagedBytes.Add(charge);
        return true;
    }

    /// <summary>Completes once <paramref name="charge"/> would fit: staged chunks have gone to the device.</summary>
    public Task WaitAsync(long charge, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            if (Fits(charge))
            {
                return Task.CompletedTask;
            }

            _waitingFor = charge;
            _waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _waiter.Task.WaitAsync(cancellationToken);
        }
    }

    /// <summary>
    /// Copies a payload whose charge has been reserved into staging and hands each piece, with its offset in the
    /// payload, to <paramref name="enqueue"/>; the piece's owner gives the memory and its charge back when disposed.
    /// </summary>
    public void Stage<TState>(in ReadOnlySequence<byte> payload, long charge, TState state, Action<TState, int, ReadOnlyMemory<byte>, IDisposable> enqueue)
    {
        var length = (int)payload.Length;
        if (length <= _blocks.BlockSize / 2)
        {
            var piece = Piece(null, charge);
            var bytes = piece.Small(length);
            payload.CopyTo(bytes.Span);
            enqueue(state, 0, bytes, piece);
            return;
        }

        var offset = 0;
        var remaining = charge;
        while (offset < length)
        {
            var n = Math.Min(_blocks.BlockSize, length - offset);
            var block = _blocks.Rent();
            payload.Slice(offset, n).CopyTo(block.Memory.Span);
            var pieceCharge = Math.Min(_blocks.BlockSize, remaining);
            remaining -= pieceCharge;
            enqueue(state, offset, block.Memory[..n], Piece(block, pieceCharge));
            offset += n;
        }
    }

    private bool Fits(long charge) => _staged == 0 || _staged + charge <= Limit;

    private StagedPiece Piece(IMemoryOwner<byte>? block, long charge)
    {
        StagedPiece? piece;
        lock (_gate)
        {
            _spare.TryPop(out piece);
        }

        piece ??= new StagedPiece(this);
        piece.Set(block, charge);
        return piece;
    }

    private void Release(StagedPiece piece, long charge)
    {
        TaskCompletionSource? wake = null;
        lock (_gate)
        {
            _staged -= charge;
            if (_waiter is not null && Fits(_waitingFor))
            {
                wake = _waiter;
                _waiter = null;
            }

            // The pieces in use are bounded by the budget, so the spares are too.
            _spare.Push(piece);
        }

        BrokerMetrics.StagedBytes.Add(-charge);
        wake?.TrySetResult();
    }

    /// <summary>
    /// One staged buffer; reused once the device has taken its bytes. A small payload (a few KiB: a kernel's input, a
    /// scalar) goes into the piece's own array, kept for the next one, so staging it allocates nothing.
    /// </summary>
    private sealed class StagedPiece(StagingBudget budget) : IDisposable
    {
        /// <summary>Payloads up to this size are staged in the piece's own array; larger ones in a rented one.</summary>
        private const int OwnArrayLimit = 64 * 1024;

        private IMemoryOwner<byte>? _block;
        private byte[] _own = [];
        private byte[]? _rented;
        private long _charge;
        private int _held;

        public void Set(IMemoryOwner<byte>? block, long charge)
        {
            _block = block;
            _charge = charge;
            Volatile.Write(ref _held, 1);
        }

        /// <summary>Room for a small payload of <paramref name="length"/> bytes.</summary>
        public Memory<byte> Small(int length)
        {
            if (length > OwnArrayLimit)
            {
                _rented = ArrayPool<byte>.Shared.Rent(length);
                return _rented.AsMemory(0, length);
            }

            if (_own.Length < length)
            {
                _own = new byte[Math.Max(length, 256)];
            }

            return _own.AsMemory(0, length);
        }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _held, 0) != 1)
            {
                return;
            }

            var charge = _charge;
            _block?.Dispose();
            if (_rented is { } array)
            {
                ArrayPool<byte>.Shared.Return(array);
            }

            _block = null;
            _rented = null;
            budget.Release(this, charge);
        }
    }
}
