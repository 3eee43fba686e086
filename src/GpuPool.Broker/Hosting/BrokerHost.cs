using GpuPool.Broker.Leases;
using System.Net;
using GpuPool.Broker.Registration;
using GpuPool.Broker.Sessions;
using GpuPool.Broker.Transport.FastPath;
using GpuPool.Broker.Transport.Grpc;
using GpuPool.Coordination;
using GpuPool.Hosting;
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

    private BrokerHost(WebApplication app, string endpoint, FastPathEndpoints fastPath, List<FastPathListener> listeners, LeaseTable leases, BrokerRegistration registration)
    {
        _listeners = listeners;
        _app = app;
        Endpoint = endpoint;
        FastPath = fastPath;
        Leases = leases;
        _registration = registration;
    }

    /// <summary>Where clients open device sessions, for example http://127.0.0.1:7071.</summary>
    public string Endpoint { get; }

    /// <summary>Where the raw fast path listens (empty strings when it is off).</summary>
    public FastPathEndpoints FastPath { get; }

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
            services => services.AddSingleton(options).AddSingleton(leases).AddSingleton<IMemoryPoolFactory<byte>, KestrelBlockPoolFactory>(),
            app => app.MapGrpcService<DeviceSessionService>(),
            cancellationToken).ConfigureAwait(false);

        var listeners = new List<FastPathListener>();
        var fastPath = new FastPathEndpoints("", "");
        if (options.FastPathPort >= 0)
        {
            var handler = new FastPathConnectionHandler(leases, options, loggerFactory.CreateLogger<FastPathConnectionHandler>(), loggerFactory.CreateLogger<SessionExecutor>());
            var tcp = FastPathListener.StartTcp(IPAddress.Parse(options.ListenAddress), options.FastPathPort, handler);
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

            fastPath = new FastPathEndpoints($"{options.ListenAddress}:{((IPEndPoint)tcp.LocalEndPoint).Port}", unixPath);
        }

        leases.Start();
        var registration = new BrokerRegistration(options, store, endpoint, fastPath, loggerFactory.CreateLogger<BrokerRegistration>());
        await registration.StartAsync(cancellationToken).ConfigureAwait(false);
        return new BrokerHost(app, endpoint, fastPath, listeners, leases, registration);
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
        foreach (var listener in _listeners)
        {
            await listener.DisposeAsync().ConfigureAwait(false);
        }

        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        if (FastPath.Unix.Length > 0)
        {
            File.Delete(FastPath.Unix);
        }
    }
}

/// <summary>The fast path's TCP endpoint ("host:port") and Unix socket path.</summary>
public sealed record FastPathEndpoints(string Tcp, string Unix);
