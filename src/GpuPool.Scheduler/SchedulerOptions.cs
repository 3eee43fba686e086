using System.Security.Cryptography;
using GpuPool.Protocol.Hosts;

namespace GpuPool.Scheduler;

/// <summary>How the scheduler runs: where it listens, the key it signs tokens with, and lease defaults.</summary>
public sealed class SchedulerOptions
{
    /// <summary>Address to listen on: one of the host's, or 0.0.0.0 or :: for all of them.</summary>
    public string ListenAddress { get; set; } = "127.0.0.1";

    /// <summary>
    /// The host (an address or a DNS name) this replica publishes in its endpoint, where the other replicas forward
    /// allocations while it leads. Null: the listen address when it is a specific one, else this host's address on
    /// the default route. A wildcard address is never published.
    /// </summary>
    public string? AdvertiseAddress { get; set; }

    /// <summary>Port 0 picks a free port.</summary>
    public int Port { get; set; } = 7070;

    /// <summary>Signs lease tokens; brokers verify with its public half.</summary>
    public required ECDsa SigningKey { get; set; }

    public TimeSpan DefaultLeaseTtl { get; set; } = TimeSpan.FromSeconds(30);

    public TimeSpan MaxLeaseTtl { get; set; } = TimeSpan.FromHours(24);

    /// <summary>How long a token opens sessions; keepalives hand out fresh ones.</summary>
    public TimeSpan TokenLifetime { get; set; } = TimeSpan.FromHours(1);

    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>When true, a tenant with no quota record gets an unlimited one (a one-machine pool); when false it is refused.</summary>
    public bool OpenTenants { get; set; }

    /// <summary>
    /// When true, a call with no credential is served as before tenants proved who they are: it names its tenant
    /// (empty: "default") and sees the whole pool. Only for a trusted single-user machine; false (the default) refuses
    /// such calls with UNAUTHENTICATED. Credentials that are presented are checked either way.
    /// </summary>
    public bool AnonymousTenants { get; set; }

    /// <summary>How long a preempted lease's holder has, after being told, before the lease is revoked.</summary>
    public TimeSpan PreemptionGrace { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The default of <see cref="MaxPassOver"/>.</summary>
    public static readonly TimeSpan DefaultMaxPassOver = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long a waiting request may be passed over by requests of its class that arrived after it. Within a class the
    /// queue serves the tenant holding least first, so a tenant that holds more waits behind tenants that keep asking;
    /// a request that has waited this long goes ahead of every request of its class that came after it, and, once
    /// first of its class to find no room, holds the site where it is closest to fitting (see docs/operations.md).
    /// </summary>
    public TimeSpan MaxPassOver { get; set; } = DefaultMaxPassOver;

    /// <summary>Makes lease ids ("l-" and 12 random hex digits); a test may hand out ids that collide.</summary>
    public Func<string> NewLeaseId { get; set; } = static () => "l-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6));

    /// <summary>How often the leader re-decides waiting requests, checks preemption deadlines and ends leases whose keepalives stopped.</summary>
    public TimeSpan TickInterval { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>
    /// How often the leader checks that each broker answers at its registered endpoint (a TCP connect, given at most
    /// this long): a broker that fails two checks in a row gets no new leases until one succeeds, so a broker whose
    /// process died is out of placement within about two intervals, not when its registration's TTL runs out.
    /// Zero or less turns the checks off.
    /// </summary>
    public TimeSpan BrokerCheckInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The leader lock's session TTL: how long a dead leader blocks a standby at most.</summary>
    public TimeSpan LeaderTtl { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long the reason a lease was lost (preempted, its broker gone) stays for its holder's next call.</summary>
    public TimeSpan TombstoneTtl { get; set; } = TimeSpan.FromHours(1);

    /// <summary>
    /// TLS with the pool's CA on the scheduler's port (its own certificate must be a scheduler's): clients and the other
    /// replicas dial it at https://, and a client certificate of the pool's CA proves its holder's tenant or role.
    /// Null serves plaintext HTTP/2 (<c>--insecure</c>).
    /// </summary>
    public GpuPool.Protocol.Security.PoolTls? Tls { get; set; }

    /// <summary>
    /// How long a connection with no call in flight stays open (one that never sends anything too); a client
    /// reconnects when it next calls. Its TLS handshake gets at most 10 s of it.
    /// </summary>
    public TimeSpan IdleConnectionTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The admin credential (a bearer token): it acts as an admin, for any tenant, and may make quota, priority, drain
    /// and tenant writes. Null: only admin tenant tokens and admin certificates may.
    /// </summary>
    public string? AdminToken { get; set; }

    /// <summary>
    /// The endpoint other replicas forward allocations to (a whole URL); null: http://, the advertised host
    /// (<see cref="AdvertiseAddress"/>) and the port the server bound.
    /// </summary>
    public string? AdvertisedEndpoint { get; set; }

    internal void Validate()
    {
        if (DefaultLeaseTtl < TimeSpan.FromSeconds(1) || DefaultLeaseTtl > MaxLeaseTtl)
        {
            throw new ArgumentException($"DefaultLeaseTtl {DefaultLeaseTtl} must be at least 1 s and at most MaxLeaseTtl {MaxLeaseTtl}", nameof(DefaultLeaseTtl));
        }

        if (TokenLifetime < TimeSpan.FromSeconds(1))
        {
            throw new ArgumentException($"TokenLifetime {TokenLifetime} must be at least 1 s", nameof(TokenLifetime));
        }

        if (TombstoneTtl < TimeSpan.FromSeconds(10))
        {
            throw new ArgumentException($"TombstoneTtl {TombstoneTtl} must be at least 10 s", nameof(TombstoneTtl));
        }

        if (PreemptionGrace < TimeSpan.Zero || TickInterval <= TimeSpan.Zero || LeaderTtl < TimeSpan.FromSeconds(1))
        {
            throw new ArgumentException($"PreemptionGrace {PreemptionGrace} must not be negative, TickInterval {TickInterval} must be positive and LeaderTtl {LeaderTtl} at least 1 s");
        }

        if (MaxPassOver <= TimeSpan.Zero)
        {
            throw new ArgumentException($"MaxPassOver {MaxPassOver} must be positive", nameof(MaxPassOver));
        }

        if (Port is < 0 or > 65535)
        {
            throw new ArgumentException($"Port {Port} is not a TCP port", nameof(Port));
        }

        if (!AdvertisedAddress.TryParseListen(ListenAddress, out _, out var listenError))
        {
            throw new ArgumentException(listenError, nameof(ListenAddress));
        }

        if (AdvertiseAddress is not null && AdvertisedAddress.CheckAdvertise(AdvertiseAddress) is { } advertiseError)
        {
            throw new ArgumentException(advertiseError, nameof(AdvertiseAddress));
        }

        if (AdvertisedEndpoint is not null && (!Uri.TryCreate(AdvertisedEndpoint, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || (System.Net.IPAddress.TryParse(uri.Host.Trim('[', ']'), out var ip) && AdvertisedAddress.IsWildcard(ip))))
        {
            throw new ArgumentException($"AdvertisedEndpoint '{AdvertisedEndpoint}' must be an http:// or https:// URL that other replicas can dial (not a wildcard address)", nameof(AdvertisedEndpoint));
        }
    }
}
