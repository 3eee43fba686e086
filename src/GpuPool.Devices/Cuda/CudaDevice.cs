using System.Runtime.InteropServices;
using GpuPool.Devices.Cuda.Native;
using GpuPool.Devices.Scheduling;

namespace GpuPool.Devices.Cuda;

/// <summary>
/// One NVIDIA GPU: the memory leases may reserve (the device's memory less a reserve for the driver), the leases'
/// contexts on it, and the fair-share dispatcher that its kernels pass. Inventory comes from the driver, telemetry
/// from NVML.
/// </summary>
public sealed unsafe class CudaDevice : IDevice
{
    /// <summary>CU_DEVICE_ATTRIBUTE_* ids served to clients from the session cache (those of the shim's header).</summary>
    private static readonly int[] AttributeIds =
    [
        .. Enumerable.Range(1, 20), .. Enumerable.Range(30, 12), 50, 51, 75, 76, .. Enumerable.Range(78, 13), 95, 97, 99, 102, 106, 108, 109, 111, 115,
    ];

    private readonly Lock _gate = new();
    private readonly HashSet<CudaContext> _contexts = [];
    private readonly nint? _nvml;
    private long _used;

    internal CudaDevice(int index, int ordinal, CudaOptions options, PinnedStagingPool staging, NvmlSession? nvml)
    {
        Index = index;
        Ordinal = ordinal;
        Options = options;
        Staging = staging;

        var name = stackalloc byte[256];
        CudaErrors.Check(CuApi.cuDeviceGetName(name, 256, ordinal), "cuDeviceGetName", $"device {ordinal}");
        Name = Marshal.PtrToStringUTF8((nint)name) ?? $"CUDA device {ordinal}";
        CudaErrors.Check(CuApi.cuDeviceTotalMem_v2(out var total, ordinal), "cuDeviceTotalMem_v2", $"device {ordinal}");
        PhysicalMemory = total;
        MemoryTotal = total > options.ReservedBytesPerDevice ? total - options.ReservedBytesPerDevice : 0;
        Uuid = ReadUuid(ordinal);

        var attributes = new Dictionary<int, long>();
        foreach (var id in AttributeIds)
        {
            // An attribute this driver does not know is left out, as the shim's getters then say.
            if (CuApi.cuDeviceGetAttribute(out var value, id, ordinal) == CudaErrors.Success)
            {
                attributes[id] = value;
            }
        }

        Attributes = attributes;
        MultiprocessorCount = (int)attributes.GetValueOrDefault(16, 1);
        Dispatcher = new FairShareDispatcher(options.KernelSlots);
        _nvml = nvml?.FindByUuid(Uuid);
    }

    public int Index { get; }

    public string Name { get; }

    /// <summary>"GPU-…", the UUID as NVML and nvidia-smi spell it.</summary>
    public string Uuid { get; }

    public string Backend => "cuda";

    /// <summary>What leases may reserve: the device's memory less <see cref="CudaOptions.ReservedBytesPerDevice"/>.</summary>
    public ulong MemoryTotal { get; }

    /// <summary>The device's whole memory (cuDeviceTotalMem).</summary>
    public ulong PhysicalMemory { get; }

    public ulong MemoryUsed => (ulong)Interlocked.Read(ref _used);

    public ulong MemoryReserved
    {
        get
        {
            lock (_gate)
            {
                return _contexts.Aggregate(0UL, (sum, c) => sum + c.MemoryLimit);
            }
        }
    }

    public int MultiprocessorCount { get; }

    public IReadOnlyDictionary<int, long> Attributes { get; }

    public int ContextCount
    {
        get
        {
            lock (_gate)
            {
                return _contexts.Count;
            }
        }
    }

    /// <summary>Whether NVML knows this device, so <see cref="ReadTelemetry"/> has readings.</summary>
    public bool HasTelemetry => _nvml is not null;

    /// <summary>The CUdevice.</summary>
    internal int Ordinal { get; }

    internal CudaOptions Options { get; }

    internal PinnedStagingPool Staging { get; }

    internal FairShareDispatcher Dispatcher { get; }

    public DeviceTelemetry? ReadTelemetry() => _nvml is { } handle ? NvmlSession.Read(handle) : null;

    public IDeviceContext CreateContext(ContextOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.MemoryLimit == 0)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, "a lease's memory limit must be at least 1 byte");
        }

        if (options.ComputeShare is < 1 or > 1000)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"compute share must be 1..1000 milli-GPU, not {options.ComputeShare}");
        }

        // One context at a time per device, so the reservation check and the free-memory check see the same contexts.
        lock (_gate)
        {
            ulong reserved = 0, promised = 0;
            foreach (var c in _contexts)
            {
                reserved += c.MemoryLimit;
                promised += c.MemoryLimit - Math.Min(c.MemoryLimit, c.MemoryUsed);
            }

            if (options.MemoryLimit > MemoryTotal - Math.Min(MemoryTotal, reserved))
            {
                throw new DeviceException(DeviceErrorCode.OutOfMemory,
                    $"device {Index} cannot take a {options.MemoryLimit}-byte lease: {reserved} of its {MemoryTotal} leasable bytes are already leased");
            }

            var context = CudaContext.Create(this, options, promised);
            _contexts.Add(context);
            return context;
        }
    }

    /// <summary>Refuses a launch shape the device cannot run, before it is queued, as the cpu backend does.</summary>
    internal void CheckGeometry(string kernel, LaunchDims d)
    {
        if (d.GridX == 0 || d.GridY == 0 || d.GridZ == 0 || d.BlockX == 0 || d.BlockY == 0 || d.BlockZ == 0)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"launch of {kernel}: grid and block dimensions must all be at least 1");
        }

        long Limit(int attribute, long fallback) => Attributes.GetValueOrDefault(attribute, fallback);
        if ((ulong)d.BlockX * d.BlockY * d.BlockZ > (ulong)Limit(1, 1024)
            || d.BlockX > Limit(2, 1024) || d.BlockY > Limit(3, 1024) || d.BlockZ > Limit(4, 64)
            || d.GridX > Limit(5, int.MaxValue) || d.GridY > Limit(6, 65535) || d.GridZ > Limit(7, 65535))
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument,
                $"launch of {kernel}: block {d.BlockX}x{d.BlockY}x{d.BlockZ} / grid {d.GridX}x{d.GridY}x{d.GridZ} is past the device's limits "
                + $"({Limit(1, 1024)} threads per block, block {Limit(2, 1024)}x{Limit(3, 1024)}x{Limit(4, 64)}, grid {Limit(5, int.MaxValue)}x{Limit(6, 65535)}x{Limit(7, 65535)})");
        }

        if (d.SharedMemBytes > Limit(8, 48 * 1024))
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument,
                $"launch of {kernel}: {d.SharedMemBytes} bytes of dynamic shared memory is more than the {Limit(8, 48 * 1024)} the device allows per block");
        }
    }

    internal void AddUsed(long delta) => Interlocked.Add(ref _used, delta);

    internal void Release(CudaContext context)
    {
        lock (_gate)
        {
            _contexts.Remove(context);
        }
    }

    /// <summary>The UUID as NVML spells it ("GPU-8-4-4-4-12" hex), so it matches nvidia-smi and the NVML handle.</summary>
    internal static string FormatUuid(ReadOnlySpan<byte> uuid)
    {
        var hex = Convert.ToHexStringLower(uuid);
        return $"GPU-{hex[..8]}-{hex[8..12]}-{hex[12..16]}-{hex[16..20]}-{hex[20..32]}";
    }

    private static string ReadUuid(int ordinal)
    {
        var uuid = stackalloc byte[16];
        try
        {
            if (CuApi.cuDeviceGetUuid(uuid, ordinal) == CudaErrors.Success)
            {
                return FormatUuid(new ReadOnlySpan<byte>(uuid, 16));
            }
        }
        catch (EntryPointNotFoundException)
        {
            // A driver older than CUDA 9.2.
        }

        return $"CUDA-{ordinal}";
    }
}
