using GpuPool.Broker.Leases;
using System.Net;
using GpuPool.Broker.Registration;
using GpuPool.Broker.Sessions;
using GpuPool.Broker.Transport.FastPath;
using GpuPool.Broker.Transport.Grpc;
using GpuPool.Coordination;
using GpuPool.Hosting;
using GpuPool.Protocol.Hosts;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.V1;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace GpuPool.Broker.Hosting;

/// <summary>A running broker: its gRPC server, lease table and registration. Dispose to stop it and free every lease.</summary>
public sealed class BrokerHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly BrokerRegistration _registration;
    private readonly List<FastPathListener> _listeners;
    private int _disposed;

    private BrokerHost(WebApplication app, string endpoint, AdvertisedAddress advertised, FastPathEndpoints fastPath, List<FastPathListener> listeners, LeaseTable leases, BrokerRegistration registration)
    {
        _listeners = listeners;
        _app = app;
        Endpoint = endpoint;
        Advertised = advertised;
        FastPath = fastPath;
        Leases = leases;
        _registration = registration;
    }

    /// <summary>
    /// Where clients open device sessions, as the broker registers it, for example http://10.0.0.5:7071: the
    /// advertised host (<see cref="Advertised"/>) and the port the server bound, never a wildcard address.
    /// </summary>
    public string Endpoint { get; }

    /// <summary>The host the broker registers for its endpoints, and how it was chosen.</summary>
    public AdvertisedAddress Advertised { get; }

    /// <summary>Where clients reach the raw fast path, as registered (empty strings when it is off).</summary>
    public FastPathEndpoints FastPath { get; }

    /// <summary>The broker id it registered under.</summary>
    public string Id => _registration.BrokerId;

    /// <summary>The machine id the broker registers: clients with the same one use its Unix socket.</summary>
    public string MachineId => _registration.MachineId;

    public LeaseTable Leases { get; }

    public static async Task<BrokerHost> StartAsync(BrokerOptions options, IClusterStore store, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        loggerFactory ??= NullLoggerFactory.Instance;
        CheckCertificate(options);
        var advertised = AdvertisedAddress.Choose(options.ListenAddress, options.AdvertiseAddress);
        if (advertised.Warning is { } warning)
        {
            Log.AdvertisingLoopback(loggerFactory.CreateLogger<BrokerHost>(), options.BrokerId, warning);
        }

        var leases = new LeaseTable(options, store, loggerFactory.CreateLogger<LeaseTable>());
        var (app, port) = await GrpcServerHost.StartAsync(
            options.ListenAddress,
            options.Port,
            options.MaxMessageBytes,
            loggerFactory,
            services => services.AddSingleton(options).AddSingleton(leases).AddSingleton<IMemoryPoolFactory<byte>, KestrelBlockPoolFactory>(),
            app => app.MapGrpcService<DeviceSessionService>(),
            cancellationToken,
            options.Tls,
            options.IdleConnectionTimeout).ConfigureAwait(false);

        var listeners = new List<FastPathListener>();
        var fastPath = new FastPathEndpoints("", "");
        if (options.FastPathPort >= 0)
        {
            var handler = new FastPathConnectionHandler(leases, options, loggerFactory.CreateLogger<FastPathConnectionHandler>(), loggerFactory.CreateLogger<SessionExecutor>());
            var tcp = FastPathListener.StartTcp(AdvertisedAddress.ParseListen(options.ListenAddress), options.FastPathPort, handler);
            listeners.Add(tcp);
            if (options.FastPathUnixSocket is null)
            {
                foreach (var stale in FastPathListener.RemoveStaleSockets(Path.GetTempPath(), options.BrokerId))
                {
                    loggerFactory.CreateLogger<BrokerHost>().LogInformation("removed {Path}, the Unix socket of an earlier broker {BrokerId} that no process listens on", stale, options.BrokerId);
                }
            }

            var unixPath = options.FastPathUnixSocket ?? Path.Combine(Path.GetTempPath(), $"gpupool-{options.BrokerId}-{Guid.NewGuid():N}.sock");
            if (unixPath.Length > 0)
            {
                listeners.Add(FastPathListener.StartUnix(unixPath, handler));
            }

            fastPath = new FastPathEndpoints($"{advertised.UrlHost}:{((IPEndPoint)tcp.LocalEndPoint).Port}", unixPath);
        }

        leases.Start();
        var endpoint = $"{(options.Tls is null ? "http" : "https")}://{advertised.UrlHost}:{port}";
        var registration = new BrokerRegistration(options, store, endpoint, fastPath, loggerFactory.CreateLogger<BrokerRegistration>(), () => leases.Leases);
        try
        {
            // A broker given another pool's key would take placements whose sessions all fail: refused before it registers.
            if (await store.GetAsync(StoreKeys.SchedulerPublicKey, cancellationToken).ConfigureAwait(false) is { } poolKey
                && PoolKey.Mismatch(options.SchedulerPublicKey, poolKey.Value.Span, $"broker {options.BrokerId}") is { } why)
            {
                throw new ArgumentException(why);
            }

            // Claims the broker id first: a broker refused because another live one holds the id starts nothing.
            await registration.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await registration.DisposeAsync().ConfigureAwait(false);
            await StopAsync(app, listeners, leases, fastPath).ConfigureAwait(false);
            throw;
        }

        return new BrokerHost(app, endpoint, advertised, fastPath, listeners, leases, registration);
    }

    /// <summary>
    /// A broker with TLS must hold a broker's certificate of the pool's CA that names the host it advertises: checked
    /// at start, so that a broker clients would refuse never registers.
    /// </summary>
    private static void CheckCertificate(BrokerOptions options)
    {
        if (options.Tls is not { } tls)
        {
            return;
        }

        var own = tls.Certificate ?? throw new ArgumentException("a broker with TLS needs its own certificate and key (gpupool ca issue --broker ID --host HOST)");
        if (!GpuPool.Protocol.Security.PoolCertificates.Verify(own, tls.Authority, server: true, out var error))
        {
            throw new ArgumentException($"the broker's own certificate cannot serve: {error}");
        }

        if (GpuPool.Protocol.Security.PoolIdentity.FromCertificate(own) is not { Role: GpuPool.Protocol.Security.PoolRole.Broker })
        {
            throw new ArgumentException($"the broker's certificate ({own.Subject}) is not a broker's (its subject needs O=gpupool broker): issue one with gpupool ca issue --broker ID");
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _registration.DisposeAsync().ConfigureAwait(false);
        await StopAsync(_app, _listeners, Leases, FastPath).ConfigureAwait(false);
    }

    private static async Task StopAsync(WebApplication app, List<FastPathListener> listeners, LeaseTable leases, FastPathEndpoints fastPath)
    {
        // End the leases first: their open sessions close with LeaseEnded, so the server's graceful stop
        // does not wait out its timeout for clients that keep their streams open.
        await leases.DisposeAsync().ConfigureAwait(false);
        foreach (var listener in listeners)
        {
            await listener.DisposeAsync().ConfigureAwait(false);
        }

        await app.StopAsync().ConfigureAwait(false);
        await app.DisposeAsync().ConfigureAwait(false);
        if (fastPath.Unix.Length > 0)
        {
            File.Delete(fastPath.Unix);
        }
    }
}

/// <summary>The fast path's TCP endpoint ("host:port", the advertised host) and Unix socket path.</summary>
public sealed record FastPathEndpoints(string Tcp, string Unix);
