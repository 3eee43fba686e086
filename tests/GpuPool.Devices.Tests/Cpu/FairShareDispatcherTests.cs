using GpuPool.Devices.Scheduling;
using GpuPool.Testing.Time;

namespace GpuPool.Devices.Tests.Cpu;

/// <summary>
/// The fair-share dispatcher on a clock driven by hand: streams of work whose items take set times are simulated item by
/// item, each charged what it took, so the split of device time, the caps and the holds are exact and depend on no
/// thread's timing.
/// </summary>
public sealed class FairShareDispatcherTests
{
    private static readonly TimeSpan Ms = TimeSpan.FromMilliseconds(1);

    [Fact]
    public void Backlogged_leases_split_device_time_in_proportion_to_their_shares()
    {
        var sim = new Simulation(slots: 1);
        var a = sim.Stream(750, 10 * Ms);
        var b = sim.Stream(250, 10 * Ms);

        sim.RunFor(TimeSpan.FromSeconds(20));

        Assert.InRange(a.Fraction(b), 0.74, 0.76);
    }

    [Fact]
    public void The_split_is_of_measured_time_so_longer_items_get_fewer_turns_not_more_time()
    {
        var sim = new Simulation(slots: 1);
        var slow = sim.Stream(500, 30 * Ms);
        var fast = sim.Stream(500, 10 * Ms);

        sim.RunFor(TimeSpan.FromSeconds(30));

        Assert.InRange(slow.Fraction(fast), 0.48, 0.52);
        Assert.InRange(slow.Account.Granted / (double)fast.Account.Granted, 0.31, 0.36);
    }

    [Fact]
    public void Short_and_long_items_mixed_in_one_lease_keep_the_split_within_one_long_item()
    {
        var sim = new Simulation(slots: 1);
        var mixed = sim.Stream(750, i => i % 10 == 0 ? 100 * Ms : 2 * Ms);
        var steady = sim.Stream(250, 5 * Ms);

        sim.RunFor(TimeSpan.FromSeconds(30));

        Assert.InRange(mixed.Fraction(steady), 0.73, 0.77);
    }

    [Fact]
    public void Four_leases_split_in_proportion_400_300_200_100()
    {
        var sim = new Simulation(slots: 1);
        var streams = new[] { 400, 300, 200, 100 }.Select(share => sim.Stream(share, 4 * Ms)).ToArray();

        sim.RunFor(TimeSpan.FromSeconds(20));

        var total = streams.Sum(s => s.Busy.Ticks);
        Assert.All(streams, s => Assert.InRange(s.Busy.Ticks / (double)total, (s.Account.Weight / 1000.0) - 0.01, (s.Account.Weight / 1000.0) + 0.01));
    }

    [Fact]
    public void Two_slots_shared_by_leases_with_two_streams_each_split_by_share()
    {
        var sim = new Simulation(slots: 2);
        var a = sim.Stream(750, 6 * Ms);
        sim.Stream(a.Account, 6 * Ms);
        var b = sim.Stream(250, 6 * Ms);
        sim.Stream(b.Account, 6 * Ms);

        sim.RunFor(TimeSpan.FromSeconds(20));

        Assert.InRange(a.Account.DeviceTime / (a.Account.DeviceTime + b.Account.DeviceTime), 0.72, 0.78);
    }

    [Fact]
    public void A_work_conserving_lease_alone_takes_the_whole_device()
    {
        var sim = new Simulation(slots: 1);
        var small = sim.Stream(250, 10 * Ms);

        sim.RunFor(TimeSpan.FromSeconds(10));

        Assert.InRange(small.Account.DeviceTime.TotalSeconds, 9.9, 10.0);
        Assert.InRange(small.Account.RecentShare, 0.99, 1.0);
    }

    [Fact]
    public void A_capped_lease_alone_stays_at_its_share_of_an_idle_device()
    {
        var sim = new Simulation(slots: 1);
        var capped = sim.Stream(250, 10 * Ms, ShareMode.Capped);

        sim.RunFor(TimeSpan.FromSeconds(10));

        // 25% of 10 s, plus at most the burst its budget starts with.
        Assert.InRange(capped.Account.DeviceTime.TotalSeconds, 2.45, 2.5 + (0.25 * FairShareDispatcher.CapBurst.TotalSeconds) + 0.011);
        Assert.InRange(capped.Account.RecentShare, 0.24, 0.26);
    }

    [Fact]
    public void A_capped_lease_on_two_slots_gets_its_share_of_both()
    {
        var sim = new Simulation(slots: 2);
        var capped = sim.Stream(250, 10 * Ms, ShareMode.Capped);
        sim.Stream(capped.Account, 10 * Ms);

        sim.RunFor(TimeSpan.FromSeconds(10));

        Assert.InRange(capped.Account.RecentShare, 0.24, 0.26);
    }

    [Fact]
    public void A_capped_lease_whose_items_are_longer_than_its_budget_waits_its_debt_out()
    {
        var sim = new Simulation(slots: 1);
        var capped = sim.Stream(250, 400 * Ms, ShareMode.Capped);

        sim.RunFor(TimeSpan.FromSeconds(20));

        // Each 400 ms item leaves a 400 ms debt that takes 1.6 s to fill: one item per 2 s, 20% to 25% whatever the window.
        Assert.InRange(capped.Account.DeviceTime.TotalSeconds, 4.0, 5.2);
    }

    [Fact]
    public void A_capped_lease_leaves_the_rest_of_the_device_to_a_work_conserving_one()
    {
        var sim = new Simulation(slots: 1);
        var capped = sim.Stream(750, 5 * Ms, ShareMode.Capped);
        var open = sim.Stream(250, 5 * Ms);

        sim.RunFor(TimeSpan.FromSeconds(10));

        Assert.InRange(capped.Account.RecentShare, 0.73, 0.76);
        Assert.InRange(open.Account.RecentShare, 0.24, 0.27);
    }

    [Fact]
    public void A_lease_back_from_idle_is_owed_at_most_the_idle_credit()
    {
        var sim = new Simulation(slots: 1);
        var busy = sim.Stream(500, 5 * Ms);
        sim.RunFor(TimeSpan.FromSeconds(10));
        var before = busy.Busy;

        var returning = sim.Stream(500, 5 * Ms);
        sim.RunFor(TimeSpan.FromSeconds(2));

        // Had its ten idle seconds been banked, the returning lease would hold the device for them; it gets its half of
        // the two seconds and at most the idle credit more.
        var returned = returning.Busy.TotalSeconds;
        Assert.InRange(returned, 1.0 - 0.006, 1.0 + FairShareDispatcher.IdleCredit.TotalSeconds + 0.006);
        Assert.InRange((busy.Busy - before).TotalSeconds, 2 - returned - 0.006, 2 - returned + 0.006);
    }

    [Fact]
    public void A_lease_served_next_keeps_its_slot_between_two_items_but_not_past_the_hold()
    {
        var clock = new ManualTimeProvider();
        var dispatcher = new FairShareDispatcher(1, clock);
        FairShareDispatcher.Account ahead = dispatcher.Open(500), behind = dispatcher.Open(500);
        Assert.True(dispatcher.AcquireAsync(ahead).IsCompleted);
        dispatcher.Release(ahead, 10 * Ms);
        Assert.True(dispatcher.AcquireAsync(behind).IsCompleted);
        var waiting = dispatcher.AcquireAsync(ahead).AsTask();

        // The one behind has had less device time: the slot is kept for its next item rather than handed over.
        dispatcher.Release(behind, Ms, more: true);
        Assert.False(waiting.IsCompleted);
        Assert.True(dispatcher.AcquireAsync(behind).IsCompleted);

        dispatcher.Release(behind, Ms, more: true);
        Assert.False(waiting.IsCompleted);

        // Its next item never asks (it waits for something else): the slot goes on once the hold has run out.
        clock.Advance(FairShareDispatcher.HoldTimeout);
        Assert.True(waiting.IsCompletedSuccessfully);
    }

    [Fact]
    public void A_lease_that_is_not_served_next_hands_its_slot_over_at_once()
    {
        var dispatcher = new FairShareDispatcher(1, new ManualTimeProvider());
        FairShareDispatcher.Account ahead = dispatcher.Open(500), behind = dispatcher.Open(500);
        Assert.True(dispatcher.AcquireAsync(ahead).IsCompleted);
        var waiting = dispatcher.AcquireAsync(behind).AsTask();

        dispatcher.Release(ahead, 10 * Ms, more: true);

        Assert.True(waiting.IsCompletedSuccessfully);
    }

    [Fact]
    public void Granted_counts_the_slots_each_account_received()
    {
        var dispatcher = new FairShareDispatcher(1, new ManualTimeProvider());
        var account = dispatcher.Open(100);
        for (var i = 0; i < 5; i++)
        {
            Assert.True(dispatcher.AcquireAsync(account).IsCompleted);
            dispatcher.Release(account, Ms);
        }

        Assert.Equal(5, account.Granted);
        Assert.Equal(5 * Ms, account.DeviceTime);
    }

    [Fact]
    public void An_account_alone_gets_every_slot_whatever_its_weight()
    {
        var dispatcher = new FairShareDispatcher(4, new ManualTimeProvider());
        var tiny = dispatcher.Open(1);

        var grants = Enumerable.Range(0, 4).Select(_ => dispatcher.AcquireAsync(tiny)).ToArray();

        Assert.All(grants, g => Assert.True(g.IsCompletedSuccessfully));
    }

    [Fact]
    public async Task A_cancelled_waiter_passes_the_slot_to_the_next()
    {
        var dispatcher = new FairShareDispatcher(1, new ManualTimeProvider());
        FairShareDispatcher.Account holder = dispatcher.Open(500), first = dispatcher.Open(500), second = dispatcher.Open(500);
        using var cts = new CancellationTokenSource();
        Assert.True(dispatcher.AcquireAsync(holder).IsCompleted);
        var cancelled = dispatcher.AcquireAsync(first, cts.Token).AsTask();
        var next = dispatcher.AcquireAsync(second).AsTask();

        await cts.CancelAsync();
        dispatcher.Release(holder, Ms);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        Assert.True(next.IsCompletedSuccessfully);
        Assert.Equal(0, first.Granted);
    }

    [Fact]
    public async Task Releasing_past_a_cancelled_waiter_with_no_one_else_frees_the_slot()
    {
        var dispatcher = new FairShareDispatcher(1, new ManualTimeProvider());
        var account = dispatcher.Open(500);
        using var cts = new CancellationTokenSource();
        Assert.True(dispatcher.AcquireAsync(account).IsCompleted);
        var cancelled = dispatcher.AcquireAsync(account, cts.Token).AsTask();

        await cts.CancelAsync();
        dispatcher.Release(account, Ms);

        Assert.True(cancelled.IsCanceled);
        Assert.True(dispatcher.AcquireAsync(account).IsCompleted);
    }

    [Fact]
    public void A_waiter_queues_while_the_slots_are_taken()
    {
        var dispatcher = new FairShareDispatcher(2, new ManualTimeProvider());
        var account = dispatcher.Open(500);
        _ = dispatcher.AcquireAsync(account);
        _ = dispatcher.AcquireAsync(account);

        var third = dispatcher.AcquireAsync(account).AsTask();
        Assert.False(third.IsCompleted);

        dispatcher.Release(account, Ms);
        Assert.True(third.IsCompleted);
    }

    [Fact]
    public void The_recent_share_forgets_work_older_than_its_window()
    {
        var clock = new ManualTimeProvider();
        var dispatcher = new FairShareDispatcher(1, clock);
        var account = dispatcher.Open(500);
        for (var i = 0; i < 100; i++)
        {
            Assert.True(dispatcher.AcquireAsync(account).IsCompleted);
            clock.Advance(10 * Ms);
            dispatcher.Release(account, 10 * Ms);
        }

        Assert.InRange(account.RecentShare, 0.99, 1.0);
        clock.Advance(FairShareDispatcher.RecentWindow + TimeSpan.FromSeconds(1));
        Assert.Equal(0, account.RecentShare);
        Assert.Equal(TimeSpan.FromSeconds(1), account.DeviceTime);
    }

    /// <summary>
    /// Streams of work on one dispatcher and a hand-driven clock. Each stream runs one item at a time, as a lease's stream
    /// does: it asks for a slot, runs its item for the item's time, releases it saying it has more, and asks again.
    /// </summary>
    private sealed class Simulation(int slots)
    {
        private readonly List<SimStream> _streams = [];

        public ManualTimeProvider Clock { get; } = new();

        public FairShareDispatcher Dispatcher => field ??= new FairShareDispatcher(slots, Clock);

        public SimStream Stream(int share, TimeSpan itemTime, ShareMode mode = ShareMode.WorkConserving)
            => Stream(Dispatcher.Open(share, mode), _ => itemTime);

        public SimStream Stream(int share, Func<int, TimeSpan> itemTime) => Stream(Dispatcher.Open(share), itemTime);

        public SimStream Stream(FairShareDispatcher.Account account, TimeSpan itemTime) => Stream(account, _ => itemTime);

        private SimStream Stream(FairShareDispatcher.Account account, Func<int, TimeSpan> itemTime)
        {
            var stream = new SimStream(account, itemTime);
            _streams.Add(stream);
            stream.Ask(Dispatcher, Clock.GetUtcNow());
            return stream;
        }

        /// <summary>Runs the streams until the clock has moved <paramref name="duration"/> on.</summary>
        public void RunFor(TimeSpan duration)
        {
            var end = Clock.GetUtcNow() + duration;
            while (true)
            {
                var now = Clock.GetUtcNow();
                foreach (var s in _streams)
                {
                    s.StartIfGranted(now);
                }

                var next = _streams.Where(s => s.RunsUntil is not null).Select(s => s.RunsUntil!.Value).DefaultIfEmpty(DateTimeOffset.MaxValue).Min();
                var timer = Clock.TimersDue().DefaultIfEmpty(DateTimeOffset.MaxValue).First();
                var step = next < timer ? next : timer;
                Assert.True(step < DateTimeOffset.MaxValue, "every stream waits and no timer will wake one");
                if (step > end)
                {
                    Clock.Advance(end - now);
                    return;
                }

                Clock.Advance(step - now);
                foreach (var s in _streams.Where(s => s.RunsUntil == step))
                {
                    s.Finish(Dispatcher, step);
                }
            }
        }
    }

    private sealed class SimStream(FairShareDispatcher.Account account, Func<int, TimeSpan> itemTime)
    {
        private Task? _grant;
        private DateTimeOffset _started;
        private int _items;

        public FairShareDispatcher.Account Account { get; } = account;

        /// <summary>The device time this stream's items took.</summary>
        public TimeSpan Busy { get; private set; }

        public DateTimeOffset? RunsUntil { get; private set; }

        public double Fraction(SimStream other) => Busy / (Busy + other.Busy);

        public void Ask(FairShareDispatcher dispatcher, DateTimeOffset now)
        {
            _grant = dispatcher.AcquireAsync(Account).AsTask();
            StartIfGranted(now);
        }

        public void StartIfGranted(DateTimeOffset now)
        {
            if (_grant is { IsCompletedSuccessfully: true })
            {
                _grant = null;
                _started = now;
                RunsUntil = now + itemTime(_items++);
            }
        }

        public void Finish(FairShareDispatcher dispatcher, DateTimeOffset now)
        {
            var took = now - _started;
            Busy += took;
            RunsUntil = null;
            dispatcher.Release(Account, took, more: true);
            Ask(dispatcher, now);
        }
    }
}
