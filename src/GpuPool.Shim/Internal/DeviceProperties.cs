using System.Collections.Frozen;
using System.Security.Cryptography;
using System.Text;
using GpuPool.Protocol.V1;

namespace GpuPool.Shim.Internal;

/// <summary>
/// The leased device as the program sees it, from the session description the broker sent at open: its name,
/// UUID, memory (the lease's limit, not the whole device's) and attributes. Attributes the broker does not send
/// get values typical of a compute-capability-7 device; any other valid attribute id is answered 0 (the feature
/// is absent), and an id beyond the driver API's range is CUDA_ERROR_INVALID_VALUE.
/// </summary>
internal sealed class DeviceProperties
{
    /// <summary>Attribute ids are 1.. this (CU_DEVICE_ATTRIBUTE_MAX of the driver API the shim reports is below it).</summary>
    public const int MaxAttribute = 140;

    private static readonly FrozenDictionary<int, long> Defaults = new Dictionary<int, long>
    {
        [1] = 1024,             // MAX_THREADS_PER_BLOCK
        [2] = 1024,             // MAX_BLOCK_DIM_X
        [3] = 1024,             // MAX_BLOCK_DIM_Y
        [4] = 64,               // MAX_BLOCK_DIM_Z
        [5] = int.MaxValue,     // MAX_GRID_DIM_X
        [6] = 65535,            // MAX_GRID_DIM_Y
        [7] = 65535,            // MAX_GRID_DIM_Z
        [8] = 48 * 1024,        // MAX_SHARED_MEMORY_PER_BLOCK
        [9] = 64 * 1024,        // TOTAL_CONSTANT_MEMORY
        [10] = 32,              // WARP_SIZE
        [11] = int.MaxValue,    // MAX_PITCH
        [12] = 65536,           // MAX_REGISTERS_PER_BLOCK
        [13] = 1_000_000,       // CLOCK_RATE (kHz)
        [14] = 512,             // TEXTURE_ALIGNMENT
        [15] = 1,               // GPU_OVERLAP
        [16] = 1,               // MULTIPROCESSOR_COUNT
        [30] = 512,             // SURFACE_ALIGNMENT
        [31] = 1,               // CONCURRENT_KERNELS
        [36] = 1_000_000,       // MEMORY_CLOCK_RATE (kHz)
        [37] = 256,             // GLOBAL_MEMORY_BUS_WIDTH
        [38] = 4 << 20,         // L2_CACHE_SIZE
        [39] = 2048,            // MAX_THREADS_PER_MULTIPROCESSOR
        [40] = 1,               // ASYNC_ENGINE_COUNT
        [51] = 32,              // TEXTURE_PITCH_ALIGNMENT
        [75] = 7,               // COMPUTE_CAPABILITY_MAJOR
        [76] = 0,               // COMPUTE_CAPABILITY_MINOR
        [79] = 1,               // GLOBAL_L1_CACHE_SUPPORTED
        [80] = 1,               // LOCAL_L1_CACHE_SUPPORTED
        [81] = 96 * 1024,       // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
        [82] = 65536,           // MAX_REGISTERS_PER_MULTIPROCESSOR
        [87] = 2,               // SINGLE_TO_DOUBLE_PRECISION_PERF_RATIO
        [106] = 32,             // MAX_BLOCKS_PER_MULTIPROCESSOR
    }.ToFrozenDictionary();

    private readonly SessionInfo _info;

    public DeviceProperties(SessionInfo info)
    {
        _info = info;
        Name = info.DeviceName.Length > 0 ? info.DeviceName : "GpuPool device";
        Uuid = UuidBytes(info.Uuid.Length > 0 ? info.Uuid : info.LeaseId);
        TotalMemory = info.MemoryLimitBytes;
        MaxThreadsPerBlock = (int)Attribute(1);
        MaxBlock = ((uint)Attribute(2), (uint)Attribute(3), (uint)Attribute(4));
        MaxGrid = ((uint)Math.Min(Attribute(5), uint.MaxValue), (uint)Math.Min(Attribute(6), uint.MaxValue), (uint)Math.Min(Attribute(7), uint.MaxValue));
        MaxSharedPerBlock = Attribute(8);
        WarpSize = (int)Attribute(10);
        Multiprocessors = (int)Math.Max(1, info.MultiprocessorCount > 0 ? info.MultiprocessorCount : Attribute(16));
        MaxThreadsPerMultiprocessor = (int)Attribute(39);
        MaxBlocksPerMultiprocessor = (int)Attribute(106);
        SharedPerMultiprocessor = Attribute(81);
    }

    public string Name { get; }

    public byte[] Uuid { get; }

    /// <summary>The lease's memory limit: the program sees its slice as the whole device.</summary>
    public ulong TotalMemory { get; }

    public int MaxThreadsPerBlock { get; }

    public (uint X, uint Y, uint Z) MaxBlock { get; }

    public (uint X, uint Y, uint Z) MaxGrid { get; }

    public long MaxSharedPerBlock { get; }

    public int WarpSize { get; }

    public int Multiprocessors { get; }

    public int MaxThreadsPerMultiprocessor { get; }

    public int MaxBlocksPerMultiprocessor { get; }

    public long SharedPerMultiprocessor { get; }

    public int ComputeMajor => (int)Attribute(75);

    public int ComputeMinor => (int)Attribute(76);

    /// <summary>PCI domain, bus and device as the session reports them (0 when the backend has no PCI device), for cuDeviceGetPCIBusId.</summary>
    public (int Domain, int Bus, int Device) Pci => ((int)Attribute(50), (int)Attribute(33), (int)Attribute(34));

    /// <summary>The PCI bus id as the driver spells it: domain:bus:device.function in hex, "%04x:%02x:%02x.0".</summary>
    public string PciBusId => $"{Pci.Domain:x4}:{Pci.Bus:x2}:{Pci.Device:x2}.0";

    /// <summary>
    /// The pitch cuMemAllocPitch rounds rows up to: the device's CU_DEVICE_ATTRIBUTE_TEXTURE_PITCH_ALIGNMENT when the
    /// session reports it, else 512.
    /// </summary>
    public ulong PitchAlignment => _info.Attributes.TryGetValue(51, out var reported) && reported > 0 ? (ulong)reported : 512;

    public long Attribute(int id)
    {
        if (id is < 1 or > MaxAttribute)
        {
            throw new CudaException(CuResult.InvalidValue, $"{id} is not a device attribute");
        }

        // What the shim itself serves, whatever the backend: host registration (the ranges are remembered) and the
        // default memory pool (cuMemAllocAsync).
        if (id is 99 or 115)
        {
            return 1;
        }

        if (id == 16)
        {
            return Math.Max(1, _info.MultiprocessorCount > 0 ? _info.MultiprocessorCount : _info.Attributes.GetValueOrDefault(16, 1));
        }

        if (_info.Attributes.TryGetValue(id, out var value))
        {
            return value;
        }

        // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: no more than the plain limit.
        return id == 97 ? Attribute(8) : Defaults.GetValueOrDefault(id, 0);
    }

    /// <summary>
    /// 16 bytes for cuDeviceGetUuid: the hex digits of an NVML-style UUID ("GPU-xxxxxxxx-xxxx-…") when it has 32,
    /// else a stable hash of the broker's device id.
    /// </summary>
    internal static byte[] UuidBytes(string uuid)
    {
        var hex = new StringBuilder();
        foreach (var c in uuid.StartsWith("GPU-", StringComparison.Ordinal) ? uuid[4..] : "")
        {
            if (char.IsAsciiHexDigit(c))
            {
                hex.Append(c);
            }
        }

        if (hex.Length == 32)
        {
            return Convert.FromHexString(hex.ToString());
        }

        return SHA256.HashData(Encoding.UTF8.GetBytes(uuid))[..16];
    }
}
