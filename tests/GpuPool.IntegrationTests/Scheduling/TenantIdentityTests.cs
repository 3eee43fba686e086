using System.Diagnostics;
using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.V1;
using Grpc.Core;
using Grpc.Net.Client;

namespace GpuPool.IntegrationTests.Scheduling;

/// <summary>
/// Tenants prove who they are: the tenant comes from the credential (a tenant token here), never from the request, on a
/// real pool of scheduler replicas and brokers; quotas are a boundary; revocation reaches every replica within a second.
/// </summary>
public sealed class TenantIdentityTests
{
    private const ulong MiB = 1UL << 20;

    [Fact]
    public async Task Without_a_credential_allocate_and_list_are_unauthenticated_and_say_what_to_present()
    {
        await using var pool = await StartAsync();
        var anonymous = pool.ClientWith(null);

        var allocate = await Assert.ThrowsAsync<GpuPoolException>(() => anonymous.AllocateAsync(Slice("team-a")));
        var list = await Assert.ThrowsAsync<GpuPoolException>(() => anonymous.ListClusterAsync());

        Assert.Equal(ErrorCode.Unauthenticated, allocate.Code);
        Assert.StartsWith("this pool needs a credential to allocate: present a tenant token (from gpupool tenant add", allocate.Message, StringComparison.Ordinal);
        Assert.Equal(ErrorCode.Unauthenticated, list.Code);
        Assert.Empty((await pool.Client().ListClusterAsync()).Leases);
    }

    [Fact]
    public async Task With_anonymous_tenants_on_a_caller_without_a_credential_names_its_tenant_as_before()
    {
        await using var pool = await StartAsync(anonymous: true);

        await using var lease = await pool.ClientWith(null).AllocateAsync(Slice("team-a"));

        Assert.Equal("team-a", lease.Record.Tenant);
    }

    [Fact]
    public async Task A_tenant_token_allocates_as_its_tenant_whether_or_not_the_request_names_it()
    {
        await using var pool = await StartAsync();
        var teamA = pool.ClientWith(await TokenAsync(pool, "team-a"));

        await using var unnamed = await teamA.AllocateAsync(Slice(""));
        await using var named = await teamA.AllocateAsync(Slice("team-a"));

        Assert.Equal("team-a", unnamed.Record.Tenant);
        Assert.Equal("team-a", named.Record.Tenant);
    }

    [Fact]
    public async Task A_tenant_token_naming_another_tenant_is_denied_and_nothing_else_is_disturbed()
    {
        await using var pool = await StartAsync();
        await using var bLease = await pool.ClientWith(await TokenAsync(pool, "team-b")).AllocateAsync(Slice(""));
        var teamA = pool.ClientWith(await TokenAsync(pool, "team-a"));

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => teamA.AllocateAsync(Slice("team-b")));

        Assert.Equal(ErrorCode.PermissionDenied, error.Code);
        Assert.Equal("tenant team-a's credential cannot allocate for tenant team-b", error.Message);
        var leases = (await pool.Client().ListClusterAsync()).Leases;
        Assert.Equal(bLease.Id, Assert.Single(leases).LeaseId);
        await using var own = await teamA.AllocateAsync(Slice(""));
        Assert.Equal("team-a", own.Record.Tenant);
    }

    [Fact]
    public async Task An_admin_acts_for_the_tenant_it_names_and_must_name_one()
    {
        await using var pool = await StartAsync();

        await using var forB = await pool.Client().AllocateAsync(Slice("team-b"));
        var unnamed = await Assert.ThrowsAsync<GpuPoolException>(() => pool.Client().AllocateAsync(Slice("")));

        Assert.Equal("team-b", forB.Record.Tenant);
        Assert.Equal(ErrorCode.InvalidArgument, unnamed.Code);
        Assert.Equal("admin admin acts for any tenant: name the tenant to allocate for (--tenant, LeaseRequest.Tenant)", unnamed.Message);
    }

    [Fact]
    public async Task A_revoked_token_is_refused_within_a_second_by_the_leader_and_by_a_standby()
    {
        await using var pool = await StartAsync(replicas: 2);
        var standby = pool.Schedulers.Single(s => !s.IsLeader);
        var token = await TokenAsync(pool, "team-a");
        var viaLeader = pool.ClientWith(token, pool.Leader);
        var viaStandby = pool.ClientWith(token, standby);
        await using (await viaLeader.AllocateAsync(Slice("")))
        await using (await viaStandby.AllocateAsync(Slice("")))
        {
        }

        var id = Assert.Single(Assert.Single(await pool.Admin().ListTenantsAsync(), t => t.Tenant == "team-a").Tokens).TokenId;
        await pool.Admin(scheduler: pool.Leader).RevokeTenantTokensAsync("team-a", id);
        var clock = Stopwatch.StartNew();

        foreach (var client in new[] { viaLeader, viaStandby })
        {
            await Poll.UntilAsync(
                async () =>
                {
                    try
                    {
                        await (await client.AllocateAsync(Slice(""))).DisposeAsync();
                        return false;
                    }
                    catch (GpuPoolException ex) when (ex.Code == ErrorCode.Unauthenticated)
                    {
                        Assert.Equal($"tenant token {id} of tenant team-a is revoked or was never issued by this pool: ask an admin for a new one (gpupool tenant add)", ex.Message);
                        return true;
                    }
                },
                TimeSpan.FromSeconds(1),
                "the revoked token is refused");
        }

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1.5), $"took {clock.Elapsed}");
        Assert.Empty((await pool.Client().ListClusterAsync()).Leases);
    }

    [Fact]
    public async Task A_forged_or_garbled_token_is_refused_as_unauthenticated()
    {
        await using var pool = await StartAsync();
        var real = await TokenAsync(pool, "team-a");
        var claims = Assert.IsType<TenantClaims>(TenantToken.TryReadUnverified(real, out var c) ? c : null);
        using var otherKey = LeaseToken.CreateKey();
        var forged = TenantToken.Sign(claims, otherKey);

        foreach (var (token, says) in new[]
        {
            (forged, "the tenant token's signature does not verify: it was not issued by this pool's schedulers"),
            (real[..^4] + (real.EndsWith("AAAA", StringComparison.Ordinal) ? "BBBB" : "AAAA"), "signature does not verify"),
            ("gpt1.garbage", "malformed tenant token"),
            ("gpt1." + new string('x', 5000), "malformed tenant token"),
        })
        {
            var error = await Assert.ThrowsAsync<GpuPoolException>(() => pool.ClientWith(token).AllocateAsync(Slice("")));
            Assert.Equal(ErrorCode.Unauthenticated, error.Code);
            Assert.Contains(says, error.Message, StringComparison.Ordinal);
        }

        Assert.Empty((await pool.Client().ListClusterAsync()).Leases);
    }

    [Fact]
    public async Task A_tenant_cannot_keep_alive_or_release_another_tenants_lease()
    {
        await using var pool = await StartAsync();
        await using var aLease = await pool.ClientWith(await TokenAsync(pool, "team-a")).AllocateAsync(Slice(""));
        var bToken = await TokenAsync(pool, "team-b");
        using var channel = GrpcChannel.ForAddress(pool.Leader.Endpoint);
        var leases = new Leases.LeasesClient(channel);
        var asB = new Metadata { { "authorization", "Bearer " + bToken } };

        var keepAlive = await Assert.ThrowsAsync<RpcException>(() => leases.KeepAliveAsync(new KeepAliveRequest { LeaseId = aLease.Id, Token = aLease.Token }, asB).ResponseAsync);
        var release = await Assert.ThrowsAsync<RpcException>(() => leases.ReleaseAsync(new ReleaseRequest { LeaseId = aLease.Id, Token = aLease.Token }, asB).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, keepAlive.StatusCode);
        Assert.Equal($"tenant team-b's credential cannot keep alive lease {aLease.Id} of tenant team-a", keepAlive.Status.Detail);
        Assert.Equal(StatusCode.PermissionDenied, release.StatusCode);
        Assert.Contains(aLease.Id, (await pool.Client().ListClusterAsync()).Leases.Select(l => l.LeaseId));
    }

    [Fact]
    public async Task A_tenants_list_shows_the_pools_capacity_and_only_its_own_leases()
    {
        await using var pool = await StartAsync();
        var teamA = pool.ClientWith(await TokenAsync(pool, "team-a"));
        await using var aLease = await teamA.AllocateAsync(Slice(""));
        await using var bLease = await pool.ClientWith(await TokenAsync(pool, "team-b")).AllocateAsync(Slice(""));

        var asA = await teamA.ListClusterAsync();
        var asAdmin = await pool.Client().ListClusterAsync();

        Assert.Equal(aLease.Id, Assert.Single(asA.Leases).LeaseId);
        Assert.Equal(2, asAdmin.Leases.Count);
        Assert.Equal(asAdmin.Devices.Count, asA.Devices.Count);
        Assert.Equal(2u, asA.Devices.Sum(d => d.LeaseCount));
        Assert.Equal(asAdmin.Brokers.Count, asA.Brokers.Count);
    }

    [Fact]
    public async Task Admin_calls_are_refused_to_a_tenant_token_and_allowed_to_an_admin_tenant_token()
    {
        await using var pool = await StartAsync();
        var tenant = new GpuPool.Client.Admin.PoolAdmin(pool.ClientWith(await TokenAsync(pool, "team-a")), null);
        var adminToken = (await pool.Admin().AddTenantTokenAsync("alice", admin: true)).Token;
        var alice = new GpuPool.Client.Admin.PoolAdmin(pool.ClientWith(adminToken), null);

        foreach (var call in new Func<Task>[]
        {
            () => tenant.SetQuotaAsync(new Quota { Tenant = "team-a", MaxMilliGpus = 1000, MaxMemoryBytes = 1UL << 30, MaxLeases = 100 }),
            () => tenant.DeleteQuotaAsync("team-b"),
            () => tenant.SetPriorityClassAsync(new PriorityClass { Name = "mine", Value = 1000 }),
            () => tenant.DrainAsync("b0"),
            () => tenant.AddTenantTokenAsync("team-a", admin: true),
            () => tenant.RevokeTenantTokensAsync("team-b"),
            () => tenant.ListTenantsAsync(),
        })
        {
            var error = await Assert.ThrowsAsync<GpuPoolException>(call);
            Assert.Equal(ErrorCode.PermissionDenied, error.Code);
            Assert.EndsWith("that needs the admin role", error.Message, StringComparison.Ordinal);
        }

        Assert.Contains(await tenant.ListQuotasAsync(), q => q.Tenant == "team-a");
        Assert.Equal(1000u, (await tenant.GetQuotaAsync("team-a")).MaxMilliGpus);
        await alice.SetQuotaAsync(new Quota { Tenant = "team-c", MaxMilliGpus = 500, MaxMemoryBytes = 1UL << 30, MaxLeases = 1 });
        Assert.Equal(500u, (await tenant.GetQuotaAsync("team-c")).MaxMilliGpus);
        Assert.Equal(2, (await pool.Client().ListClusterAsync()).Brokers.Count);
    }

    [Fact]
    public async Task The_quota_is_a_boundary_another_tenants_credential_cannot_take_team_as_slot_and_team_as_gets_it()
    {
        await using var pool = await StartAsync();
        await pool.Admin().SetQuotaAsync(new Quota { Tenant = "team-a", MaxMilliGpus = 1000, MaxMemoryBytes = 1UL << 30, MaxLeases = 1 });
        var teamB = pool.ClientWith(await TokenAsync(pool, "team-b"));
        var teamA = pool.ClientWith(await TokenAsync(pool, "team-a"));

        var stolen = await Assert.ThrowsAsync<GpuPoolException>(() => teamB.AllocateAsync(Slice("team-a")));
        await using var own = await teamA.AllocateAsync(Slice(""));
        var second = await Assert.ThrowsAsync<GpuPoolException>(() => teamA.AllocateAsync(Slice("")));

        Assert.Equal(ErrorCode.PermissionDenied, stolen.Code);
        Assert.Equal("team-a", own.Record.Tenant);
        Assert.Equal(ErrorCode.QuotaExceeded, second.Code);
    }

    [Fact]
    public async Task A_standby_forwards_the_caller_so_the_leader_charges_the_tokens_tenant_and_checks_it()
    {
        await using var pool = await StartAsync(replicas: 2);
        var standby = pool.Schedulers.Single(s => !s.IsLeader);
        var teamA = pool.ClientWith(await TokenAsync(pool, "team-a"), standby);

        await using var lease = await teamA.AllocateAsync(Slice(""));
        var other = await Assert.ThrowsAsync<GpuPoolException>(() => teamA.AllocateAsync(Slice("team-b")));

        Assert.Equal("team-a", lease.Record.Tenant);
        Assert.Equal(ErrorCode.PermissionDenied, other.Code);
        await lease.ReleaseAsync();
        Assert.Empty((await pool.Client().ListClusterAsync()).Leases);
    }

    [Fact]
    public async Task A_call_marked_forwarded_with_a_forged_or_no_assertion_gets_no_identity_from_the_leader()
    {
        await using var pool = await StartAsync();
        using var otherKey = LeaseToken.CreateKey();
        var forged = TenantToken.SignAssertion(new CallerAssertion("root", "admin", "made up", "ipv4:127.0.0.1:1", DateTimeOffset.UtcNow.AddMinutes(1).ToUnixTimeMilliseconds()), otherKey);
        using var channel = GrpcChannel.ForAddress(pool.Leader.Endpoint);
        var leases = new Leases.LeasesClient(channel);
        var request = new AllocateRequest { Tenant = "team-a", MemoryBytes = MiB, ComputeShare = 10 };

        var withForged = await Assert.ThrowsAsync<RpcException>(() => leases.AllocateAsync(request, new Metadata { { "gpupool-forwarded", "1" }, { "gpupool-caller", forged } }).ResponseAsync);
        var withNone = await Assert.ThrowsAsync<RpcException>(() => leases.AllocateAsync(request, new Metadata { { "gpupool-forwarded", "1" } }).ResponseAsync);

        Assert.Equal(StatusCode.Unauthenticated, withForged.StatusCode);
        Assert.Equal("the forwarded caller assertion's signature does not verify: it was not issued by this pool's schedulers", withForged.Status.Detail);
        Assert.Equal(StatusCode.Unauthenticated, withNone.StatusCode);
        Assert.Empty((await pool.Client().ListClusterAsync()).Leases);
    }

    private static LeaseRequest Slice(string tenant) => new() { Tenant = tenant, MemoryBytes = MiB, ComputeShare = 10 };

    /// <summary>A pool with two brokers where team-a, team-b and team-c each have a quota.</summary>
    private static async Task<MultiPool> StartAsync(int replicas = 1, bool anonymous = false)
    {
        var pool = await MultiPool.StartAsync([1, 1], replicas, o => o.AnonymousTenants = anonymous);
        foreach (var tenant in new[] { "team-a", "team-b", "team-c" })
        {
            await pool.Admin().SetQuotaAsync(new Quota { Tenant = tenant, MaxMilliGpus = 1000, MaxMemoryBytes = 1UL << 30, MaxLeases = 100 });
        }

        return pool;
    }

    private static async Task<string> TokenAsync(MultiPool pool, string tenant) => (await pool.Admin().AddTenantTokenAsync(tenant)).Token;
}
