using GpuPool.Devices.Scheduling;

namespace GpuPool.Devices.Cpu;

/// <summary>
/// An emulated device in host memory: a memory budget that leases reserve from, and execution slots
/// (one per host core) shared between leases by compute share.
/// </summary>
public sealed class CpuDevice : IDevice
{
    private readonly object _gate = new();
    private readonly HashSet<CpuContext> _contexts = [];
    private long _used;

    public CpuDevice(int index, ulong memoryTotal, int slots)
    {
        Index = index;
        MemoryTotal = memoryTotal;
        Dispatcher = new FairShareDispatcher(slots);
        MultiprocessorCount = slots;
        Uuid = $"CPU-{StableHash(Environment.MachineName):x8}-{index:x4}";
        Attributes = new Dictionary<int, long>
        {
            [1] = 1024,            // MAX_THREADS_PER_BLOCK
            [2] = 1024,            // MAX_BLOCK_DIM_X
            [3] = 1024,            // MAX_BLOCK_DIM_Y
            [4] = 64,              // MAX_BLOCK_DIM_Z
            [5] = int.MaxValue,    // MAX_GRID_DIM_X
            [6] = 65535,           // MAX_GRID_DIM_Y
            [7] = 65535,           // MAX_GRID_DIM_Z
            [8] = 48 * 1024,       // MAX_SHARED_MEMORY_PER_BLOCK
            [10] = 32,             // WARP_SIZE
            [16] = slots,          // MULTIPROCESSOR_COUNT
            [75] = 7,              // COMPUTE_CAPABILITY_MAJOR
            [76] = 0,              // COMPUTE_CAPABILITY_MINOR
        };
    }

    public int Index { get; }

    public string Name => "GpuPool CPU device";

    public string Uuid { get; }

    public string Backend => "cpu";

    public ulong MemoryTotal { get; }

    public ulong MemoryUsed => (ulong)Interlocked.Read(ref _used);

    public ulong MemoryReserved
    {
        get
        {
            lock (_gate)
            {
                return Reserved();
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

    internal FairShareDispatcher Dispatcher { get; }

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

        lock (_gate)
        {
            var reserved = Reserved();
            if (options.MemoryLimit > MemoryTotal - reserved)
            {
                throw new DeviceException(DeviceErrorCode.OutOfMemory,
                    $"device {Index} cannot take a {options.MemoryLimit}-byte lease: {reserved} of its {MemoryTotal} bytes are already leased");
            }

            var context = new CpuContext(this, options);
            _contexts.Add(context);
            return context;
        }
    }

    internal void AddUsed(long delta) => Interlocked.Add(ref _used, delta);

    internal void Release(CpuContext context)
    {
        lock (_gate)
        {
            _contexts.Remove(context);
        }
    }

    // string.GetHashCode is randomized per process; a device's id must survive a restart.
    private static uint StableHash(string text)
    {
        var hash = 2166136261u;
        foreach (var c in text)
        {
            hash = (hash ^ c) * 16777619u;
        }

        return hash;
    }

    private ulong Reserved()
    {
        ulong sum = 0;
        foreach (var c in _contexts)
        {
            sum += c.MemoryLimit;
        }

        return sum;
    }
}

/// <summary>The cpu backend: a configurable number of emulated devices.</summary>
public sealed class CpuBackend : IDeviceBackend
{
    public CpuBackend(int deviceCount = 1, ulong memoryPerDevice = 8UL << 30, int? slotsPerDevice = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(deviceCount, 1);
        var slots = slotsPerDevice ?? Environment.ProcessorCount;
        Devices = Enumerable.Range(0, deviceCount).Select(i => (IDevice)new CpuDevice(i, memoryPerDevice, slots)).ToArray();
    }

    public string Name => "cpu";

    public IReadOnlyList<IDevice> Devices { get; }

    public void Dispose()
    {
    }
}
