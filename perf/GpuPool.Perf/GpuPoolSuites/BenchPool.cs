using GpuPool.Broker;
using GpuPool.Broker.Hosting;
using GpuPool.Client;
using GpuPool.Coordination.Embedded;
using GpuPool.Devices.Cpu;
using GpuPool.Protocol.Tokens;
using GpuPool.Scheduler;
using GpuPool.Scheduler.Hosting;

namespace GpuPool.Perf.GpuPoolSuites;

/// <summary>A whole pool in this process (embedded store, scheduler, broker with one cpu device) on loopback ports.</summary>
internal sealed class BenchPool : IAsyncDisposable
{
    private readonly EmbeddedClusterStore _store;
    private readonly SchedulerHost _scheduler;
    private readonly BrokerHost _broker;

    private BenchPool(EmbeddedClusterStore store, SchedulerHost scheduler, BrokerHost broker, CpuBackend backend)
    {
        _store = store;
        _scheduler = scheduler;
        _broker = broker;
        Backend = backend;
        Client = new GpuPoolClient(scheduler.Endpoint);
    }

    public GpuPoolClient Client { get; }

    /// <summary>The broker's device backend, for work run on its device in this process without a session.</summary>
    public CpuBackend Backend { get; }

    public static async Task<BenchPool> StartAsync(ulong deviceMemory, CancellationToken cancellationToken, int maxMessageBytes = 16 << 20)
    {
        // The hosts would watch their content root, the working directory, for changes to config files; on a shared
        // build machine that tree churns (the watcher took 13% of a training benchmark's CPU in a profile run from /tmp).
        // No benchmark reads config files.
        Environment.SetEnvironmentVariable("DOTNET_hostBuilder__reloadConfigOnChange", "false");
        var key = LeaseToken.CreateKey();
        var store = new EmbeddedClusterStore();
        var backend = new CpuBackend(1, deviceMemory);
        var scheduler = await SchedulerHost.StartAsync(new SchedulerOptions { Port = 0, SigningKey = key, OpenTenants = true, AnonymousTenants = true }, store, cancellationToken: cancellationToken).ConfigureAwait(false);
        var broker = await BrokerHost.StartAsync(
            new BrokerOptions
            {
                BrokerId = "bench-broker",
                Port = 0,
                FastPathPort = 0,
                MaxMessageBytes = maxMessageBytes,
                SchedulerPublicKey = LeaseToken.ImportPem(LeaseToken.ExportPublicPem(key)),
                Backend = backend,
            },
            store,
            cancellationToken: cancellationToken).ConfigureAwait(false);
        return new BenchPool(store, scheduler, broker, backend);
    }

    public Task<Lease> LeaseAsync(ulong memory, int share, CancellationToken cancellationToken)
        => Client.AllocateAsync(new LeaseRequest { Tenant = "bench", MemoryBytes = memory, ComputeShare = share }, cancellationToken);

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await _broker.DisposeAsync().ConfigureAwait(false);
        await _scheduler.DisposeAsync().ConfigureAwait(false);
        await _store.DisposeAsync().ConfigureAwait(false);
    }
}
