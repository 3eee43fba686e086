using System.Threading.Tasks.Sources;

namespace GpuPool.Client.Transport.FastPath;

/// <summary>
/// A reusable completion ("the large copy's bytes have been sent", "there is something to send"), so a chunk costs no
/// allocation. Continuations run on the thread pool, never inline under the caller's lock.
/// </summary>
internal sealed class SendSignal : IValueTaskSource
{
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private int _done;

    public ValueTask Reset()
    {
        _core.Reset();
        Volatile.Write(ref _done, 0);
        return new ValueTask(this, _core.Version);
    }

    public void Complete()
    {
        if (Interlocked.Exchange(ref _done, 1) == 0)
        {
            _core.SetResult(true);
        }
    }

    public void Fail(Exception error)
    {
        if (Interlocked.Exchange(ref _done, 1) == 0)
        {
            _core.SetException(error);
        }
    }

    public void GetResult(short token) => _core.GetResult(token);

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => _core.OnCompleted(continuation, state, token, flags);
}
