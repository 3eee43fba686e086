using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests.Scheduling;

/// <summary>Priority classes, the queue and preemption, on a real scheduler and brokers.</summary>
public sealed class PriorityTests
{
    private const ulong MiB = 1UL << 20;

    private static async Task<MultiPool> StartAsync(int[] devices)
    {
        var pool = await MultiPool.StartAsync(devices, configure: o => o.OpenTenants = true);
        return pool;
    }

    [Fact]
    public async Task An_unknown_priority_class_is_refused_naming_the_classes_there_are()
    {
        await using var pool = await StartAsync([1]);

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => pool.Client().AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = MiB, ComputeShare = 100, PriorityClass = "urgent" }));

        Assert.Equal(ErrorCode.InvalidArgument, error.Code);
        Assert.Equal("priority class 'urgent' does not exist (classes: high, low, normal)", error.Message);
    }

    [Fact]
    public async Task A_higher_class_preempts_a_preemptible_lease_whose_holder_is_told_first()
    {
        await using var pool = await StartAsync([1]);
        var client = pool.Client();
        var victim = await client.AllocateAsync(new LeaseRequest { Tenant = "batch", MemoryBytes = 512 * MiB, ComputeShare = 1000, PriorityClass = "low", Ttl = TimeSpan.FromSeconds(2) });
        await using var victimSession = await victim.OpenSessionAsync();

        var urgent = client.AllocateAsync(new LeaseRequest { Tenant = "prod", MemoryBytes = 512 * MiB, ComputeShare = 1000, PriorityClass = "high", WaitTimeout = TimeSpan.FromSeconds(1) });

        // The holder hears of it through its keepalives, with the deadline and who preempts it.
        await Poll.UntilAsync(() => victim.Preempting.IsCancellationRequested, TimeSpan.FromSeconds(10), "the victim's lease reports the preemption");
        Assert.NotNull(victim.PreemptDeadline);
        Assert.Equal("preempted by a request of priority class 'high' (tenant 'prod')", victim.PreemptReason);

        await using var granted = await urgent;
        Assert.Equal("high", granted.Record.PriorityClass);
        await Poll.UntilAsync(() => victim.Lost.IsCancellationRequested, TimeSpan.FromSeconds(10), "the victim's lease is lost");
        Assert.Equal(ErrorCode.LeaseEnded, victim.LostReason!.Code);
        Assert.Contains("preempted by a request of priority class 'high' (tenant 'prod')", victim.LostReason.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<GpuPoolException>(() => victimSession.AllocAsync(MiB));
        await victim.DisposeAsync();
    }

    [Theory]
    [InlineData(SessionTransportKind.Grpc)]
    [InlineData(SessionTransportKind.Tcp)]
    [InlineData(SessionTransportKind.Unix)]
    public async Task A_preempted_leases_open_session_is_told_by_the_broker_before_its_keepalive_could_and_ends_at_the_deadline(SessionTransportKind transport)
    {
        await using var pool = await StartAsync([1]);
        var client = pool.Client();

        // A long TTL: the next keepalive is 10 s away, so only the session can bring the news within the grace.
        await using var victim = await client.AllocateAsync(new LeaseRequest { Tenant = "batch", MemoryBytes = 512 * MiB, ComputeShare = 1000, PriorityClass = "low", Ttl = TimeSpan.FromSeconds(30) });
        await using var session = await victim.OpenSessionAsync(transport);
        var buffer = await session.AllocAsync(MiB);

        var urgent = client.AllocateAsync(new LeaseRequest { Tenant = "prod", MemoryBytes = 512 * MiB, ComputeShare = 1000, PriorityClass = "high", WaitTimeout = TimeSpan.FromSeconds(1) });

        await Poll.UntilAsync(() => session.Preempting.IsCancellationRequested, TimeSpan.FromSeconds(3), "the broker tells the open session");
        Assert.False(victim.Preempting.IsCancellationRequested, "the keepalive, not the session, brought the news");
        Assert.Equal("preempted by a request of priority class 'high' (tenant 'prod')", session.PreemptReason);
        Assert.InRange(session.PreemptDeadline!.Value, DateTimeOffset.UtcNow - TimeSpan.FromSeconds(1), DateTimeOffset.UtcNow + TimeSpan.FromSeconds(3));

        // Until the deadline the session still works; after it, the lease is gone.
        await session.CopyToDeviceAsync(buffer, new byte[16]);
        await using var granted = await urgent;
        var ended = await Assert.ThrowsAsync<GpuPoolException>(async () =>
        {
            while (true)
            {
                await session.AllocAsync(MiB);
                await Task.Delay(50);
            }
        });
        Assert.Equal(ErrorCode.LeaseEnded, ended.Code);
    }

    [Fact]
    public async Task A_lease_of_a_class_that_is_not_preemptible_is_never_evicted()
    {
        await using var pool = await StartAsync([1]);
        var client = pool.Client();
        await using var holder = await client.AllocateAsync(new LeaseRequest { Tenant = "svc", MemoryBytes = 512 * MiB, ComputeShare = 1000, PriorityClass = "normal" });

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => client.AllocateAsync(new LeaseRequest { Tenant = "prod", MemoryBytes = 512 * MiB, ComputeShare = 1000, PriorityClass = "high", WaitTimeout = TimeSpan.FromMilliseconds(800) }));

        Assert.Equal(ErrorCode.ResourceExhausted, error.Code);
        Assert.Contains("after waiting 800 ms", error.Message, StringComparison.Ordinal);
        Assert.False(holder.Preempting.IsCancellationRequested);
        Assert.False(holder.Lost.IsCancellationRequested);
    }

    [Fact]
    public async Task Waiting_requests_are_served_highest_class_first_then_in_arrival_order()
    {
        await using var pool = await StartAsync([1]);
        var client = pool.Client();
        var holder = await client.AllocateAsync(new LeaseRequest { Tenant = "t", MemoryBytes = MiB, ComputeShare = 1000 });

        var wait = TimeSpan.FromSeconds(30);
        var normalFirst = client.AllocateAsync(new LeaseRequest { Tenant = "t", MemoryBytes = MiB, ComputeShare = 1000, WaitTimeout = wait });
        await Poll.UntilAsync(async () => (await client.ListClusterAsync()).Queue.Count == 1, TimeSpan.FromSeconds(5), "the first request is queued");
        var normalSecond = client.AllocateAsync(new LeaseRequest { Tenant = "t", MemoryBytes = MiB, ComputeShare = 1000, WaitTimeout = wait });
        await Poll.UntilAsync(async () => (await client.ListClusterAsync()).Queue.Count == 2, TimeSpan.FromSeconds(5), "the second request is queued");
        var high = client.AllocateAsync(new LeaseRequest { Tenant = "t", MemoryBytes = MiB, ComputeShare = 1000, PriorityClass = "high", WaitTimeout = wait });
        await Poll.UntilAsync(async () => (await client.ListClusterAsync()).Queue.Count == 3, TimeSpan.FromSeconds(5), "the high request is queued");

        Assert.Equal(["high", "normal", "normal"], (await client.ListClusterAsync()).Queue.Select(q => q.PriorityClass));
        await holder.ReleaseAsync();
        var first = await high;
        Assert.False(normalFirst.IsCompleted || normalSecond.IsCompleted);
        await first.ReleaseAsync();
        var second = await normalFirst;
        Assert.False(normalSecond.IsCompleted);
        await second.ReleaseAsync();
        await (await normalSecond).ReleaseAsync();
    }

    [Fact]
    public async Task A_request_that_waits_past_its_timeout_fails_saying_what_is_free()
    {
        await using var pool = await StartAsync([1]);
        var client = pool.Client();
        await using var holder = await client.AllocateAsync(new LeaseRequest { Tenant = "t", MemoryBytes = 900 * MiB, ComputeShare = 100 });

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => client.AllocateAsync(new LeaseRequest { Tenant = "t", MemoryBytes = 200 * MiB, ComputeShare = 100, WaitTimeout = TimeSpan.FromMilliseconds(300) }));

        Assert.Equal(ErrorCode.ResourceExhausted, error.Code);
        Assert.Equal("no device has room for 200 MiB with compute share 100 after waiting 300 ms: the most free memory on one device is 124 MiB and the most free share is 900", error.Message);
    }

    [Fact]
    public async Task A_class_minimum_runtime_is_kept_and_one_longer_than_the_longest_lease_ttl_is_refused()
    {
        await using var pool = await MultiPool.StartAsync([1], configure: o => (o.OpenTenants, o.MaxLeaseTtl) = (true, TimeSpan.FromHours(1)));
        var admin = pool.Admin();

        await admin.SetPriorityClassAsync(new PriorityClass { Name = "batch", Value = 10, Preemptible = true, MinRuntimeSeconds = 3600 });
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => admin.SetPriorityClassAsync(new PriorityClass { Name = "batch", Value = 10, Preemptible = true, MinRuntimeSeconds = 3601 }));

        Assert.Equal(ErrorCode.InvalidArgument, error.Code);
        Assert.Equal("the minimum runtime of priority class 'batch' (3601 s) is longer than this scheduler's longest lease TTL (3600 s): give at most that, or 0 for none", error.Message);
        Assert.Equal(3600u, Assert.Single(await admin.ListPriorityClassesAsync(), c => c.Name == "batch").MinRuntimeSeconds);
    }

    [Fact]
    public async Task A_lease_younger_than_its_class_minimum_runtime_is_not_preempted()
    {
        await using var pool = await StartAsync([1]);
        await pool.Admin().SetPriorityClassAsync(new PriorityClass { Name = "low", Value = 0, Preemptible = true, MinRuntimeSeconds = 3600 });
        var client = pool.Client();
        await using var young = await client.AllocateAsync(new LeaseRequest { Tenant = "batch", MemoryBytes = 512 * MiB, ComputeShare = 1000, PriorityClass = "low" });

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => client.AllocateAsync(new LeaseRequest { Tenant = "prod", MemoryBytes = 512 * MiB, ComputeShare = 1000, PriorityClass = "high", WaitTimeout = TimeSpan.FromMilliseconds(800) }));

        Assert.Equal(ErrorCode.ResourceExhausted, error.Code);
        Assert.False(young.Preempting.IsCancellationRequested);
    }

    [Fact]
    public async Task Priority_classes_can_be_defined_listed_and_deleted_but_not_the_default()
    {
        await using var pool = await StartAsync([1]);
        var admin = pool.Admin();

        await admin.SetPriorityClassAsync(new PriorityClass { Name = "research", Value = 50, Preemptible = true });

        Assert.Equal(["high", "normal", "research", "low"], (await admin.ListPriorityClassesAsync()).Select(c => c.Name));
        await using var lease = await pool.Client().AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = MiB, ComputeShare = 10, PriorityClass = "research" });
        Assert.Equal((50, true), (lease.Record.PriorityValue, lease.Record.Preemptible));
        Assert.True(await admin.DeletePriorityClassAsync("research"));
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => admin.DeletePriorityClassAsync("normal"));
        Assert.Equal(ErrorCode.FailedPrecondition, error.Code);
        var bad = await Assert.ThrowsAsync<GpuPoolException>(() => admin.SetPriorityClassAsync(new PriorityClass { Name = "no spaces", Value = 1 }));
        Assert.Equal(ErrorCode.InvalidArgument, bad.Code);
    }
}
