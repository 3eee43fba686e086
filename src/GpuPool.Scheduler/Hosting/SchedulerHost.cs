using GpuPool.Coordination;
using GpuPool.Hosting;
using GpuPool.Scheduler.Admin;
using GpuPool.Scheduler.Leases;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace GpuPool.Scheduler.Hosting;

/// <summary>A running scheduler: the lease and admin APIs over gRPC. Dispose to stop it.</summary>
public sealed class SchedulerHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private int _disposed;

    private SchedulerHost(WebApplication app, string endpoint, LeaseManager leases)
    {
        _app = app;
        Endpoint = endpoint;
        Leases = leases;
    }

    /// <summary>Where clients ask for leases, for example http://127.0.0.1:7070.</summary>
    public string Endpoint { get; }

    public LeaseManager Leases { get; }

    public static async Task<SchedulerHost> StartAsync(SchedulerOptions options, IClusterStore store, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        loggerFactory ??= NullLoggerFactory.Instance;
        var manager = new LeaseManager(options, store, loggerFactory.CreateLogger<LeaseManager>());
        var (app, endpoint) = await GrpcServerHost.StartAsync(
            options.ListenAddress,
            options.Port,
            4 << 20,
            loggerFactory,
            services => services.AddSingleton(manager).AddSingleton(store),
            app =>
            {
                app.MapGrpcService<LeaseService>();
                app.MapGrpcService<AdminService>();
            },
            cancellationToken).ConfigureAwait(false);
        return new SchedulerHost(app, endpoint, manager);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}
