using System.Collections.Concurrent;

namespace GpuPool.Devices.Cuda;

/// <summary>One page-locked host buffer of a <see cref="PinnedStagingPool"/>.</summary>
internal readonly unsafe struct PinnedBuffer(nint pointer, int length)
{
    public nint Pointer { get; } = pointer;

    public int Length { get; } = length;

    public Span<byte> Span => new((void*)Pointer, Length);
}

/// <summary>
/// A bounded pool of page-locked host buffers that copies between the wire's bytes and the device go through:
/// the copy engines read and write only pinned memory asynchronously, and a copy staged chunk by chunk needs no
/// more host memory than two buffers, whatever its size. Buffers are made on first need, up to the cap, and kept;
/// a copy that finds them all taken waits for one.
/// </summary>
internal sealed class PinnedStagingPool : IDisposable
{
    private readonly Func<int, nint> _allocate;
    private readonly Action<nint> _free;
    private readonly SemaphoreSlim _available;
    private readonly ConcurrentBag<nint> _idle = [];
    private readonly Lock _gate = new();
    private readonly List<nint> _all = [];
    private bool _disposed;

    /// <param name="bufferBytes">Size of each buffer: the chunk a staged copy moves at a time.</param>
    /// <param name="capacity">The most buffers that may exist at once.</param>
    /// <param name="allocate">Makes one pinned buffer of the given size (cuMemHostAlloc).</param>
    /// <param name="free">Frees one (cuMemFreeHost).</param>
    public PinnedStagingPool(int bufferBytes, int capacity, Func<int, nint> allocate, Action<nint> free)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferBytes, 4096);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        BufferBytes = bufferBytes;
        Capacity = capacity;
        _allocate = allocate;
        _free = free;
        _available = new SemaphoreSlim(capacity, capacity);
    }

    public int BufferBytes { get; }

    public int Capacity { get; }

    /// <summary>Buffers made so far (at most <see cref="Capacity"/>).</summary>
    public int Allocated
    {
        get
        {
            lock (_gate)
            {
                return _all.Count;
            }
        }
    }

    /// <summary>A buffer, waiting while all are taken. Give it back with <see cref="Return"/>.</summary>
    public PinnedBuffer Rent()
    {
        _available.Wait();
        return Take();
    }

    /// <summary>A buffer if one is free or may still be made, without waiting.</summary>
    public bool TryRent(out PinnedBuffer buffer)
    {
        if (!_available.Wait(0))
        {
            buffer = default;
            return false;
        }

        buffer = Take();
        return true;
    }

    public void Return(PinnedBuffer buffer)
    {
        _idle.Add(buffer.Pointer);
        _available.Release();
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            foreach (var pointer in _all)
            {
                _free(pointer);
            }

            _all.Clear();
        }
    }

    private PinnedBuffer Take()
    {
        if (_idle.TryTake(out var pointer))
        {
            return new PinnedBuffer(pointer, BufferBytes);
        }

        try
        {
            lock (_gate)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                pointer = _allocate(BufferBytes);
                _all.Add(pointer);
            }

            return new PinnedBuffer(pointer, BufferBytes);
        }
        catch
        {
            _available.Release();
            throw;
        }
    }
}
