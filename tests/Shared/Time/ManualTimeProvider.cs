namespace GpuPool.Testing.Time;

/// <summary>
/// A clock that moves only when told to. <see cref="Advance"/> fires every timer that falls due on the way,
/// in due order, with the clock set to each timer's due time while its callback runs. Callbacks run on the
/// advancing thread, outside this provider's lock, so they may create or change timers.
/// </summary>
public sealed class ManualTimeProvider(DateTimeOffset? start = null) : TimeProvider
{
    private readonly Lock _gate = new();
    private readonly Lock _advanceGate = new();
    private readonly List<ManualTimer> _timers = [];
    private DateTimeOffset _now = start ?? new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private long _sequence;

    public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override DateTimeOffset GetUtcNow()
    {
        lock (_gate)
        {
            return _now;
        }
    }

    public override long GetTimestamp() => GetUtcNow().UtcTicks;

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        ArgumentNullException.ThrowIfNull(callback);
        var timer = new ManualTimer(this, callback, state);
        timer.Change(dueTime, period);
        return timer;
    }

    /// <summary>
    /// When each pending timer is next due, earliest first. Work that runs after a timer fires (an awaited delay's
    /// continuation) makes its next timer on another thread: a test waits for that timer before it advances again.
    /// </summary>
    public IReadOnlyList<DateTimeOffset> TimersDue()
    {
        lock (_gate)
        {
            return [.. _timers.Select(t => t.Due).Order()];
        }
    }

    /// <summary>Moves the clock forward by <paramref name="by"/>, firing the timers due on the way.</summary>
    public void Advance(TimeSpan by)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(by, TimeSpan.Zero);
        lock (_advanceGate)
        {
            DateTimeOffset target;
            lock (_gate)
            {
                target = _now + by;
            }

            for (var fired = 0; ; fired++)
            {
                if (fired > 100_000)
                {
                    throw new InvalidOperationException("timers keep firing without time passing");
                }

                ManualTimer? next;
                lock (_gate)
                {
                    next = _timers.Where(t => t.Due <= target).OrderBy(t => t.Due).ThenBy(t => t.Sequence).FirstOrDefault();
                    if (next is null)
                    {
                        _now = target;
                        return;
                    }

                    if (next.Due > _now)
                    {
                        _now = next.Due;
                    }

                    if (next.Period > TimeSpan.Zero)
                    {
                        next.Due += next.Period;
                        next.Sequence = ++_sequence;
                    }
                    else
                    {
                        _timers.Remove(next);
                    }
                }

                next.Callback(next.State);
            }
        }
    }

    private void Schedule(ManualTimer timer, TimeSpan dueTime, TimeSpan period)
    {
        if (dueTime != Timeout.InfiniteTimeSpan)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(dueTime, TimeSpan.Zero);
        }

        if (period != Timeout.InfiniteTimeSpan)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(period, TimeSpan.Zero);
        }

        lock (_gate)
        {
            _timers.Remove(timer);
            if (timer.Disposed || dueTime == Timeout.InfiniteTimeSpan)
            {
                return;
            }

            timer.Due = _now + dueTime;
            timer.Period = period == Timeout.InfiniteTimeSpan ? TimeSpan.Zero : period;
            timer.Sequence = ++_sequence;
            _timers.Add(timer);
        }
    }

    private void Remove(ManualTimer timer)
    {
        lock (_gate)
        {
            timer.Disposed = true;
            _timers.Remove(timer);
        }
    }

    private sealed class ManualTimer(ManualTimeProvider owner, TimerCallback callback, object? state) : ITimer
    {
        public TimerCallback Callback { get; } = callback;

        public object? State { get; } = state;

        public DateTimeOffset Due { get; set; }

        public TimeSpan Period { get; set; }

        public long Sequence { get; set; }

        public bool Disposed { get; set; }

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            if (Disposed)
            {
                return false;
            }

            owner.Schedule(this, dueTime, period);
            return true;
        }

        public void Dispose() => owner.Remove(this);

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
