using GpuPool.Broker;
using GpuPool.Broker.Hosting;
using GpuPool.Coordination;
using GpuPool.Coordination.Embedded;
using GpuPool.Devices;
using GpuPool.Devices.Cpu;
using GpuPool.Devices.Cuda;
using GpuPool.Protocol.Tokens;
using GpuPool.Scheduler;
using GpuPool.Scheduler.Hosting;
using Microsoft.Extensions.Logging;

namespace GpuPool.Cli.Hosting;

/// <summary>Settings of a whole pool on one machine.</summary>
internal sealed record LocalPoolOptions
{
    public string Listen { get; init; } = "127.0.0.1";

    /// <summary>The host the scheduler and the broker publish; null: the listen address, or the default route's for a wildcard.</summary>
    public string? Advertise { get; init; }

    public int SchedulerPort { get; init; } = 7070;

    public int BrokerPort { get; init; } = 7071;

    /// <summary>The broker's raw fast path; 0 picks a free port, -1 turns it off.</summary>
    public int FastPathPort { get; init; } = 7072;

    public string Backend { get; init; } = "auto";

    public int Devices { get; init; } = 1;

    public ulong DeviceMemory { get; init; } = 8UL << 30;

    /// <summary>How long one launch of a program's kernel may run on a cpu device before it is stopped.</summary>
    public TimeSpan KernelDeadline { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>Execution slots per device; 0: the backend's default (the host's cores on cpu, one on cuda).</summary>
    public int DeviceSlots { get; init; }

    public TimeSpan LeaseTtl { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Where the scheduler's key pair lives; null makes a throwaway key (the demo).</summary>
    public string? KeyPath { get; init; }

    /// <summary>The embedded store's file, so a restart keeps quotas and leases; null keeps the store in memory only.</summary>
    public string? StorePath { get; init; }

    /// <summary>The admin credential quota, priority and drain changes need; null refuses them.</summary>
    public string? AdminToken { get; init; }

    /// <summary>
    /// Where the pool's CA and certificates live (<see cref="PoolPki.ForLocalPool"/>): the scheduler and the broker serve
    /// TLS with certificates issued there at start. Null serves plaintext (--insecure).
    /// </summary>
    public string? PkiDir { get; init; }
}

/// <summary>
/// A whole pool in one process: the embedded store, a scheduler and a broker with its backend.
/// What <c>gpupool up</c> runs and what <c>gpupool demo</c> starts for itself.
/// </summary>
internal sealed class LocalPool : IAsyncDisposable
{
    private int _disposed;

    private LocalPool(IClusterStore store, SchedulerHost scheduler, BrokerHost broker, IDeviceBackend backend, string note)
    {
        Store = store;
        Scheduler = scheduler;
        Broker = broker;
        Backend = backend;
        BackendNote = note;
    }

    public IClusterStore Store { get; }

    /// <summary>The scheduler's TLS (its CA is what clients trust); null for a plaintext pool.</summary>
    public GpuPool.Protocol.Security.PoolTls? Tls { get; private init; }

    /// <summary>What the store's recovery had to drop (a record cut short by a crash), for the user.</summary>
    public IReadOnlyList<string> StoreWarnings => Store is EmbeddedClusterStore embedded ? embedded.RecoveryWarnings : [];

    public SchedulerHost Scheduler { get; }

    public BrokerHost Broker { get; }

    public IDeviceBackend Backend { get; }

    /// <summary>Why this backend was chosen, for the user.</summary>
    public string BackendNote { get; }

    public static async Task<LocalPool> StartAsync(LocalPoolOptions options, ILoggerFactory? loggerFactory, CancellationToken cancellationToken)
    {
        var (backend, note) = CreateBackend(options.Backend, options.Devices, options.DeviceMemory, options.KernelDeadline, options.DeviceSlots);
        var key = options.KeyPath is null ? LeaseToken.CreateKey() : LeaseToken.LoadOrCreatePrivateKey(options.KeyPath);
        var tls = options.PkiDir is null ? default : PoolPki.ForLocalPool(options.PkiDir, options.Advertise);
        var store = options.StorePath is null ? new EmbeddedClusterStore() : EmbeddedClusterStore.Open(options.StorePath);
        SchedulerHost? scheduler = null;
        try
        {
            scheduler = await SchedulerHost.StartAsync(
                new SchedulerOptions
                {
                    ListenAddress = options.Listen,
                    AdvertiseAddress = options.Advertise,
                    Port = options.SchedulerPort,
                    SigningKey = key,
                    DefaultLeaseTtl = options.LeaseTtl,
                    AdminToken = options.AdminToken,
                    Tls = tls.Scheduler,

                    // One machine: a tenant without a quota may use the whole pool until an admin sets one.
                    OpenTenants = true,
                },
                store, loggerFactory, cancellationToken).ConfigureAwait(false);
            var publicKey = LeaseToken.ImportPem(LeaseToken.ExportPublicPem(key));
            var broker = await BrokerHost.StartAsync(
                new BrokerOptions
                {
                    ListenAddress = options.Listen,
                    AdvertiseAddress = options.Advertise,
                    Port = options.BrokerPort,
                    FastPathPort = options.FastPathPort,
                    SchedulerPublicKey = publicKey,
                    Backend = backend,
                    Tls = tls.Broker,
                },
                store, loggerFactory, cancellationToken).ConfigureAwait(false);
            return new LocalPool(store, scheduler, broker, backend, note) { Tls = tls.Scheduler };
        }
        catch
        {
            if (scheduler is not null)
            {
                await scheduler.DisposeAsync().ConfigureAwait(false);
            }

            await store.DisposeAsync().ConfigureAwait(false);
            backend.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The device backend a --backend value names, and why it was chosen, for the user. <c>cuda</c> that cannot start
    /// is an ArgumentException whose message is one sentence saying why; <c>auto</c> then falls back to <c>cpu</c> and
    /// says why in the note. --devices and --device-memory shape only cpu devices; <paramref name="slots"/> (0: the
    /// backend's default) is either backend's execution slots per device.
    /// </summary>
    public static (IDeviceBackend Backend, string Note) CreateBackend(string name, int devices, ulong deviceMemory, TimeSpan? kernelDeadline = null, int slots = 0)
    {
        if (devices is < 1 or > 64)
        {
            throw new ArgumentException($"--devices must be 1..64, not {devices}");
        }

        if (slots is < 0 or > 1024)
        {
            throw new ArgumentException($"--device-slots must be 1..1024, not {slots}");
        }

        int? cpuSlots = slots > 0 ? slots : null;
        var cudaOptions = slots > 0 ? CudaOptions.FromEnvironment() with { KernelSlots = slots } : CudaOptions.FromEnvironment();
        switch (name)
        {
            case "cpu":
                return (new CpuBackend(devices, deviceMemory, cpuSlots, kernelDeadline), "cpu backend (emulated devices in host memory), as asked");
            case "auto":
                return CudaBackend.TryCreate(cudaOptions, out var found, out var why)
                    ? (found, CudaNote(found, "an NVIDIA driver and GPU were found"))
                    : (new CpuBackend(devices, deviceMemory, cpuSlots, kernelDeadline), $"cpu backend, because the cuda backend cannot start: {why}");
            case "cuda":
                return CudaBackend.TryCreate(cudaOptions, out var cuda, out var reason)
                    ? (cuda, CudaNote(cuda, "as asked"))
                    : throw new ArgumentException($"--backend cuda cannot start: {reason}");
            default:
                throw new ArgumentException($"--backend must be auto, cpu or cuda, not '{name}'");
        }
    }

    private static string CudaNote(CudaBackend backend, string why)
        => $"cuda backend ({backend.Devices.Count} GPU{(backend.Devices.Count == 1 ? "" : "s")}, driver for CUDA {backend.DriverVersion}), {why}"
            + (backend.TelemetryNote.Length > 0 ? $"; {backend.TelemetryNote}" : "");

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await Broker.DisposeAsync().ConfigureAwait(false);
        await Scheduler.DisposeAsync().ConfigureAwait(false);
        await Store.DisposeAsync().ConfigureAwait(false);
        Backend.Dispose();
    }
}
