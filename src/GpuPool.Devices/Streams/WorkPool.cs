namespace GpuPool.Devices.Streams;

/// <summary>
/// Idle objects of one kind kept by a context for reuse (work items, synchronize points): an op takes one when it is
/// enqueued and its stream gives it back once it has run, so a context in steady state allocates none.
/// </summary>
/// <remarks>
/// It keeps as many as the context has had in flight at once, up to <see cref="MaxIdle"/>; past that, what comes back is
/// left to the GC. The lock is held for a push or a pop: the enqueuing thread and the streams' workers are all it sees.
/// </remarks>
internal sealed class WorkPool<T>(Func<WorkPool<T>, T> create)
    where T : class
{
    private const int MaxIdle = 1 << 16;

    private readonly Lock _gate = new();
    private T?[] _idle = new T?[16];
    private int _count;

    public T Rent()
    {
        lock (_gate)
        {
            if (_count > 0)
            {
                var item = _idle[--_count]!;
                _idle[_count] = null;
                return item;
            }
        }

        return create(this);
    }

    /// <summary>Takes back an object nobody refers to any more.</summary>
    public void Return(T item)
    {
        lock (_gate)
        {
            if (_count == _idle.Length)
            {
                if (_count == MaxIdle)
                {
                    return;
                }

                Array.Resize(ref _idle, _count * 2);
            }

            _idle[_count++] = item;
        }
    }
}
