namespace GpuPool.Devices.Scheduling;

/// <summary>
/// Hands a device's execution slots to the leases on it by their compute shares, charging each lease the device time its
/// work was measured to take (not an estimate). While several leases are backlogged, a free slot goes to the one whose
/// device time divided by its share is least, so backlogged leases get device time in proportion to their shares. A
/// <see cref="ShareMode.WorkConserving"/> lease lends its idle share to the busy ones; a <see cref="ShareMode.Capped"/>
/// lease never gets more than its share of the device, even when the device is otherwise idle.
/// </summary>
/// <remarks>
/// <para>
/// Each account has a virtual time, its measured device time over its weight. A slot goes to the backlogged account with
/// the least virtual time, counting its work still running at its average item's time, so an account is not handed a
/// second slot before its first item is charged. An account that comes back from idle is lifted to at most
/// <see cref="IdleCredit"/> of device time behind the account served last, so idling banks no more than that.
/// </para>
/// <para>
/// A capped account has a budget of device time that fills at its share of the device's slots per second of wall time,
/// up to <see cref="CapBurst"/> of filling; each item's time is taken from it when the item ends. While the budget is
/// below zero the account waits, however free the device, until the budget has filled back; a timer wakes it. Work is
/// charged when it ends, so the granularity is one item: a long kernel overdraws, and its account then waits the debt out.
/// </para>
/// </remarks>
public sealed class FairShareDispatcher
{
    /// <summary>How far behind the last-served account an account that was idle may come back (its catch-up credit).</summary>
    public static readonly TimeSpan IdleCredit = TimeSpan.FromMilliseconds(100);

    /// <summary>How much of a capped account's filling its budget may hold: what it can spend at once after an idle spell.</summary>
    public static readonly TimeSpan CapBurst = TimeSpan.FromMilliseconds(100);

    /// <summary>How long a slot stays kept for an account whose stream said it has more work, before anyone else may have it.</summary>
    public static readonly TimeSpan HoldTimeout = TimeSpan.FromMilliseconds(10);

    /// <summary>The window of <see cref="Account.RecentShare"/>.</summary>
    public static readonly TimeSpan RecentWindow = TimeSpan.FromSeconds(10);

    private readonly Lock _gate = new();
    private readonly List<Account> _backlogged = [];
    private readonly TimeProvider _time;
    private readonly ITimer _capTimer;
    private readonly ITimer _holdTimer;
    private readonly List<Account> _holders = [];
    private int _freeSlots;
    private double _virtualTime;
    private long _capTimerDue = long.MaxValue;

    public FairShareDispatcher(int slots, TimeProvider? time = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(slots, 1);
        Slots = slots;
        _freeSlots = slots;
        _time = time ?? TimeProvider.System;
        _capTimer = _time.CreateTimer(static d => ((FairShareDispatcher)d!).CapTimerFired(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _holdTimer = _time.CreateTimer(static d => ((FairShareDispatcher)d!).HoldTimerFired(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    public int Slots { get; }

    /// <summary>The clock that times work and fills capped budgets.</summary>
    public TimeProvider Time => _time;

    /// <summary>A lease's account on this device, with its share (1..1000) and mode.</summary>
    public Account Open(int weight, ShareMode mode = ShareMode.WorkConserving) => new(this, Math.Max(1, weight), mode, _time.GetTimestamp());

    /// <summary>
    /// Per-lease accounting: its weight, mode, measured device time and virtual time. All of it is read and changed
    /// under the dispatcher's lock, except the totals, which are read without it.
    /// </summary>
    public sealed class Account
    {
        /// <summary>One bucket per second: the window's ten whole seconds and the second under way.</summary>
        private const int Buckets = 11;

        private readonly FairShareDispatcher _owner;
        private readonly long _opened;
        private readonly long[] _bucketTicks = new long[Buckets];
        private readonly long[] _bucketSecond = new long[Buckets];
        private long _deviceTicks;
        private long _grantedCount;

        internal Account(FairShareDispatcher owner, int weight, ShareMode mode, long opened)
        {
            _owner = owner;
            Weight = weight;
            Mode = mode;
            _opened = opened;
            LastFill = opened;
            Budget = mode == ShareMode.Capped ? BurstTicks : 0;
        }

        public int Weight { get; }

        public ShareMode Mode { get; }

        /// <summary>Device time measured for this account's work so far.</summary>
        public TimeSpan DeviceTime => TimeSpan.FromTicks(Interlocked.Read(ref _deviceTicks));

        /// <summary>Slots granted to this account so far.</summary>
        public long Granted => Interlocked.Read(ref _grantedCount);

        internal Queue<Waiter> Waiters { get; } = new();

        internal int InFlight { get; set; }

        /// <summary>Slots kept for it after its work ended with more of it queued (<see cref="Release"/>).</summary>
        internal int Held { get; set; }

        internal double VirtualTime { get; set; }

        /// <summary>The mean time of its recent items (an exponential average), in ticks.</summary>
        internal double AverageTicks { get; set; }

        /// <summary>A capped account's budget of device time, in ticks (may be below zero: a debt).</summary>
        internal double Budget { get; set; }

        internal long LastFill { get; set; }

        internal bool IsIdle => InFlight == 0 && Waiters.Count == 0;

        /// <summary>Device time per second of wall time this account may have when capped, in ticks per tick: its share of every slot.</summary>
        internal double FillRate => Weight / 1000.0 * _owner.Slots;

        private double BurstTicks => FillRate * CapBurst.Ticks;

        /// <summary>The virtual time it would have with its running work charged at its average.</summary>
        internal double Key => VirtualTime + (InFlight * AverageTicks / Weight);

        /// <summary>
        /// The fraction of the device's time (all its slots) this account's work took over the last
        /// <see cref="RecentWindow"/> (ten whole seconds and the one under way), or over its life if shorter: 1 is the
        /// whole device. Work counts when it ends.
        /// </summary>
        public double RecentShare
        {
            get
            {
                lock (_owner._gate)
                {
                    var now = _owner._time.GetTimestamp();
                    var second = Second(now);
                    long sum = 0;
                    for (var i = 0; i < Buckets; i++)
                    {
                        if (second - _bucketSecond[i] < Buckets)
                        {
                            sum += _bucketTicks[i];
                        }
                    }

                    var intoSecond = _owner._time.GetElapsedTime(0, now).Ticks % TimeSpan.TicksPerSecond;
                    var span = Math.Min(RecentWindow.Ticks + intoSecond, _owner._time.GetElapsedTime(_opened, now).Ticks);
                    return span <= 0 ? 0 : sum / ((double)span * _owner.Slots);
                }
            }
        }

        /// <summary>Refills a capped budget up to <paramref name="now"/>.</summary>
        internal void Fill(long now)
        {
            if (Mode != ShareMode.Capped)
            {
                return;
            }

            Budget = Math.Min(BurstTicks, Budget + (_owner._time.GetElapsedTime(LastFill, now).Ticks * FillRate));
            LastFill = now;
        }

        /// <summary>A capped account may start work once its budget, less its running work at its average, is not below zero.</summary>
        internal bool MayStart(long now)
        {
            if (Mode != ShareMode.Capped)
            {
                return true;
            }

            Fill(now);
            return Budget - (InFlight * AverageTicks) >= 0;
        }

        /// <summary>Wall-time ticks until <see cref="MayStart"/> holds.</summary>
        internal double TicksUntilStart() => Math.Max(0, ((InFlight * AverageTicks) - Budget) / FillRate);

        internal void Charge(long elapsedTicks, long now)
        {
            Interlocked.Add(ref _deviceTicks, elapsedTicks);
            VirtualTime += elapsedTicks / (double)Weight;
            AverageTicks = AverageTicks == 0 ? elapsedTicks : (AverageTicks * 0.875) + (elapsedTicks * 0.125);
            if (Mode == ShareMode.Capped)
            {
                Fill(now);
                Budget -= elapsedTicks;
            }

            var second = Second(now);
            var slot = (int)(second % Buckets);
            if (_bucketSecond[slot] != second)
            {
                (_bucketSecond[slot], _bucketTicks[slot]) = (second, 0);
            }

            _bucketTicks[slot] += elapsedTicks;
        }

        internal void CountGrant() => Interlocked.Increment(ref _grantedCount);

        private long Second(long timestamp) => (long)(_owner._time.GetElapsedTime(0, timestamp).Ticks / TimeSpan.TicksPerSecond);
    }

    /// <summary>
    /// Waits for a slot for one item of <paramref name="account"/>'s work; completes synchronously when a slot is free,
    /// nobody waits and the account may start. Time the item and <see cref="Release"/> the slot with what it took.
    /// </summary>
    public ValueTask AcquireAsync(Account account, CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            var now = _time.GetTimestamp();
            if (account.IsIdle)
            {
                // Back from idle: it may be owed at most IdleCredit of device time, not all it missed while idle.
                account.VirtualTime = Math.Max(account.VirtualTime, _virtualTime - (IdleCredit.Ticks / (double)account.Weight));
            }

            if (account.Held > 0)
            {
                // The slot its last item gave back was kept for this one.
                if (--account.Held == 0)
                {
                    _holders.Remove(account);
                }

                _freeSlots++;
                Grant(account);
                return ValueTask.CompletedTask;
            }

            if (_freeSlots > 0 && _backlogged.Count == 0 && account.MayStart(now))
            {
                Grant(account);
                return ValueTask.CompletedTask;
            }

            var waiter = new Waiter();
            if (account.Waiters.Count == 0)
            {
                _backlogged.Add(account);
            }

            account.Waiters.Enqueue(waiter);
            if (cancellationToken.CanBeCanceled)
            {
                waiter.Registration = cancellationToken.Register(static w => ((Waiter)w!).TrySetCanceled(), waiter);
            }

            Dispatch(now);
            return new ValueTask(waiter.Task);
        }
    }

    /// <summary>
    /// Gives a slot back, charging <paramref name="account"/> the <paramref name="elapsed"/> device time its item took.
    /// With <paramref name="more"/> (the item's stream has more work queued), the slot is kept for the account's next item
    /// for up to <see cref="HoldTimeout"/> when the account would be served next anyway: a lease whose streams run one item
    /// at a time would otherwise hand the slot to every waiting lease between two of its items, whatever the shares.
    /// </summary>
    public void Release(Account account, TimeSpan elapsed, bool more = false)
    {
        lock (_gate)
        {
            var now = _time.GetTimestamp();
            account.InFlight--;
            account.Charge(Math.Max(0, elapsed.Ticks), now);
            if (more && account.MayStart(now) && IsServedNext(account, now))
            {
                if (account.Held++ == 0)
                {
                    _holders.Add(account);
                }

                _holdTimer.Change(HoldTimeout, Timeout.InfiniteTimeSpan);
                return;
            }

            _freeSlots++;
            Dispatch(now);
        }
    }

    /// <summary>
    /// Whether another account waits for a slot and none of those that may start has less virtual time than
    /// <paramref name="account"/> (with nobody else waiting, the slot is free for it anyway).
    /// </summary>
    private bool IsServedNext(Account account, long now)
    {
        var contended = false;
        foreach (var other in _backlogged)
        {
            if (other == account || other.Waiters.Count == 0)
            {
                continue;
            }

            contended = true;
            if (other.Key < account.Key && other.MayStart(now))
            {
                return false;
            }
        }

        return contended;
    }

    /// <summary>Slots kept past <see cref="HoldTimeout"/> go to whoever waits.</summary>
    private void HoldTimerFired()
    {
        lock (_gate)
        {
            foreach (var holder in _holders)
            {
                _freeSlots += holder.Held;
                holder.Held = 0;
            }

            _holders.Clear();
            Dispatch(_time.GetTimestamp());
        }
    }

    /// <summary>Hands free slots to the backlogged accounts that may start, least virtual time first; arms the cap timer for the rest.</summary>
    private void Dispatch(long now)
    {
        while (_freeSlots > 0 && _backlogged.Count > 0)
        {
            Account? next = null;
            var soonest = double.MaxValue;
            for (var i = _backlogged.Count - 1; i >= 0; i--)
            {
                var candidate = _backlogged[i];
                DropCancelled(candidate);
                if (candidate.Waiters.Count == 0)
                {
                    _backlogged.RemoveAt(i);
                    continue;
                }

                if (!candidate.MayStart(now))
                {
                    soonest = Math.Min(soonest, candidate.TicksUntilStart());
                    continue;
                }

                if (next is null || candidate.Key < next.Key)
                {
                    next = candidate;
                }
            }

            if (next is null)
            {
                if (soonest < double.MaxValue)
                {
                    ArmCapTimer(now, soonest);
                }

                return;
            }

            var waiter = next.Waiters.Dequeue();
            if (next.Waiters.Count == 0)
            {
                _backlogged.Remove(next);
            }

            waiter.Registration.Dispose();
            if (waiter.TrySetResult())
            {
                Grant(next);
            }
        }
    }

    private void Grant(Account account)
    {
        _freeSlots--;
        _virtualTime = Math.Max(_virtualTime, account.Key);
        account.InFlight++;
        account.CountGrant();
    }

    private static void DropCancelled(Account account)
    {
        while (account.Waiters.TryPeek(out var first) && first.Task.IsCompleted)
        {
            account.Waiters.Dequeue();
        }
    }

    private void ArmCapTimer(long now, double wallTicks)
    {
        var delay = TimeSpan.FromTicks(Math.Max(1, (long)Math.Ceiling(wallTicks)));
        var due = now + (long)(delay.Ticks * (_time.TimestampFrequency / (double)TimeSpan.TicksPerSecond));
        if (due >= _capTimerDue)
        {
            return;
        }

        _capTimerDue = due;
        _capTimer.Change(delay, Timeout.InfiniteTimeSpan);
    }

    private void CapTimerFired()
    {
        lock (_gate)
        {
            _capTimerDue = long.MaxValue;
            Dispatch(_time.GetTimestamp());
        }
    }

    /// <summary>An item waiting for a slot, in its account's queue.</summary>
    internal sealed class Waiter() : TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    {
        public CancellationTokenRegistration Registration { get; set; }
    }
}
