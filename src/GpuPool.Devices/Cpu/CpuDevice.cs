using GpuPool.Devices.Contexts;
using GpuPool.Devices.Scheduling;

namespace GpuPool.Devices.Cpu;

/// <summary>
/// An emulated device in host memory: a memory budget that leases reserve from, and execution slots
/// (one per host core) shared between leases by compute share.
/// </summary>
public sealed class CpuDevice : IDevice
{
    private readonly DeviceLeases _leases;

    public CpuDevice(int index, ulong memoryTotal, int slots, TimeSpan? kernelDeadline = null)
    {
        KernelDeadline = kernelDeadline ?? CpuKernels.DefaultDeadline;
        Index = index;
        MemoryTotal = memoryTotal;
        _leases = new DeviceLeases(new FairShareDispatcher(slots));
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

    /// <summary>How long one launch of a program's kernel may run before it is stopped with LaunchTimeout.</summary>
    public TimeSpan KernelDeadline { get; }

    public string Name => "GpuPool CPU device";

    public string Uuid { get; }

    public string Backend => "cpu";

    public ulong MemoryTotal { get; }

    public ulong MemoryUsed => _leases.MemoryUsed;

    public ulong MemoryReserved => _leases.MemoryReserved;

    public int MultiprocessorCount { get; }

    public int ExecutionSlots => _leases.Dispatcher.Slots;

    public int DriverVersion => 0;

    public IReadOnlyDictionary<int, long> Attributes { get; }

    public int ContextCount => _leases.Count;

    internal FairShareDispatcher Dispatcher => _leases.Dispatcher;

    public IDeviceContext CreateContext(ContextOptions options)
        => _leases.Open(Index, options, MemoryTotal, "bytes", _ => CpuContext.Open(this, _leases, options));

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
}

/// <summary>The cpu backend: a configurable number of emulated devices.</summary>
public sealed class CpuBackend : IDeviceBackend
{
    public CpuBackend(int deviceCount = 1, ulong memoryPerDevice = 8UL << 30, int? slotsPerDevice = null, TimeSpan? kernelDeadline = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(deviceCount, 1);
        if (kernelDeadline is { } deadline && deadline <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(kernelDeadline), deadline, "a kernel deadline must be positive");
        }

        var slots = slotsPerDevice ?? Environment.ProcessorCount;
        ArgumentOutOfRangeException.ThrowIfLessThan(slots, 1);
        Devices = Enumerable.Range(0, deviceCount).Select(i => (IDevice)new CpuDevice(i, memoryPerDevice, slots, kernelDeadline)).ToArray();
        ReserveThreads(deviceCount * slots);
    }

    /// <summary>
    /// Kernels and copies run on thread-pool threads, each holding its thread for as long as it runs (a program's kernel
    /// spreads its blocks over more). With as few threads as cores, running kernels can hold them all, and the sockets'
    /// continuations that bring the next ops wait for the pool to add a thread, which it does about twice a second: a
    /// lease then has nothing queued for a hundred milliseconds at a time, and its share of the device is lost to its
    /// neighbours (a 750/250 split measured 2.2:1 so on a loaded machine). The pool keeps threads for the cores beyond
    /// those that kernels may hold.
    /// </summary>
    private static void ReserveThreads(int kernelSlots)
    {
        ThreadPool.GetMinThreads(out var workers, out var completion);
        var wanted = (int)Math.Min(1024L, Environment.ProcessorCount + (2L * kernelSlots));
        if (workers < wanted)
        {
            ThreadPool.SetMinThreads(wanted, completion);
        }
    }

    public string Name => "cpu";

    public IReadOnlyList<IDevice> Devices { get; }

    public void Dispose()
    {
    }
}
