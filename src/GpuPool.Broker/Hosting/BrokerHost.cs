using GpuPool.Broker.Leases;
using GpuPool.Broker.Registration;
using GpuPool.Broker.Sessions;
using GpuPool.Coordination;
using GpuPool.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace GpuPool.Broker.Hosting;

/// <summary>A running broker: its gRPC server, lease table and registration. Dispose to stop it and free every lease.</summary>
public sealed class BrokerHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly BrokerRegistration _registration;
    private int _disposed;

    private BrokerHost(WebApplication app, string endpoint, LeaseTable leases, BrokerRegistration registration)
    {
        _app = app;
        Endpoint = endpoint;
        Leases = leases;
        _registration = registration;
    }

    /// <summary>Where clients open device sessions, for example http://127.0.0.1:7071.</summary>
    public string Endpoint { get; }

    public LeaseTable Leases { get; }

    public static async Task<BrokerHost> StartAsync(BrokerOptions options, IClusterStore store, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        loggerFactory ??= NullLoggerFactory.Instance;
        var leases = new LeaseTable(options, store, loggerFactory.CreateLogger<LeaseTable>());
        var (app, endpoint) = await GrpcServerHost.StartAsync(
            options.ListenAddress,
            options.Port,
            options.MaxMessageBytes,
            loggerFactory,
            services => services.AddSingleton(options).AddSingleton(leases),
            app => app.MapGrpcService<DeviceSessionService>(),
            cancellationToken).ConfigureAwait(false);

        leases.Start();
        var registration = new BrokerRegistration(options, store, endpoint, loggerFactory.CreateLogger<BrokerRegistration>());
        await registration.StartAsync(cancellationToken).ConfigureAwait(false);
        return new BrokerHost(app, endpoint, leases, registration);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _registration.DisposeAsync().ConfigureAwait(false);

        // End the leases first: their open sessions close with LeaseEnded, so the server's graceful stop
        // does not wait out its timeout for clients that keep their streams open.
        await Leases.DisposeAsync().ConfigureAwait(false);
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}
