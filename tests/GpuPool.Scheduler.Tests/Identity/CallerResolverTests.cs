using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using GpuPool.Coordination.Embedded;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Security;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Identity;
using Microsoft.Extensions.Logging.Abstractions;

namespace GpuPool.Scheduler.Tests.Identity;

/// <summary>The caller a credential proves, without a network: certificates, tenant tokens, the admin token, forwarded assertions.</summary>
public sealed class CallerResolverTests : IAsyncLifetime
{
    private const string Peer = "ipv4:10.0.0.5:41234";
    private const string AdminToken = "the-admin-token";

    private readonly EmbeddedClusterStore _store = new();
    private readonly System.Security.Cryptography.ECDsa _key = LeaseToken.CreateKey();
    private readonly System.Security.Cryptography.X509Certificates.X509Certificate2 _authority = PoolCertificates.CreateAuthority("unit", TimeSpan.FromDays(1));
    private TokenAllowList _allowList = null!;
    private CallerResolver _resolver = null!;

    public Task InitializeAsync()
    {
        var options = new SchedulerOptions { SigningKey = _key, AdminToken = AdminToken, Tls = new PoolTls(_authority) };
        _allowList = new TokenAllowList(_store, NullLogger.Instance);
        _resolver = new CallerResolver(options, _allowList, NullLogger.Instance);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _allowList.DisposeAsync();
        await _store.DisposeAsync();
        _key.Dispose();
        _authority.Dispose();
    }

    [Fact]
    public async Task A_tenant_certificate_of_the_pool_CA_proves_its_tenant()
    {
        using var certificate = PoolCertificates.Issue(_authority, new PoolIdentity("team-a", PoolRole.Tenant), [], TimeSpan.FromHours(1));

        var caller = await _resolver.ResolveAsync(null, certificate, null, Peer, default);

        Assert.Equal(new PoolIdentity("team-a", PoolRole.Tenant), caller.Identity);
        Assert.Equal("certificate", caller.Proof);
    }

    [Fact]
    public async Task An_admin_certificate_proves_the_admin_role()
    {
        using var certificate = PoolCertificates.Issue(_authority, new PoolIdentity("alice", PoolRole.Admin), [], TimeSpan.FromHours(1));

        var caller = await _resolver.ResolveAsync(null, certificate, null, Peer, default);

        Assert.True(caller.IsAdmin);
    }

    [Fact]
    public async Task A_certificate_of_another_CA_is_refused_as_unauthenticated_with_the_reason()
    {
        using var otherAuthority = PoolCertificates.CreateAuthority("other", TimeSpan.FromDays(1));
        using var certificate = PoolCertificates.Issue(otherAuthority, new PoolIdentity("team-a", PoolRole.Tenant), [], TimeSpan.FromHours(1));

        var error = await Assert.ThrowsAsync<GpuPoolException>(async () => await _resolver.ResolveAsync(null, certificate, null, Peer, default));

        Assert.Equal(ErrorCode.Unauthenticated, error.Code);
        Assert.NotEqual("", error.Message);
    }

    [Fact]
    public async Task An_expired_certificate_is_refused()
    {
        using var certificate = PoolCertificates.Issue(_authority, new PoolIdentity("team-a", PoolRole.Tenant), [], TimeSpan.FromHours(1), DateTimeOffset.UtcNow.AddHours(-3));

        var error = await Assert.ThrowsAsync<GpuPoolException>(async () => await _resolver.ResolveAsync(null, certificate, null, Peer, default));

        Assert.Equal(ErrorCode.Unauthenticated, error.Code);
    }

    [Fact]
    public async Task The_admin_token_proves_the_admin_and_a_wrong_one_is_refused()
    {
        var admin = await _resolver.ResolveAsync("Bearer " + AdminToken, null, null, Peer, default);
        var wrong = await Assert.ThrowsAsync<GpuPoolException>(async () => await _resolver.ResolveAsync("Bearer not-it", null, null, Peer, default));
        var notBearer = await Assert.ThrowsAsync<GpuPoolException>(async () => await _resolver.ResolveAsync("Basic abc", null, null, Peer, default));

        Assert.True(admin.IsAdmin);
        Assert.Equal(ErrorCode.Unauthenticated, wrong.Code);
        Assert.Equal("the bearer token is neither this pool's admin credential nor a tenant token it issued", wrong.Message);
        Assert.Equal("the authorization header is not 'Bearer TOKEN'", notBearer.Message);
    }

    [Fact]
    public async Task A_bearer_token_wins_over_the_connections_certificate()
    {
        using var certificate = PoolCertificates.Issue(_authority, new PoolIdentity("team-a", PoolRole.Tenant), [], TimeSpan.FromHours(1));

        var caller = await _resolver.ResolveAsync("Bearer " + AdminToken, certificate, null, Peer, default);

        Assert.True(caller.IsAdmin);
    }

    [Fact]
    public async Task A_tenant_token_proves_its_tenant_while_its_record_exists_and_not_after()
    {
        var token = await IssueAsync("team-a", "tk-0000000000000001", admin: false);

        var caller = await _resolver.ResolveAsync("Bearer " + token, null, null, Peer, default);
        Assert.Equal(new PoolIdentity("team-a", PoolRole.Tenant), caller.Identity);

        await _store.DeleteAsync(StoreKeys.TenantToken("team-a", "tk-0000000000000001"));
        await WaitUntilAsync(async () =>
        {
            try
            {
                await _resolver.ResolveAsync("Bearer " + token, null, null, Peer, default);
                return false;
            }
            catch (GpuPoolException ex) when (ex.Code == ErrorCode.Unauthenticated)
            {
                Assert.Equal("tenant token tk-0000000000000001 of tenant team-a is revoked or was never issued by this pool: ask an admin for a new one (gpupool tenant add)", ex.Message);
                return true;
            }
        });
    }

    [Fact]
    public async Task A_tenant_token_signed_by_another_key_or_garbled_is_refused()
    {
        var token = await IssueAsync("team-a", "tk-0000000000000002", admin: false);
        using var otherKey = LeaseToken.CreateKey();
        var forged = TenantToken.Sign(new TenantClaims("team-a", "tk-0000000000000002", TenantToken.TenantRole, 0), otherKey);
        var promoted = TenantToken.Sign(new TenantClaims("team-a", "tk-0000000000000002", TenantToken.AdminRole, 0), _key);

        var badSignature = await Assert.ThrowsAsync<GpuPoolException>(async () => await _resolver.ResolveAsync("Bearer " + forged, null, null, Peer, default));
        var garbled = await Assert.ThrowsAsync<GpuPoolException>(async () => await _resolver.ResolveAsync("Bearer " + token[..^6] + "AAAAAA", null, null, Peer, default));
        var notBase64 = await Assert.ThrowsAsync<GpuPoolException>(async () => await _resolver.ResolveAsync("Bearer gpt1.!!!.???", null, null, Peer, default));
        var mismatched = await Assert.ThrowsAsync<GpuPoolException>(async () => await _resolver.ResolveAsync("Bearer " + promoted, null, null, Peer, default));

        Assert.Equal("the tenant token's signature does not verify: it was not issued by this pool's schedulers", badSignature.Message);
        Assert.Equal(ErrorCode.Unauthenticated, garbled.Code);
        Assert.Equal("malformed tenant token: expected gpt1.PAYLOAD.SIGNATURE in base64url", notBase64.Message);
        Assert.Contains("does not match its record", mismatched.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_lease_token_is_not_a_tenant_token()
    {
        var lease = LeaseToken.Sign(new LeaseClaims("l-1", "team-a", "b0", 0, 1, 1, long.MaxValue), _key);

        var error = await Assert.ThrowsAsync<GpuPoolException>(async () => await _resolver.ResolveAsync("Bearer gpt1." + lease, null, null, Peer, default));

        Assert.Equal(ErrorCode.Unauthenticated, error.Code);
    }

    [Fact]
    public async Task A_forwarded_assertion_signed_with_the_shared_key_carries_the_caller_and_a_forged_or_stale_one_is_refused()
    {
        var token = await IssueAsync("team-b", "tk-0000000000000003", admin: false);
        var original = await _resolver.ResolveAsync("Bearer " + token, null, null, Peer, default);
        var assertion = _resolver.Assert(original);
        using var otherKey = LeaseToken.CreateKey();
        var forged = TenantToken.SignAssertion(new CallerAssertion("root", "admin", "made up", Peer, DateTimeOffset.UtcNow.AddMinutes(1).ToUnixTimeMilliseconds()), otherKey);
        var stale = TenantToken.SignAssertion(new CallerAssertion("team-b", "tenant", "tenant token", Peer, DateTimeOffset.UtcNow.AddSeconds(-1).ToUnixTimeMilliseconds()), _key);

        var forwarded = await _resolver.ResolveAsync(null, null, assertion, "ipv4:10.0.0.9:5000", default);
        var forgedError = await Assert.ThrowsAsync<GpuPoolException>(async () => await _resolver.ResolveAsync(null, null, forged, Peer, default));
        var staleError = await Assert.ThrowsAsync<GpuPoolException>(async () => await _resolver.ResolveAsync(null, null, stale, Peer, default));

        Assert.Equal(new PoolIdentity("team-b", PoolRole.Tenant), forwarded.Identity);
        Assert.Equal(Peer, forwarded.Peer);
        Assert.Equal("the forwarded caller assertion's signature does not verify: it was not issued by this pool's schedulers", forgedError.Message);
        Assert.Contains("has expired", staleError.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task No_credential_is_the_anonymous_caller()
    {
        var caller = await _resolver.ResolveAsync(null, null, null, Peer, default);

        Assert.Null(caller.Identity);
    }

    private async Task<string> IssueAsync(string tenant, string id, bool admin)
    {
        var record = new TenantTokenRecord { Tenant = tenant, TokenId = id, Admin = admin, Issued = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow) };
        await _store.PutAsync(StoreKeys.TenantToken(tenant, id), record.ToByteArray());
        return TenantToken.Sign(new TenantClaims(tenant, id, admin ? TenantToken.AdminRole : TenantToken.TenantRole, 0), _key);
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(1);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "not within 1 s");
            await Task.Delay(20);
        }
    }
}
