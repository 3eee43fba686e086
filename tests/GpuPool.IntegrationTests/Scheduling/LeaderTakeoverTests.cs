using System.Diagnostics;
using System.Text;
using GpuPool.Coordination.Election;
using GpuPool.Coordination.Embedded;
using GpuPool.Protocol.Hosts;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler;
using GpuPool.Scheduler.Hosting;

namespace GpuPool.IntegrationTests.Scheduling;

/// <summary>
/// A scheduler restarted on its machine after it died, on another port (as `gpupool up` restarted on its kept store):
/// the leader lock its dead run left, whose owner record names this machine and an ended process, is taken at once;
/// a lock whose owner still runs, or is on another machine, is waited out as before.
/// </summary>
public sealed class LeaderTakeoverTests
{
    /// <summary>Long enough that a replica which waited the lock out could not lead within the test.</summary>
    private static readonly TimeSpan StaleSessionTtl = TimeSpan.FromMinutes(5);

    [Fact]
    public async Task A_lock_left_by_an_ended_process_of_this_machine_is_taken_at_once()
    {
        await using var store = new EmbeddedClusterStore();
        await LeaveLockAsync(store, $"{MachineIdentity.Get()} {EndedProcessId()}");
        using var key = LeaseToken.CreateKey();

        await using var scheduler = await SchedulerHost.StartAsync(Options(key), store);

        Assert.True(await LeadsWithinAsync(scheduler, TimeSpan.FromSeconds(10)), "the restarted scheduler did not take the dead run's lock");
        Assert.Equal(scheduler.Endpoint, await LeaderElection.GetLeaderAsync(store, StoreKeys.Leader));
        Assert.Equal($"{MachineIdentity.Get()} {Environment.ProcessId}", Encoding.UTF8.GetString((await store.GetAsync(StoreKeys.LeaderOwner))!.Value.Span));
    }

    [Fact]
    public async Task A_lock_whose_owner_still_runs_or_is_on_another_machine_is_left_alone()
    {
        using var running = Process.Start(new ProcessStartInfo("sleep", "60") { UseShellExecute = false })!;
        try
        {
            foreach (var owner in new[] { $"{MachineIdentity.Get()} {running.Id}", $"{new string('f', 32)} {EndedProcessId()}", "not an owner record" })
            {
                await using var store = new EmbeddedClusterStore();
                await LeaveLockAsync(store, owner);
                using var key = LeaseToken.CreateKey();

                await using var scheduler = await SchedulerHost.StartAsync(Options(key), store);

                Assert.False(await LeadsWithinAsync(scheduler, TimeSpan.FromSeconds(2)), $"took a lock whose owner record says '{owner}'");
                Assert.Equal("http://127.0.0.1:1", await LeaderElection.GetLeaderAsync(store, StoreKeys.Leader));
            }
        }
        finally
        {
            running.Kill();
        }
    }

    /// <summary>The lock and its owner record under one session, as a leader leaves them when its process dies.</summary>
    private static async Task LeaveLockAsync(EmbeddedClusterStore store, string owner)
    {
        var session = await store.CreateSessionAsync(StaleSessionTtl);
        Assert.True((await store.PutAsync(StoreKeys.Leader, Encoding.UTF8.GetBytes("http://127.0.0.1:1"), expectedModRevision: 0, sessionId: session.Id)).Succeeded);
        Assert.True((await store.PutAsync(StoreKeys.LeaderOwner, Encoding.UTF8.GetBytes(owner), sessionId: session.Id)).Succeeded);
    }

    /// <summary>The id of a process of this machine that has ended.</summary>
    private static int EndedProcessId()
    {
        using var ended = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        ended.WaitForExit();
        return ended.Id;
    }

    private static async Task<bool> LeadsWithinAsync(SchedulerHost scheduler, TimeSpan limit)
    {
        var watch = Stopwatch.StartNew();
        while (watch.Elapsed < limit)
        {
            if (scheduler.IsLeader)
            {
                return true;
            }

            await Task.Delay(50);
        }

        return scheduler.IsLeader;
    }

    private static SchedulerOptions Options(System.Security.Cryptography.ECDsa key) => new()
    {
        ListenAddress = "127.0.0.1",
        Port = 0,
        SigningKey = key,
        OpenTenants = true,
        LeaderTtl = TimeSpan.FromSeconds(2),
    };
}
