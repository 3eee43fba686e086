using GpuPool.Broker;
using GpuPool.Broker.Hosting;
using GpuPool.Client;
using GpuPool.Coordination.Embedded;
using GpuPool.Devices.Cpu;
using GpuPool.Protocol.Security;
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

    private BenchPool(EmbeddedClusterStore store, SchedulerHost scheduler, BrokerHost broker, CpuBackend backend, GpuPoolClientOptions clientOptions)
    {
        _store = store;
        _scheduler = scheduler;
        _broker = broker;
        Backend = backend;
        Client = new GpuPoolClient(scheduler.Endpoint, clientOptions);
    }

    public GpuPoolClient Client { get; }

    /// <summary>The broker's device backend, for work run on its device in this process without a session.</summary>
    public CpuBackend Backend { get; }

    /// <param name="tls">TLS on every port with a CA made for this run (the scheduler's and the broker's certificates name loopback).</param>
    /// <param name="slots">The device's execution slots (null: one per core).</param>
    public static async Task<BenchPool> StartAsync(ulong deviceMemory, CancellationToken cancellationToken, int maxMessageBytes = 16 << 20, bool tls = false, int? slots = null)
    {
        // The hosts would watch their content root, the working directory, for changes to config files; on a shared
        // build machine that tree churns (the watcher took 13% of a training benchmark's CPU in a profile run from /tmp).
        // No benchmark reads config files.
        Environment.SetEnvironmentVariable("DOTNET_hostBuilder__reloadConfigOnChange", "false");
        var key = LeaseToken.CreateKey();
        var store = new EmbeddedClusterStore();
        var backend = new CpuBackend(1, deviceMemory, slots);
        System.Security.Cryptography.X509Certificates.X509Certificate2? authority = null;
        PoolTls? Server(string name, PoolRole role)
            => authority is null ? null : new PoolTls(authority, PoolCertificates.Issue(authority, new PoolIdentity(name, role), ["127.0.0.1", "localhost"], TimeSpan.FromDays(1)));
        if (tls)
        {
            authority = PoolCertificates.CreateAuthority("bench", TimeSpan.FromDays(1));
        }

        var scheduler = await SchedulerHost.StartAsync(new SchedulerOptions { Port = 0, SigningKey = key, OpenTenants = true, AnonymousTenants = true, Tls = Server("scheduler", PoolRole.Scheduler) }, store, cancellationToken: cancellationToken).ConfigureAwait(false);
        var broker = await BrokerHost.StartAsync(
            new BrokerOptions
            {
                BrokerId = "bench-broker",
                Port = 0,
                FastPathPort = 0,
                MaxMessageBytes = maxMessageBytes,
                SchedulerPublicKey = LeaseToken.ImportPem(LeaseToken.ExportPublicPem(key)),
                Backend = backend,
                Tls = Server("bench-broker", PoolRole.Broker),
            },
            store,
            cancellationToken: cancellationToken).ConfigureAwait(false);
        return new BenchPool(store, scheduler, broker, backend, new GpuPoolClientOptions { Authority = authority });
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
