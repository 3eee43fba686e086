using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Security;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Admin;
using GpuPool.Scheduler.Leases;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace GpuPool.Scheduler.Identity;

/// <summary>
/// Turns a call's credential into a <see cref="Caller"/>: a bearer token (the admin credential, or a tenant token this
/// pool's schedulers signed whose record is still in the store), a client certificate of the pool's CA, or — on a call
/// another replica forwarded — the caller assertion that replica signed. A credential that does not verify is refused
/// with UNAUTHENTICATED naming the reason, logged, and counted against its peer in the <see cref="CredentialThrottle"/>.
/// </summary>
internal sealed class CallerResolver(SchedulerOptions options, TokenAllowList allowList, ILogger logger)
{
    /// <summary>The header a forwarding replica puts its signed assertion of the caller in (beside <see cref="LeaseManager.ForwardedHeader"/>).</summary>
    public const string AssertionHeader = "gpupool-caller";

    /// <summary>How long a forwarded assertion holds: enough for the forward, too short to be worth stealing.</summary>
    public static readonly TimeSpan AssertionLifetime = TimeSpan.FromSeconds(30);

    private const string BearerPrefix = "Bearer ";

    private readonly CredentialThrottle _throttle = new(options.TimeProvider);

    /// <summary>The caller of a gRPC call.</summary>
    public ValueTask<Caller> ResolveAsync(ServerCallContext context)
    {
        var headers = context.RequestHeaders;
        var forwarded = headers.Get(LeaseManager.ForwardedHeader) is not null ? headers.GetValue(AssertionHeader) : null;
        var certificate = options.Tls is null ? null : context.GetHttpContext()?.Connection.ClientCertificate;
        return ResolveAsync(headers.GetValue("authorization"), certificate, forwarded, context.Peer, context.CancellationToken);
    }

    /// <summary>
    /// The caller proved by these credentials (all optional): a forwarded assertion wins, then a bearer token (so that
    /// a call's own admin token wins over the connection's certificate), then the certificate; none is
    /// <see cref="Caller.Anonymous"/>, which <see cref="AccessRules"/> refuses unless the pool takes anonymous tenants.
    /// </summary>
    public async ValueTask<Caller> ResolveAsync(string? authorization, X509Certificate2? certificate, string? forwardedAssertion, string peer, CancellationToken cancellationToken)
    {
        if (forwardedAssertion is not null)
        {
            return ResolveForwarded(forwardedAssertion, peer);
        }

        if (authorization is not null)
        {
            if (!authorization.StartsWith(BearerPrefix, StringComparison.Ordinal) || authorization.Length == BearerPrefix.Length)
            {
                throw Refuse(peer, "the authorization header is not 'Bearer TOKEN'", count: true);
            }

            Throttle(peer);
            var token = authorization[BearerPrefix.Length..].Trim();
            return token.StartsWith(TenantToken.Prefix, StringComparison.Ordinal)
                ? await ResolveTenantTokenAsync(token, peer, cancellationToken).ConfigureAwait(false)
                : ResolveAdminToken(token, peer);
        }

        if (certificate is not null && options.Tls is { } tls)
        {
            Throttle(peer);
            var identity = tls.TryIdentify(certificate, out var error);
            if (identity is null)
            {
                throw Refuse(peer, error ?? "the client certificate names no identity", count: true);
            }

            return new Caller(identity, "certificate", peer);
        }

        return Caller.Anonymous(peer);
    }

    /// <summary>A short-lived assertion of <paramref name="caller"/> for the leader, signed with the key every replica shares.</summary>
    public string Assert(Caller caller)
    {
        var identity = caller.Identity ?? throw new InvalidOperationException("an anonymous caller is forwarded without an assertion");
        var expires = options.TimeProvider.GetUtcNow() + AssertionLifetime;
        return TenantToken.SignAssertion(
            new CallerAssertion(identity.Name, identity.Role.ToString().ToLowerInvariant(), caller.Proof, caller.Peer, expires.ToUnixTimeMilliseconds()),
            options.SigningKey);
    }

    private Caller ResolveForwarded(string assertion, string peer)
    {
        if (!TenantToken.TryVerifyAssertion(assertion, options.SigningKey, options.TimeProvider.GetUtcNow(), out var claims, out var error))
        {
            throw Refuse(peer, error, count: true);
        }

        if (!Enum.TryParse<PoolRole>(claims!.Role, ignoreCase: true, out var role) || !Enum.IsDefined(role))
        {
            throw Refuse(peer, $"the forwarded caller assertion names an unknown role '{claims.Role}'", count: true);
        }

        // From where: the peer the forwarding replica saw, which is the caller's.
        return new Caller(new PoolIdentity(claims.Name, role), claims.Via + ", forwarded", claims.Peer);
    }

    private Caller ResolveAdminToken(string token, string peer)
    {
        if (options.AdminToken is { } admin && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(token), Encoding.UTF8.GetBytes(admin)))
        {
            // Only the admin credential clears the peer's count: a tenant token (which cannot be guessed) must not
            // let its holder go on guessing the admin credential.
            _throttle.Succeeded(peer);
            return new Caller(new PoolIdentity("admin", PoolRole.Admin), "admin token", peer);
        }

        throw Refuse(peer, options.AdminToken is null
            ? "the bearer token is not a tenant token of this pool (tenant tokens start with gpt1.), and this scheduler has no admin credential configured"
            : "the bearer token is neither this pool's admin credential nor a tenant token it issued", count: true);
    }

    private async ValueTask<Caller> ResolveTenantTokenAsync(string token, string peer, CancellationToken cancellationToken)
    {
        if (!TenantToken.TryVerify(token, options.SigningKey, out var claims, out var error))
        {
            throw Refuse(peer, error, count: true);
        }

        var record = await allowList.FindAsync(claims!.Tenant, claims.TokenId, cancellationToken).ConfigureAwait(false);
        if (record is null)
        {
            throw Refuse(peer, $"tenant token {claims.TokenId} of tenant {claims.Tenant} is revoked or was never issued by this pool: ask an admin for a new one (gpupool tenant add)", count: true);
        }

        // The record is the authority: a token whose record says otherwise (a reissued id) is not trusted.
        var admin = claims.Role == TenantToken.AdminRole;
        if (record.Admin != admin || record.Tenant != claims.Tenant)
        {
            throw Refuse(peer, $"tenant token {claims.TokenId} does not match its record (tenant {record.Tenant}, {(record.Admin ? "admin" : "tenant")}): it is not one this pool issued", count: true);
        }

        return new Caller(new PoolIdentity(claims.Tenant, admin ? PoolRole.Admin : PoolRole.Tenant), $"tenant token {claims.TokenId}", peer);
    }

    private void Throttle(string peer)
    {
        try
        {
            _throttle.Check(peer);
        }
        catch (GpuPoolException ex)
        {
            Log.AuditCredentialRefused(logger, CredentialThrottle.Key(peer), ex.Message);
            throw;
        }
    }

    private GpuPoolException Refuse(string peer, string reason, bool count)
    {
        if (count)
        {
            _throttle.Failed(peer);
        }

        Log.AuditCredentialRefused(logger, CredentialThrottle.Key(peer), reason);
        return new GpuPoolException(ErrorCode.Unauthenticated, reason);
    }
}
