using System.Runtime.InteropServices;
using GpuPool.Devices.Contexts;
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
        // Every id up to the shim's range: the program sees the device's own values, compute capability included.
        .. Enumerable.Range(1, 140),
    ];

    private readonly DeviceLeases _leases;
    private readonly nint? _nvml;

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
        CudaErrors.Check(CuApi.cuDriverGetVersion(out var driverVersion), "cuDriverGetVersion");
        DriverVersion = driverVersion;

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
        _leases = new DeviceLeases(new FairShareDispatcher(options.KernelSlots));
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

    public ulong MemoryUsed => _leases.MemoryUsed;

    public ulong MemoryReserved => _leases.MemoryReserved;

    public int MultiprocessorCount { get; }

    public int ExecutionSlots => _leases.Dispatcher.Slots;

    public int DriverVersion { get; }

    public IReadOnlyDictionary<int, long> Attributes { get; }

    public int ContextCount => _leases.Count;

    /// <summary>Whether NVML knows this device, so <see cref="ReadTelemetry"/> has readings.</summary>
    public bool HasTelemetry => _nvml is not null;

    /// <summary>The CUdevice.</summary>
    internal int Ordinal { get; }

    internal CudaOptions Options { get; }

    internal PinnedStagingPool Staging { get; }

    internal FairShareDispatcher Dispatcher => _leases.Dispatcher;

    public DeviceTelemetry? ReadTelemetry() => _nvml is { } handle ? NvmlSession.Read(handle) : null;

    public IDeviceContext CreateContext(ContextOptions options)
        => _leases.Open(Index, options, MemoryTotal, "leasable bytes", promised => CudaContext.Open(this, _leases, options, promised));

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
