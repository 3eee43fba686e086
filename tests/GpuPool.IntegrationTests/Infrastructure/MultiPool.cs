using System.Security.Cryptography;
using GpuPool.Broker;
using GpuPool.Broker.Hosting;
using GpuPool.Client;
using GpuPool.Client.Admin;
using GpuPool.Coordination;
using GpuPool.Coordination.Embedded;
using GpuPool.Devices.Cpu;
using GpuPool.Protocol.Tokens;
using GpuPool.Scheduler;
using GpuPool.Scheduler.Hosting;

namespace GpuPool.IntegrationTests.Infrastructure;

/// <summary>
/// A pool of several brokers (each its own Kestrel servers and cpu devices) and one or more scheduler
/// replicas sharing one embedded store, all in this process on loopback ports; one per test, so tests may
/// change quotas and kill parts freely. Tenants need quotas (no open tenants) unless a test says otherwise.
/// </summary>
public sealed class MultiPool : IAsyncDisposable
{
    public const ulong DeviceMemory = 1UL << 30;

    private readonly List<SchedulerHost> _schedulers = [];
    private readonly Dictionary<string, (BrokerHost Host, CpuBackend Backend)> _brokers = new(StringComparer.Ordinal);
    private readonly List<GpuPoolClient> _clients = [];
    private readonly Action<SchedulerOptions>? _configure;

    private MultiPool(IClusterStore store, Action<SchedulerOptions>? configure)
    {
        Store = store;
        _configure = configure;
    }

    public IClusterStore Store { get; }

    public ECDsa SigningKey { get; } = LeaseToken.CreateKey();

    public string AdminToken { get; } = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));

    public IReadOnlyList<SchedulerHost> Schedulers => _schedulers;

    public SchedulerHost Leader => _schedulers.Single(s => s.IsLeader);

    /// <summary>Starts brokers with the given device counts (broker ids b0, b1, …) and <paramref name="replicas"/> scheduler replicas.</summary>
    public static async Task<MultiPool> StartAsync(int[] devicesPerBroker, int replicas = 1, Action<SchedulerOptions>? configure = null)
    {
        var pool = new MultiPool(new EmbeddedClusterStore(), configure);
        try
        {
            for (var i = 0; i < replicas; i++)
            {
                await pool.AddSchedulerAsync();
            }

            for (var i = 0; i < devicesPerBroker.Length; i++)
            {
                await pool.AddBrokerAsync($"b{i}", devicesPerBroker[i]);
            }

            // The leader has seen every broker before a test asks for room.
            var client = pool.Client();
            await Poll.UntilAsync(async () => (await client.ListClusterAsync()).Devices.Count == devicesPerBroker.Sum(), TimeSpan.FromSeconds(10), "the scheduler saw every broker");
            return pool;
        }
        catch
        {
            await pool.DisposeAsync();
            throw;
        }
    }

    public async Task<SchedulerHost> AddSchedulerAsync()
    {
        var options = new SchedulerOptions
        {
            Port = 0,
            SigningKey = SigningKey,
            AdminToken = AdminToken,
            DefaultLeaseTtl = TimeSpan.FromSeconds(3),
            PreemptionGrace = TimeSpan.FromSeconds(1),
            TickInterval = TimeSpan.FromMilliseconds(50),
            LeaderTtl = TimeSpan.FromSeconds(2),
        };
        _configure?.Invoke(options);
        var host = await SchedulerHost.StartAsync(options, Store);
        _schedulers.Add(host);
        return host;
    }

    public async Task<BrokerHost> AddBrokerAsync(string id, int devices)
    {
        var backend = new CpuBackend(deviceCount: devices, memoryPerDevice: DeviceMemory);
        var host = await BrokerHost.StartAsync(
            new BrokerOptions
            {
                BrokerId = id,
                Port = 0,
                FastPathPort = 0,
                SchedulerPublicKey = LeaseToken.ImportPem(LeaseToken.ExportPublicPem(SigningKey)),
                Backend = backend,
                // A stopped broker ends its registration at once (StopBrokerAsync), so no test waits on this TTL; a
                // short one let a loaded machine's late heartbeat drop a live broker and every lease on it.
                RegistrationTtl = TimeSpan.FromSeconds(10),
            },
            Store);
        _brokers[id] = (host, backend);
        return host;
    }

    /// <summary>Stops a broker the way a crash looks to the pool: its registration ends.</summary>
    public async Task StopBrokerAsync(string id)
    {
        var (host, backend) = _brokers[id];
        _brokers.Remove(id);
        await host.DisposeAsync();
        backend.Dispose();
    }

    public async Task StopSchedulerAsync(SchedulerHost scheduler)
    {
        _schedulers.Remove(scheduler);
        await scheduler.DisposeAsync();
    }

    /// <summary>A client of the given replica (the first by default) that acts as the pool's admin, for the tenants it names.</summary>
    public GpuPoolClient Client(SchedulerHost? scheduler = null) => ClientWith(AdminToken, scheduler);

    /// <summary>A client of the given replica (the first by default) that presents <paramref name="bearerToken"/> (null: no credential).</summary>
    public GpuPoolClient ClientWith(string? bearerToken, SchedulerHost? scheduler = null)
    {
        var client = new GpuPoolClient((scheduler ?? _schedulers[0]).Endpoint, new GpuPoolClientOptions { BearerToken = bearerToken });
        _clients.Add(client);
        return client;
    }

    /// <summary>The admin SDK over a client with no credential of its own, sending <paramref name="token"/> ("": the pool's admin token; null: none).</summary>
    public PoolAdmin Admin(string? token = "", SchedulerHost? scheduler = null)
        => new(ClientWith(null, scheduler), token == "" ? AdminToken : token);

    public async ValueTask DisposeAsync()
    {
        foreach (var client in _clients)
        {
            client.Dispose();
        }

        foreach (var id in _brokers.Keys.ToArray())
        {
            await StopBrokerAsync(id);
        }

        foreach (var scheduler in _schedulers.ToArray())
        {
            await StopSchedulerAsync(scheduler);
        }

        await Store.DisposeAsync();
        SigningKey.Dispose();
    }
}
