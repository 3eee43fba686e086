using GpuPool.Coordination;
using GpuPool.Hosting;
using GpuPool.Protocol.Hosts;
using GpuPool.Scheduler.Admin;
using GpuPool.Scheduler.Identity;
using GpuPool.Scheduler.Leases;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace GpuPool.Scheduler.Hosting;

/// <summary>
/// A running scheduler replica: the lease and admin APIs over gRPC, and its part in the leader election.
/// Any number of replicas may share one store; one leads and allocates, the others forward to it. Dispose
/// to stop (a leader resigns, so a standby takes over at once).
/// </summary>
public sealed class SchedulerHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Leadership _leadership;
    private readonly LeaseManager _leases;
    private readonly TokenAllowList _tokens;
    private int _disposed;

    private SchedulerHost(WebApplication app, string endpoint, Leadership leadership, LeaseManager leases, TokenAllowList tokens)
    {
        _app = app;
        Endpoint = endpoint;
        _leadership = leadership;
        _leases = leases;
        _tokens = tokens;
    }

    /// <summary>
    /// Where clients ask for leases, and what this replica publishes for the others to forward to while it leads, for
    /// example http://10.0.0.2:7070: the advertised host and the port the server bound, never a wildcard address.
    /// </summary>
    public string Endpoint { get; }

    /// <summary>The host this replica publishes, and how it was chosen.</summary>
    public AdvertisedAddress Advertised { get; private init; } = null!;

    /// <summary>Whether this replica leads the pool now.</summary>
    public bool IsLeader => _leadership.Current is not null;

    public static async Task<SchedulerHost> StartAsync(SchedulerOptions options, IClusterStore store, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(store);
        options.Validate();
        loggerFactory ??= NullLoggerFactory.Instance;
        if (options.Tls is { } tls)
        {
            var own = tls.Certificate ?? throw new ArgumentException("a scheduler with TLS needs its own certificate and key (gpupool ca issue --scheduler NAME --host HOST)");
            if (!Protocol.Security.PoolCertificates.Verify(own, tls.Authority, server: true, out var error))
            {
                throw new ArgumentException($"the scheduler's own certificate cannot serve: {error}");
            }

            if (Protocol.Security.PoolIdentity.FromCertificate(own) is not { Role: Protocol.Security.PoolRole.Scheduler })
            {
                throw new ArgumentException($"the scheduler's certificate ({own.Subject}) is not a scheduler's (its subject needs O=gpupool scheduler): issue one with gpupool ca issue --scheduler NAME");
            }
        }
        var logger = loggerFactory.CreateLogger<SchedulerHost>();
        var advertised = AdvertisedAddress.Choose(options.ListenAddress, options.AdvertiseAddress);
        if (advertised.Warning is { } warning)
        {
            Log.AdvertisingLoopback(logger, warning);
        }

        // The services need the leadership, which needs the endpoint Kestrel picks: late-bound through a box.
        var box = new StrongBox<Leadership>();
        var auditLogger = loggerFactory.CreateLogger("GpuPool.Scheduler.Audit");
        var tokens = new TokenAllowList(store, logger);
        var callers = new CallerResolver(options, tokens, auditLogger);
        var access = new AccessRules(options, auditLogger);
        var manager = new LeaseManager(options, store, () => box.Value?.Current, access, callers);
        var admin = new AdminCore(options, store, () => box.Value?.Current, access, tokens, auditLogger);
        (WebApplication App, int Port) server;
        try
        {
            server = await GrpcServerHost.StartAsync(
                options.ListenAddress,
                options.Port,
                4 << 20,
                loggerFactory,
                services => services.AddSingleton(manager).AddSingleton(admin).AddSingleton(callers),
                app =>
                {
                    app.MapGrpcService<LeaseService>();
                    app.MapGrpcService<AdminService>();
                },
                cancellationToken,
                options.Tls,
                options.IdleConnectionTimeout).ConfigureAwait(false);
        }
        catch
        {
            await tokens.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        var (app, port) = server;

        options.AdvertisedEndpoint ??= $"{(options.Tls is null ? "http" : "https")}://{advertised.UrlHost}:{port}";
        var leadership = new Leadership(options, store, options.AdvertisedEndpoint, logger);
        box.Value = leadership;
        var host = new SchedulerHost(app, options.AdvertisedEndpoint, leadership, manager, tokens) { Advertised = advertised };
        try
        {
            await CheckPoolKeyAsync(options, store, cancellationToken).ConfigureAwait(false);
            await leadership.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await host.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return host;
    }

    /// <summary>
    /// Publishes the pool's public key when the store holds none yet; otherwise this replica's key must be that one
    /// (every replica of a pool signs with the same key): an ArgumentException saying so.
    /// </summary>
    private static async Task CheckPoolKeyAsync(SchedulerOptions options, IClusterStore store, CancellationToken cancellationToken)
    {
        var put = await store.PutAsync(Protocol.V1.StoreKeys.SchedulerPublicKey, Protocol.Tokens.PoolKey.Encode(options.SigningKey), expectedModRevision: 0, cancellationToken: cancellationToken).ConfigureAwait(false);
        if (put.Succeeded)
        {
            return;
        }

        var stored = await store.GetAsync(Protocol.V1.StoreKeys.SchedulerPublicKey, cancellationToken).ConfigureAwait(false);
        if (stored is { } entry && Protocol.Tokens.PoolKey.Mismatch(options.SigningKey, entry.Value.Span, "this scheduler replica") is { } why)
        {
            throw new ArgumentException(why);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _leadership.DisposeAsync().ConfigureAwait(false);
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        _leases.Dispose();
        await _tokens.DisposeAsync().ConfigureAwait(false);
    }

    private sealed class StrongBox<T>
        where T : class
    {
        public volatile T? Value;
    }
}
