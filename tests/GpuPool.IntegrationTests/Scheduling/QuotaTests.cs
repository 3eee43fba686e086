using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests.Scheduling;

/// <summary>Admission against per-tenant quotas, set through the admin API, on a real scheduler and brokers.</summary>
public sealed class QuotaTests
{
    private const ulong MiB = 1UL << 20;

    private static Quota QuotaFor(string tenant, uint milli = 1000, ulong memory = 1UL << 30, uint leases = 10, bool borrow = false, params string[] classes)
    {
        var quota = new Quota { Tenant = tenant, MaxMilliGpus = milli, MaxMemoryBytes = memory, MaxLeases = leases, AllowBorrowing = borrow };
        quota.AllowedPriorityClasses.AddRange(classes);
        return quota;
    }

    [Fact]
    public async Task A_tenant_without_a_quota_is_refused_with_the_command_that_sets_one()
    {
        await using var pool = await MultiPool.StartAsync([1]);

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => pool.Client().AllocateAsync(new LeaseRequest { Tenant = "stranger", MemoryBytes = MiB, ComputeShare = 100 }));

        Assert.Equal(ErrorCode.PermissionDenied, error.Code);
        Assert.Equal("tenant 'stranger' has no quota in this pool: an admin sets one with `gpupool quota set stranger …`", error.Message);
    }

    [Fact]
    public async Task Within_the_quota_leases_are_granted_and_past_it_the_request_fails_with_QuotaExceeded()
    {
        await using var pool = await MultiPool.StartAsync([2]);
        await pool.Admin().SetQuotaAsync(QuotaFor("team-a", milli: 500, memory: 256 * MiB, leases: 2));
        var client = pool.Client();

        await using var first = await client.AllocateAsync(new LeaseRequest { Tenant = "team-a", MemoryBytes = 128 * MiB, ComputeShare = 300 });
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => client.AllocateAsync(new LeaseRequest { Tenant = "team-a", MemoryBytes = 64 * MiB, ComputeShare = 300 }));

        Assert.Equal(ErrorCode.QuotaExceeded, error.Code);
        Assert.Equal("tenant 'team-a' holds 300 milli-GPU, 128 MiB, 1 lease of its quota of 500 milli-GPU, 256 MiB, 2 leases; this request needs 300 milli-GPU, 64 MiB, 1 lease more", error.Message);
        await using var fits = await client.AllocateAsync(new LeaseRequest { Tenant = "team-a", MemoryBytes = 64 * MiB, ComputeShare = 200 });
    }

    [Fact]
    public async Task A_request_larger_than_the_whole_quota_fails_at_once_even_when_it_may_wait()
    {
        await using var pool = await MultiPool.StartAsync([1]);
        await pool.Admin().SetQuotaAsync(QuotaFor("small", milli: 100));

        var started = DateTime.UtcNow;
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => pool.Client().AllocateAsync(new LeaseRequest { Tenant = "small", MemoryBytes = MiB, ComputeShare = 200, WaitTimeout = TimeSpan.FromSeconds(30) }));

        Assert.Equal(ErrorCode.QuotaExceeded, error.Code);
        Assert.StartsWith("the request (200 milli-GPU, 1 MiB, 1 lease) is larger than tenant 'small''s whole quota", error.Message, StringComparison.Ordinal);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(20), "the request waited for a quota that can never admit it");
    }

    [Fact]
    public async Task An_over_quota_request_that_may_wait_is_granted_when_the_tenants_own_lease_ends()
    {
        await using var pool = await MultiPool.StartAsync([1]);
        await pool.Admin().SetQuotaAsync(QuotaFor("waiter", milli: 500));
        var client = pool.Client();
        var holder = await client.AllocateAsync(new LeaseRequest { Tenant = "waiter", MemoryBytes = MiB, ComputeShare = 500 });

        var waiting = client.AllocateAsync(new LeaseRequest { Tenant = "waiter", MemoryBytes = MiB, ComputeShare = 500, WaitTimeout = TimeSpan.FromSeconds(20) });
        await Poll.UntilAsync(async () => (await client.ListClusterAsync()).Queue.Count == 1, TimeSpan.FromSeconds(5), "the request shows in the queue");
        Assert.False(waiting.IsCompleted);
        await holder.ReleaseAsync();

        await using var granted = await waiting;
        Assert.Equal("waiter", granted.Record.Tenant);
        Assert.Empty((await client.ListClusterAsync()).Queue);
    }

    [Fact]
    public async Task A_quota_lowered_below_what_a_tenant_holds_keeps_its_leases_and_makes_new_ones_wait()
    {
        await using var pool = await MultiPool.StartAsync([1]);
        var admin = pool.Admin();
        await admin.SetQuotaAsync(QuotaFor("shrink", milli: 1000));
        var client = pool.Client();
        await using var held = await client.AllocateAsync(new LeaseRequest { Tenant = "shrink", MemoryBytes = MiB, ComputeShare = 600 });

        // The lowered quota is in force when the call returns (the leader has applied it).
        await admin.SetQuotaAsync(QuotaFor("shrink", milli: 400));

        var waited = await Assert.ThrowsAsync<GpuPoolException>(() => client.AllocateAsync(new LeaseRequest { Tenant = "shrink", MemoryBytes = MiB, ComputeShare = 100, WaitTimeout = TimeSpan.FromMilliseconds(500) }));
        Assert.Equal(ErrorCode.QuotaExceeded, waited.Code);
        Assert.EndsWith("(waited 500 ms)", waited.Message, StringComparison.Ordinal);
        Assert.False(held.Lost.IsCancellationRequested, "lowering the quota ended a lease the tenant already held");
        await using var session = await held.OpenSessionAsync();
        await session.AllocAsync(MiB / 2);
    }

    [Fact]
    public async Task A_tenant_allowed_to_borrow_gets_idle_capacity_past_its_quota_as_a_preemptible_lease()
    {
        await using var pool = await MultiPool.StartAsync([1]);
        await pool.Admin().SetQuotaAsync(QuotaFor("borrower", milli: 200, borrow: true));
        var client = pool.Client();

        await using var within = await client.AllocateAsync(new LeaseRequest { Tenant = "borrower", MemoryBytes = MiB, ComputeShare = 200 });
        await using var borrowed = await client.AllocateAsync(new LeaseRequest { Tenant = "borrower", MemoryBytes = MiB, ComputeShare = 500 });

        Assert.False(within.Record.Borrowed);
        Assert.False(within.Record.Preemptible);
        Assert.True(borrowed.Record.Borrowed);
        Assert.True(borrowed.Record.Preemptible);
    }

    [Fact]
    public async Task A_lender_within_its_quota_reclaims_what_a_borrower_of_the_same_class_took_and_the_borrowers_session_is_told_first()
    {
        await using var pool = await MultiPool.StartAsync([1]);
        await pool.Admin().SetQuotaAsync(QuotaFor("lender", milli: 1000));
        await pool.Admin().SetQuotaAsync(QuotaFor("borrower", milli: 100, borrow: true));
        var client = pool.Client();

        // The borrower takes the whole idle device past its quota; a long TTL, so only the session can bring the news in time.
        var borrowed = await client.AllocateAsync(new LeaseRequest { Tenant = "borrower", MemoryBytes = 512 * MiB, ComputeShare = 1000, Ttl = TimeSpan.FromSeconds(30) });
        Assert.True(borrowed.Record.Borrowed);
        await using var session = await borrowed.OpenSessionAsync();

        var reclaiming = client.AllocateAsync(new LeaseRequest { Tenant = "lender", MemoryBytes = 512 * MiB, ComputeShare = 1000, WaitTimeout = TimeSpan.FromSeconds(1) });

        await Poll.UntilAsync(() => session.Preempting.IsCancellationRequested, TimeSpan.FromSeconds(5), "the broker tells the borrower's session");
        Assert.Equal("reclaimed by tenant 'lender' within its quota (priority class 'normal'): this lease borrowed capacity past tenant 'borrower''s quota", session.PreemptReason);
        await using var granted = await reclaiming;
        Assert.Equal(("lender", "normal", false), (granted.Record.Tenant, granted.Record.PriorityClass, granted.Record.Borrowed));

        // Past the grace the borrowed lease is gone.
        var ended = await Assert.ThrowsAsync<GpuPoolException>(async () =>
        {
            while (true)
            {
                await session.AllocAsync(MiB);
                await Task.Delay(50);
            }
        });
        Assert.Equal(ErrorCode.LeaseEnded, ended.Code);
        await borrowed.DisposeAsync();
    }

    [Fact]
    public async Task A_class_outside_the_tenants_allowed_classes_is_refused()
    {
        await using var pool = await MultiPool.StartAsync([1]);
        await pool.Admin().SetQuotaAsync(QuotaFor("lowonly", classes: "low"));

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => pool.Client().AllocateAsync(new LeaseRequest { Tenant = "lowonly", MemoryBytes = MiB, ComputeShare = 100, PriorityClass = "high" }));

        Assert.Equal(ErrorCode.QuotaExceeded, error.Code);
        Assert.Equal("tenant 'lowonly' may not use priority class 'high' (allowed: low)", error.Message);
    }

    [Fact]
    public async Task Admin_changes_need_the_admin_credential()
    {
        await using var pool = await MultiPool.StartAsync([1]);

        var none = await Assert.ThrowsAsync<GpuPoolException>(() => pool.Admin(token: null).SetQuotaAsync(QuotaFor("x")));
        var wrong = await Assert.ThrowsAsync<GpuPoolException>(() => pool.Admin(token: "not-the-token").SetQuotaAsync(QuotaFor("x")));
        var unknownClass = await Assert.ThrowsAsync<GpuPoolException>(() => pool.Admin().SetQuotaAsync(QuotaFor("x", classes: "platinum")));

        Assert.Equal(ErrorCode.Unauthenticated, none.Code);
        Assert.Equal(ErrorCode.Unauthenticated, wrong.Code);
        Assert.Equal("the bearer token is neither this pool's admin credential nor a tenant token it issued", wrong.Message);
        Assert.Equal(ErrorCode.InvalidArgument, unknownClass.Code);
        Assert.Equal("priority class 'platinum' does not exist (classes: high, normal, low)", unknownClass.Message);
        Assert.Empty(await pool.Admin().ListQuotasAsync());
    }

    [Fact]
    public async Task Wrong_admin_credentials_are_throttled_per_peer_and_the_right_one_works_after_the_wait()
    {
        await using var pool = await MultiPool.StartAsync([1]);

        // Five wrong tries are free (the scheduler's CredentialThrottle.FreeTries); then the peer waits 1 s, right or wrong.
        for (var i = 0; i < 5; i++)
        {
            var wrong = await Assert.ThrowsAsync<GpuPoolException>(() => pool.Admin(token: "guess-" + i).SetQuotaAsync(QuotaFor("x")));
            Assert.Equal(ErrorCode.Unauthenticated, wrong.Code);
        }

        var held = await Assert.ThrowsAsync<GpuPoolException>(() => pool.Admin().SetQuotaAsync(QuotaFor("x")));
        Assert.Equal(ErrorCode.ResourceExhausted, held.Code);
        Assert.Equal("too many refused credentials from 127.0.0.1: try again in 1 s", held.Message);

        await Task.Delay(TimeSpan.FromSeconds(1.2));
        await pool.Admin().SetQuotaAsync(QuotaFor("x"));
        Assert.Single(await pool.Admin().ListQuotasAsync());
    }

    [Fact]
    public async Task Quotas_can_be_read_listed_and_deleted()
    {
        await using var pool = await MultiPool.StartAsync([1]);
        var admin = pool.Admin();
        await admin.SetQuotaAsync(QuotaFor("q1", milli: 300));
        await admin.SetQuotaAsync(QuotaFor("q2", milli: 700));

        Assert.Equal(300u, (await admin.GetQuotaAsync("q1")).MaxMilliGpus);
        Assert.Equal(["q1", "q2"], (await admin.ListQuotasAsync()).Select(q => q.Tenant));
        Assert.True(await admin.DeleteQuotaAsync("q1"));
        var missing = await Assert.ThrowsAsync<GpuPoolException>(() => admin.GetQuotaAsync("q1"));
        Assert.Equal(ErrorCode.NotFound, missing.Code);
        Assert.False(await admin.DeleteQuotaAsync("q1"));
    }
}
