using System.Diagnostics.CodeAnalysis;
using GpuPool.Devices.Cuda.Native;

namespace GpuPool.Devices.Cuda;

/// <summary>Settings of the cuda backend.</summary>
public sealed record CudaOptions
{
    /// <summary>The driver library: a name the loader searches for, or a path.</summary>
    public string DriverLibrary { get; init; } = CuApi.Library;

    /// <summary>NVML, for telemetry; optional.</summary>
    public string NvmlLibrary { get; init; } = Nvml.Library;

    /// <summary>
    /// Device memory kept back from leases for the driver: the backend's own primary context and each lease's
    /// context overhead (a few hundred MiB each). Leases may reserve the rest, which devices report as their total.
    /// </summary>
    public ulong ReservedBytesPerDevice { get; init; } = 2UL << 30;

    /// <summary>
    /// Kernels that may run on a device at once, from all leases together. One (the default) makes compute shares
    /// hold as time shares; more lets kernels of different leases overlap, at the cost of the shares' precision.
    /// </summary>
    public int KernelSlots { get; init; } = 1;

    /// <summary>
    /// How a stream's thread waits for the device: false (the driver's automatic choice, which spins while the
    /// process has fewer contexts than cores) answers soonest but keeps a core busy per waiting stream; true
    /// (CU_CTX_SCHED_BLOCKING_SYNC) sleeps in the kernel, at some microseconds per operation.
    /// </summary>
    public bool BlockingSync { get; init; }

    /// <summary>Size of one pinned staging buffer: the chunk a copy moves at a time.</summary>
    public int StagingBufferBytes { get; init; } = 8 << 20;

    /// <summary>The most pinned staging buffers, over all devices (a copy uses at most two).</summary>
    public int StagingBuffers { get; init; } = 8;

    /// <summary>How long closing a lease waits for its queued work before it destroys the context under it.</summary>
    public TimeSpan CloseGrace { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The defaults, with the driver's libraries taken from GPUPOOL_CUDA_DRIVER and GPUPOOL_NVML_LIBRARY where set
    /// (for a driver that is not on the loader's path).
    /// </summary>
    public static CudaOptions FromEnvironment()
    {
        var options = new CudaOptions();
        if (Environment.GetEnvironmentVariable("GPUPOOL_CUDA_DRIVER") is { Length: > 0 } driver)
        {
            options = options with { DriverLibrary = driver };
        }

        if (Environment.GetEnvironmentVariable("GPUPOOL_NVML_LIBRARY") is { Length: > 0 } nvml)
        {
            options = options with { NvmlLibrary = nvml };
        }

        return options;
    }
}

/// <summary>
/// The cuda backend: every CUDA device the driver shows, driven through the CUDA driver API (libcuda.so.1), with
/// inventory and telemetry from NVML (libnvidia-ml.so.1). Create it with <see cref="TryCreate(CudaOptions, out CudaBackend?, out string)"/>,
/// which says in one sentence why it cannot start on a machine without an NVIDIA driver or GPU.
/// </summary>
public sealed class CudaBackend : IDeviceBackend
{
    private readonly PinnedStagingPool _staging;
    private readonly NvmlSession? _nvml;
    private readonly int _stagingOrdinal;
    private int _disposed;

    private CudaBackend(CudaDevice[] devices, PinnedStagingPool staging, int stagingOrdinal, NvmlSession? nvml, string driverVersion, string telemetryNote)
    {
        Devices = devices;
        _staging = staging;
        _stagingOrdinal = stagingOrdinal;
        _nvml = nvml;
        DriverVersion = driverVersion;
        TelemetryNote = telemetryNote;
    }

    public string Name => "cuda";

    public IReadOnlyList<IDevice> Devices { get; }

    /// <summary>The CUDA version the driver supports, as "13.0".</summary>
    public string DriverVersion { get; }

    /// <summary>Empty when NVML serves telemetry; otherwise why not.</summary>
    public string TelemetryNote { get; }

    public static bool TryCreate([NotNullWhen(true)] out CudaBackend? backend, out string reason) => TryCreate(new CudaOptions(), out backend, out reason);

    /// <summary>
    /// Loads the driver, initializes it and opens every device. False, with one sentence in <paramref name="reason"/>,
    /// when that cannot be done: no driver library, cuInit failing (no device, a stub library), no device visible, or
    /// a driver too old. No exception escapes.
    /// </summary>
    public static bool TryCreate(CudaOptions options, [NotNullWhen(true)] out CudaBackend? backend, out string reason)
    {
        ArgumentNullException.ThrowIfNull(options);
        backend = null;
        if (!NativeLibraries.TryLoad(CuApi.Library, options.DriverLibrary, out var loadError))
        {
            reason = $"no NVIDIA driver: {options.DriverLibrary} could not be loaded ({loadError})";
            return false;
        }

        try
        {
            return TryStart(options, out backend, out reason);
        }
        catch (Exception ex) when (ex is DeviceException or EntryPointNotFoundException or DllNotFoundException or BadImageFormatException or ArgumentException or InvalidOperationException)
        {
            reason = ex is EntryPointNotFoundException
                ? $"the NVIDIA driver is too old for the cuda backend: {ex.Message}"
                : $"the cuda backend could not open the GPUs: {ex.Message}";
            return false;
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _staging.Dispose();
        _ = CuApi.cuDevicePrimaryCtxRelease_v2(_stagingOrdinal);
        _nvml?.Dispose();
    }

    private static unsafe bool TryStart(CudaOptions options, out CudaBackend? backend, out string reason)
    {
        backend = null;
        var result = CuApi.cuInit(0);
        if (result != CudaErrors.Success)
        {
            reason = $"cuInit failed: {CudaErrors.Describe(result)}";
            return false;
        }

        CudaErrors.Check(CuApi.cuDriverGetVersion(out var version), "cuDriverGetVersion");
        CudaErrors.Check(CuApi.cuDeviceGetCount(out var count), "cuDeviceGetCount");
        if (count == 0)
        {
            reason = "the NVIDIA driver sees no CUDA device (cuDeviceGetCount is 0; is CUDA_VISIBLE_DEVICES empty?)";
            return false;
        }

        CudaErrors.Check(CuApi.cuDeviceGet(out var first, 0), "cuDeviceGet");

        // Pinned staging memory belongs to a context; the first device's primary context lives as long as the backend
        // and the buffers are portable, so every lease's context on every device can copy through them.
        CudaErrors.Check(CuApi.cuDevicePrimaryCtxRetain(out var primary, first), "cuDevicePrimaryCtxRetain");
        var staging = new PinnedStagingPool(
            options.StagingBufferBytes,
            options.StagingBuffers,
            bytes =>
            {
                using var scope = new ContextScope(primary);
                CudaErrors.Check(CuApi.cuMemHostAlloc(out var pointer, (nuint)bytes, CuApi.MemHostAllocPortable), "cuMemHostAlloc", $"a {bytes}-byte staging buffer");
                return pointer;
            },
            pointer =>
            {
                using var scope = new ContextScope(primary);
                _ = CuApi.cuMemFreeHost(pointer);
            });

        var nvml = NvmlSession.TryOpen(options.NvmlLibrary, out var telemetryNote);
        try
        {
            var devices = new CudaDevice[count];
            for (var i = 0; i < count; i++)
            {
                CudaErrors.Check(CuApi.cuDeviceGet(out var device, i), "cuDeviceGet");
                devices[i] = new CudaDevice(i, device, options, staging, nvml);
            }

            if (nvml is not null && devices.Any(d => !d.HasTelemetry))
            {
                telemetryNote = "NVML does not list every CUDA device by UUID, so those report no utilization or temperature";
            }

            backend = new CudaBackend(devices, staging, first, nvml, $"{version / 1000}.{version % 1000 / 10}", telemetryNote);
            reason = "";
            return true;
        }
        catch
        {
            staging.Dispose();
            _ = CuApi.cuDevicePrimaryCtxRelease_v2(first);
            nvml?.Dispose();
            throw;
        }
    }
}
