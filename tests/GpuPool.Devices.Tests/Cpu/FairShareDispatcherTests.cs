using GpuPool.Devices.Scheduling;

namespace GpuPool.Devices.Tests.Cpu;

/// <summary>
/// Start-time fair queuing of a device's execution slots by compute share. The dispatcher is driven by hand,
/// one release at a time, so every grant is observed in order and nothing depends on thread timing.
/// </summary>
public sealed class FairShareDispatcherTests
{
    [Fact]
    public void Backlogged_accounts_share_one_slot_in_proportion_to_their_weights()
    {
        var (a, b) = Simulate(weightA: 750, costA: 1, weightB: 250, costB: 1, grants: 4000);

        Assert.InRange(a / (double)(a + b), 0.73, 0.77);
    }

    [Fact]
    public void Equal_weights_with_equal_costs_share_equally()
    {
        var (a, b) = Simulate(weightA: 500, costA: 1, weightB: 500, costB: 1, grants: 4000);

        Assert.InRange(a / (double)(a + b), 0.48, 0.52);
    }

    [Fact]
    public void Work_that_costs_three_times_as_much_gets_a_third_of_the_grants_at_equal_weight()
    {
        var (expensive, cheap) = Simulate(weightA: 500, costA: 3, weightB: 500, costB: 1, grants: 4000);

        Assert.InRange(expensive / (double)cheap, 0.31, 0.35);
    }

    [Fact]
    public void Granted_counts_the_slots_each_account_received()
    {
        var dispatcher = new FairShareDispatcher(1);
        var account = new FairShareDispatcher.Account(100);
        for (var i = 0; i < 5; i++)
        {
            Assert.True(dispatcher.AcquireAsync(account, 1).IsCompleted);
            dispatcher.Release();
        }

        Assert.Equal(5, account.Granted);
    }

    [Fact]
    public void An_account_alone_gets_every_slot_whatever_its_weight()
    {
        var dispatcher = new FairShareDispatcher(4);
        var tiny = new FairShareDispatcher.Account(1);

        var grants = Enumerable.Range(0, 4).Select(_ => dispatcher.AcquireAsync(tiny, 1000)).ToArray();

        Assert.All(grants, g => Assert.True(g.IsCompletedSuccessfully));
    }

    [Fact]
    public void An_account_keeps_getting_the_slot_once_a_heavier_account_went_idle()
    {
        var dispatcher = new FairShareDispatcher(1);
        FairShareDispatcher.Account light = new(1), heavy = new(1000);
        Assert.True(dispatcher.AcquireAsync(heavy, 1).IsCompleted);
        var lightWaiting = dispatcher.AcquireAsync(light, 1).AsTask();
        var heavyWaiting = dispatcher.AcquireAsync(heavy, 1).AsTask();
        dispatcher.Release();
        dispatcher.Release();
        Assert.True(lightWaiting.IsCompleted && heavyWaiting.IsCompleted);
        dispatcher.Release();

        // The heavy account is idle now: its share is lent, and the light one never waits.
        for (var i = 0; i < 1000; i++)
        {
            Assert.True(dispatcher.AcquireAsync(light, 1).IsCompleted);
            dispatcher.Release();
        }
    }

    [Fact]
    public async Task A_cancelled_waiter_passes_the_slot_to_the_next()
    {
        var dispatcher = new FairShareDispatcher(1);
        FairShareDispatcher.Account holder = new(500), first = new(500), second = new(500);
        using var cts = new CancellationTokenSource();
        Assert.True(dispatcher.AcquireAsync(holder, 1).IsCompleted);
        var cancelled = dispatcher.AcquireAsync(first, 1, cts.Token).AsTask();
        var next = dispatcher.AcquireAsync(second, 1).AsTask();

        await cts.CancelAsync();
        dispatcher.Release();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        Assert.True(next.IsCompletedSuccessfully);
        Assert.Equal(0, first.Granted);
    }

    [Fact]
    public async Task Releasing_past_a_cancelled_waiter_with_no_one_else_frees_the_slot()
    {
        var dispatcher = new FairShareDispatcher(1);
        var account = new FairShareDispatcher.Account(500);
        using var cts = new CancellationTokenSource();
        Assert.True(dispatcher.AcquireAsync(account, 1).IsCompleted);
        var cancelled = dispatcher.AcquireAsync(account, 1, cts.Token).AsTask();

        await cts.CancelAsync();
        dispatcher.Release();

        Assert.True(cancelled.IsCanceled);
        Assert.True(dispatcher.AcquireAsync(account, 1).IsCompleted);
    }

    [Fact]
    public void A_waiter_queues_while_the_slots_are_taken()
    {
        var dispatcher = new FairShareDispatcher(2);
        var account = new FairShareDispatcher.Account(500);
        dispatcher.AcquireAsync(account, 1);
        dispatcher.AcquireAsync(account, 1);

        var third = dispatcher.AcquireAsync(account, 1).AsTask();
        Assert.False(third.IsCompleted);

        dispatcher.Release();
        Assert.True(third.IsCompleted);
    }

    /// <summary>
    /// One slot, two accounts each keeping <paramref name="backlog"/> requests queued at all times: every release
    /// hands the slot to one waiter, which is counted and immediately queues its next request.
    /// </summary>
    private static (long A, long B) Simulate(int weightA, double costA, int weightB, double costB, int grants, int backlog = 4)
    {
        var dispatcher = new FairShareDispatcher(1);
        FairShareDispatcher.Account a = new(weightA), b = new(weightB);
        Assert.True(dispatcher.AcquireAsync(new FairShareDispatcher.Account(1), 1).IsCompleted);

        var waiting = new List<(FairShareDispatcher.Account Account, double Cost, Task Grant)>();
        for (var i = 0; i < backlog; i++)
        {
            waiting.Add((a, costA, dispatcher.AcquireAsync(a, costA).AsTask()));
            waiting.Add((b, costB, dispatcher.AcquireAsync(b, costB).AsTask()));
        }

        long grantedA = 0, grantedB = 0;
        for (var i = 0; i < grants; i++)
        {
            dispatcher.Release();
            var granted = Assert.Single(waiting, w => w.Grant.IsCompleted);
            waiting.Remove(granted);
            _ = granted.Account == a ? grantedA++ : grantedB++;
            waiting.Add((granted.Account, granted.Cost, dispatcher.AcquireAsync(granted.Account, granted.Cost).AsTask()));
        }

        Assert.Equal((grantedA, grantedB), (a.Granted, b.Granted));
        return (grantedA, grantedB);
    }
}
