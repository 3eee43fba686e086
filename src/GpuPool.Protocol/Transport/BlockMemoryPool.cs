using System.Buffers;

namespace GpuPool.Protocol.Transport;

/// <summary>
/// A <see cref="MemoryPool{T}"/> of fixed-size pinned blocks for the fast path's pipes and staging buffers.
/// A block is its own <see cref="IMemoryOwner{T}"/> and goes back to the pool when disposed, so renting
/// allocates nothing once the pool holds enough blocks. The pipes' default, <see cref="ArrayPool{T}.Shared"/>,
/// caches per thread and per core: a buffer rented on one thread and returned on another (a socket
/// reader's, a device stream's) misses it now and then, and each miss of a pipe segment is a new 1 MiB array.
/// At most <c>maxRetained</c> idle blocks are kept; a block returned beyond that is left to the GC.
/// </summary>
public sealed class BlockMemoryPool : MemoryPool<byte>
{
    private readonly Stack<Block> _idle;
    private readonly int _maxRetained;
    private long _allocated;

    public BlockMemoryPool(int blockSize, int maxRetained)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 4096);
        ArgumentOutOfRangeException.ThrowIfNegative(maxRetained);
        BlockSize = blockSize;
        _maxRetained = maxRetained;
        _idle = new Stack<Block>(maxRetained);
    }

    /// <summary>The size of every block, and so the largest rent.</summary>
    public int BlockSize { get; }

    public override int MaxBufferSize => BlockSize;

    /// <summary>Blocks this pool has allocated so far (a test can tell from it that renting reused them).</summary>
    public long BlocksAllocated => Interlocked.Read(ref _allocated);

    /// <summary>A block of <see cref="BlockSize"/> bytes; <paramref name="minBufferSize"/> (-1: any) may not be larger.</summary>
    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(minBufferSize, BlockSize);
        Block? block = null;
        lock (_idle)
        {
            _idle.TryPop(out block);
        }

        if (block is null)
        {
            Interlocked.Increment(ref _allocated);
            block = new Block(this, GC.AllocateUninitializedArray<byte>(BlockSize, pinned: true));
        }

        block.Rented = 1;
        return block;
    }

    private void Return(Block block)
    {
        lock (_idle)
        {
            if (_idle.Count < _maxRetained)
            {
                _idle.Push(block);
            }
        }
    }

    protected override void Dispose(bool disposing)
    {
        lock (_idle)
        {
            _idle.Clear();
        }
    }

    private sealed class Block(BlockMemoryPool pool, byte[] array) : IMemoryOwner<byte>
    {
        /// <summary>1 while rented; disposing twice returns the block once.</summary>
        public int Rented;

        public Memory<byte> Memory => array;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref Rented, 0) == 1)
            {
                pool.Return(this);
            }
        }
    }
}
