namespace GpuPool.Devices.Scheduling;

/// <summary>
/// Hands a device's execution slots to the leases on it by start-time fair queuing, weighted by each
/// lease's compute share: while several leases are backlogged, each gets slots in proportion to its
/// share; an idle lease's share is lent to the busy ones (work-conserving).
/// </summary>
public sealed class FairShareDispatcher
{
    private readonly object _gate = new();
    private readonly PriorityQueue<Waiter, (double StartTag, long Order)> _waiters = new();
    private int _freeSlots;
    private double _virtualTime;
    private long _order;

    public FairShareDispatcher(int slots)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(slots, 1);
        Slots = slots;
        _freeSlots = slots;
    }

    public int Slots { get; }

    /// <summary>Per-lease accounting: its weight and the finish tag of its last piece of work.</summary>
    public sealed class Account(int weight)
    {
        public int Weight { get; } = Math.Max(1, weight);

        internal double LastFinish { get; set; }

        internal long GrantedCount;

        /// <summary>Slots granted to this account so far.</summary>
        public long Granted => Interlocked.Read(ref GrantedCount);
    }

    /// <summary>
    /// Waits for a slot for work of <paramref name="cost"/> (any unit, the same for all leases of the
    /// device); completes synchronously when a slot is free and nobody waits. Release the slot after.
    /// </summary>
    public ValueTask AcquireAsync(Account account, double cost, CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            var start = Math.Max(_virtualTime, account.LastFinish);
            account.LastFinish = start + (Math.Max(cost, 1e-9) / account.Weight);
            if (_freeSlots > 0 && _waiters.Count == 0)
            {
                _freeSlots--;
                _virtualTime = start;
                Interlocked.Increment(ref account.GrantedCount);
                return ValueTask.CompletedTask;
            }

            var waiter = new Waiter(account, start);
            _waiters.Enqueue(waiter, (start, _order++));
            if (cancellationToken.CanBeCanceled)
            {
                waiter.Registration = cancellationToken.Register(static w => ((Waiter)w!).TrySetCanceled(), waiter);
            }

            return new ValueTask(waiter.Task);
        }
    }

    public void Release()
    {
        while (true)
        {
            Waiter next;
            lock (_gate)
            {
                if (!_waiters.TryDequeue(out next!, out var priority))
                {
                    _freeSlots++;
                    return;
                }

                _virtualTime = priority.StartTag;
            }

            next.Registration.Dispose();
            if (next.TrySetResult())
            {
                Interlocked.Increment(ref next.Account.GrantedCount);
                return;
            }

            // The waiter was cancelled: hand the slot to the next one.
        }
    }

    private sealed class Waiter(Account account, double startTag) : TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    {
        public Account Account { get; } = account;

        public double StartTag { get; } = startTag;

        public CancellationTokenRegistration Registration { get; set; }
    }
}
