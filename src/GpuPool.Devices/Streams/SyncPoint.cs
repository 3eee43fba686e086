using System.Threading.Tasks.Sources;

namespace GpuPool.Devices.Streams;

/// <summary>
/// A reusable awaitable that completes once all it waits for has arrived: the markers a synchronize queued on its
/// streams, or the record of an event that a synchronize or a stream waits for. It goes back to its pool once it has
/// completed and its awaiter has taken the result, so waiting costs no allocation; its <see cref="ValueTask"/> must be
/// awaited once, as every <see cref="ValueTask"/>.
/// </summary>
/// <remarks>
/// A cancelled wait completes at once with <see cref="OperationCanceledException"/>; what it waited for still arrives
/// later, and only then does the point go back, so nothing that still refers to it ever sees it reused.
/// </remarks>
internal sealed class SyncPoint(WorkPool<SyncPoint> pool) : IValueTaskSource
{
    /// <summary>An event's waiters are linked through their points: the next one, and the record this one waits for.</summary>
    internal SyncPoint? NextWaiter;

    internal long WaitGeneration;

    private ManualResetValueTaskSourceCore<bool> _core;

    /// <summary>Arrivals still to come, and one more until <see cref="Seal"/> has been called.</summary>
    private int _pending;

    /// <summary>Two holders: the arrivals (as one) and the awaiter; the last to let go returns the point.</summary>
    private int _holders;

    private int _completed;
    private CancellationToken _token;
    private CancellationTokenRegistration _registration;

    /// <summary>
    /// Readies a point just taken from the pool. Its awaiter resumes through the thread pool, so a stream's worker that
    /// completes a point runs none of the session's code; or, <paramref name="resumeInline"/>, on the thread that completes
    /// it: for a stream's own wait, whose rest is only to hand its stream back to the thread pool, and which would cost a
    /// work item queued through the pool.
    /// </summary>
    public SyncPoint Begin(bool resumeInline = false)
    {
        _core.Reset();
        _core.RunContinuationsAsynchronously = !resumeInline;
        _pending = 1;
        _holders = 2;
        _completed = 0;
        return this;
    }

    /// <summary>One more arrival to wait for; only before <see cref="Seal"/>.</summary>
    public void Expect() => Interlocked.Increment(ref _pending);

    public void Arrive()
    {
        if (Interlocked.Decrement(ref _pending) == 0)
        {
            Complete(null);
            Release();
        }
    }

    /// <summary>Every arrival is expected: hands out the wait, which completes when they have all come or the token is cancelled.</summary>
    public ValueTask Seal(CancellationToken cancellationToken)
    {
        if (cancellationToken.CanBeCanceled)
        {
            _token = cancellationToken;
            _registration = cancellationToken.UnsafeRegister(static p => ((SyncPoint)p!).Complete(new OperationCanceledException(((SyncPoint)p!)._token)), this);
        }

        var wait = new ValueTask(this, _core.Version);
        Arrive();
        return wait;
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => _core.OnCompleted(continuation, state, token, flags);

    public void GetResult(short token)
    {
        // A wait taken twice, or before it completed, must not let go of the point twice.
        if (_core.GetStatus(token) == ValueTaskSourceStatus.Pending)
        {
            throw new InvalidOperationException("a device wait's result was taken before it completed");
        }

        try
        {
            _core.GetResult(token);
        }
        finally
        {
            // Waits for a cancellation callback still running, so none runs once the point may be reused.
            _registration.Dispose();
            _registration = default;
            _token = default;
            Release();
        }
    }

    private void Complete(Exception? error)
    {
        if (Interlocked.Exchange(ref _completed, 1) != 0)
        {
            return;
        }

        if (error is null)
        {
            _core.SetResult(true);
        }
        else
        {
            _core.SetException(error);
        }
    }

    private void Release()
    {
        if (Interlocked.Decrement(ref _holders) == 0)
        {
            pool.Return(this);
        }
    }
}
