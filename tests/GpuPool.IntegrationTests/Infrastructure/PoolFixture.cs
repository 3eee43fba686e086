using System.Security.Cryptography;
using GpuPool.Broker;
using GpuPool.Broker.Hosting;
using GpuPool.Client;
using GpuPool.Coordination.Embedded;
using GpuPool.Devices;
using GpuPool.Devices.Cpu;
using GpuPool.Protocol.Tokens;
using GpuPool.Scheduler;
using GpuPool.Scheduler.Hosting;
using Microsoft.Extensions.Logging;

namespace GpuPool.IntegrationTests.Infrastructure;

/// <summary>
/// A real pool on loopback for one test class: an embedded store, a scheduler and a broker (real Kestrel on
/// port 0) with one emulated cpu device, and a client. Leases live 2 s without keepalives, so reclamation
/// shows within a few seconds.
/// </summary>
public class PoolFixture : IAsyncLifetime
{
    private CpuBackend? _backend;

    public const string BrokerId = "it-broker";
    public const ulong DeviceMemory = 4UL << 30;
    public const ulong DefaultLeaseMemory = 64UL << 20;

    /// <summary>
    /// The TTL of a lease that a test holds: long enough that a loaded machine's late keepalive never ends it (a 2 s TTL
    /// did, now and then, under a busy CI machine).
    /// </summary>
    public static readonly TimeSpan LeaseTtl = TimeSpan.FromSeconds(10);

    /// <summary>The TTL of a lease whose expiry a test waits for (it stops the keepalives): short, so the test is too.</summary>
    public static readonly TimeSpan ShortLeaseTtl = TimeSpan.FromSeconds(3);

    private EmbeddedClusterStore? _store;
    private SchedulerHost? _scheduler;
    private BrokerHost? _broker;
    private GpuPoolClient? _client;

    /// <summary>The scheduler's signing key: tests sign their own (expired, misdirected) tokens with it.</summary>
    public ECDsa SigningKey { get; } = LeaseToken.CreateKey();

    /// <summary>The admin credential of this pool's scheduler.</summary>
    public string AdminToken { get; } = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));

    public CpuBackend Backend => _backend ??= new(deviceCount: 1, memoryPerDevice: DeviceMemory, slotsPerDevice: DeviceSlots, kernelDeadline: KernelDeadline);

    public IDevice Device => Backend.Devices[0];

    public SchedulerHost Scheduler => _scheduler ?? throw new InvalidOperationException("the pool is not started");

    public BrokerHost Broker => _broker ?? throw new InvalidOperationException("the pool is not started");

    public GpuPoolClient Client => _client ?? throw new InvalidOperationException("the pool is not started");

    /// <summary>The device's execution slots (null: the backend's default, one per core).</summary>
    protected virtual int? DeviceSlots => null;

    /// <summary>How long one launch of a program's kernel may run (null: the backend's default).</summary>
    protected virtual TimeSpan? KernelDeadline => null;

    /// <summary>The TTL the scheduler gives a lease that asks for none.</summary>
    protected virtual TimeSpan DefaultLeaseTtl => LeaseTtl;

    /// <summary>Lets a derived fixture change the broker's limits.</summary>
    protected virtual void Configure(BrokerOptions options)
    {
    }

    /// <summary>Lets a derived fixture watch the broker's log (Kestrel's included); null logs nowhere.</summary>
    protected virtual ILoggerFactory? BrokerLoggerFactory => null;

    public async Task InitializeAsync()
    {
        _store = new EmbeddedClusterStore();
        _scheduler = await SchedulerHost.StartAsync(
            new SchedulerOptions { Port = 0, SigningKey = SigningKey, DefaultLeaseTtl = DefaultLeaseTtl, OpenTenants = true, AdminToken = AdminToken },
            _store);
        var options = new BrokerOptions
        {
            BrokerId = BrokerId,
            Port = 0,
            SchedulerPublicKey = LeaseToken.ImportPem(LeaseToken.ExportPublicPem(SigningKey)),
            Backend = Backend,

            // The registration carries the device's memory in use; refresh it every second. Its TTL is longer: a
            // kernel that holds both cores for its 2 s deadline (EngineBadInputTests) once starved another fixture's
            // heartbeat past a 3 s TTL, and the scheduler ended every lease on that live broker.
            RegistrationTtl = TimeSpan.FromSeconds(10),
            HeartbeatInterval = TimeSpan.FromSeconds(1),
        };
        Configure(options);
        _broker = await BrokerHost.StartAsync(options, _store, BrokerLoggerFactory);
        _client = AdminClient();
    }

    /// <summary>A new client of this pool's scheduler that acts as its admin (for the tenants it names); the caller disposes it.</summary>
    public GpuPoolClient AdminClient(Microsoft.Extensions.Logging.ILogger? logger = null)
        => new(Scheduler.Endpoint, new GpuPoolClientOptions { BearerToken = AdminToken, Logger = logger });

    public async Task DisposeAsync()
    {
        _client?.Dispose();
        if (_broker is not null)
        {
            await _broker.DisposeAsync();
        }

        if (_scheduler is not null)
        {
            await _scheduler.DisposeAsync();
        }

        if (_store is not null)
        {
            await _store.DisposeAsync();
        }

        Backend.Dispose();
        SigningKey.Dispose();
    }

    public Task<Lease> LeaseAsync(ulong memoryBytes = DefaultLeaseMemory, int share = 100, TimeSpan? ttl = null)
        => Client.AllocateAsync(new LeaseRequest { Tenant = "it", MemoryBytes = memoryBytes, ComputeShare = share, Ttl = ttl });

    /// <summary>
    /// The postcondition of every failure test: a fresh lease on the same broker can allocate, copy, launch,
    /// synchronize and read back the right numbers.
    /// </summary>
    public async Task AssertServesAnotherLeaseAsync(SessionTransportKind transport = SessionTransportKind.Auto)
    {
        await using var lease = await LeaseAsync();
        await using var session = await lease.OpenSessionAsync(transport);
        var module = await session.LoadBuiltinModuleAsync();
        var axpy = await session.GetFunctionAsync(module, "axpy_f32");

        const int n = 5000;
        var x = Enumerable.Range(0, n).Select(i => (float)i).ToArray();
        var y = Enumerable.Repeat(1f, n).ToArray();
        var px = await session.AllocAsync(n * sizeof(float));
        var py = await session.AllocAsync(n * sizeof(float));
        await session.CopyToDeviceAsync(px, x);
        await session.CopyToDeviceAsync(py, y);
        await session.LaunchAsync(axpy, new Dim3(20), new Dim3(256), new KernelArgs().U64(n).F32(2).Ptr(px).Ptr(py));
        await session.SynchronizeAsync();

        var result = await session.CopyToHostAsync<float>(py, n);
        for (var i = 0; i < n; i++)
        {
            Assert.Equal((2f * i) + 1f, result[i]);
        }
    }
}

/// <summary>A pool whose broker takes gRPC messages of at most 1 MiB.</summary>
public sealed class SmallMessagePoolFixture : PoolFixture
{
    public const int MaxMessageBytes = 1 << 20;

    protected override void Configure(BrokerOptions options)
    {
        options.MaxMessageBytes = MaxMessageBytes;
        options.ReplyChunkBytes = 256 << 10;
    }
}

/// <summary>A pool whose leases live <see cref="PoolFixture.ShortLeaseTtl"/> unless they ask otherwise, for tests of renewal itself.</summary>
public sealed class ShortLeasePoolFixture : PoolFixture
{
    protected override TimeSpan DefaultLeaseTtl => ShortLeaseTtl;
}

/// <summary>A pool whose cpu device stops a program's kernel after <see cref="Deadline"/>, for tests of kernels that never end.</summary>
public sealed class ShortKernelDeadlinePoolFixture : PoolFixture
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(2);

    protected override TimeSpan? KernelDeadline => Deadline;
}

/// <summary>A pool whose one cpu device has a single execution slot: every lease's work takes turns, so shares show.</summary>
public sealed class OneSlotPoolFixture : PoolFixture
{
    protected override int? DeviceSlots => 1;
}
