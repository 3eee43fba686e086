using System.Diagnostics;
using GpuPool.Devices.Contexts;
using GpuPool.Devices.Streams;

namespace GpuPool.Devices.Cpu;

/// <summary>
/// The cpu backend's own side of a lease's context: streams drained on the thread pool, events timed by the host clock,
/// and nothing native to make or free. <see cref="Open"/> puts a lease's context together from it and the host memory.
/// </summary>
internal sealed class CpuContext : IContextRuntime
{
    private CpuContext()
    {
    }

    /// <summary>Every queued item ends (no kernel here runs for ever), so closing waits for them all.</summary>
    public TimeSpan CloseGrace => Timeout.InfiniteTimeSpan;

    public static DeviceContext Open(CpuDevice device, DeviceLeases leases, ContextOptions options)
    {
        var allocations = new AllocationTable();
        var memory = new HostMemory(allocations);
        var kernels = new CpuKernels(memory)
        {
            // A program's kernels spread their blocks over the lease's share of the device's workers: a slice of half
            // the compute gets half of them (at least one), as a GPU slice gets its share of the multiprocessors.
            Parallelism = Math.Max(1, (int)Math.Round(device.MultiprocessorCount * options.ComputeShare / 1000.0)),
            SharedLimit = (ulong)device.Attributes[8],
            Deadline = device.KernelDeadline,
            CacheScope = options.LeaseId,
        };
        return new DeviceContext(device, leases, options, new ContextBackend(allocations, memory, memory, kernels, new CpuContext()));
    }

    public WorkStream CreateStream(ulong id, DeviceContext owner) => new CpuStream(owner, id);

    public nint CreateEvent() => 0;

    public void DestroyEvent(nint evt)
    {
    }

    /// <summary>The stream has reached the record: on this backend that is the device reaching it, and the host's clock times it.</summary>
    public void RecordEvent(nint evt, WorkStream stream)
    {
    }

    public float ElapsedMilliseconds(ContextEvent start, ContextEvent end) => (float)Stopwatch.GetElapsedTime(start.Timestamp, end.Timestamp).TotalMilliseconds;

    public void ThrowIfUnusable()
    {
    }

    public void Destroy()
    {
    }
}
