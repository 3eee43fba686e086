using GpuPool.Devices.Scheduling;

namespace GpuPool.Devices.Contexts;

/// <summary>
/// The lease contexts open on one device: the memory they reserve and use, and the fair-share dispatcher their work
/// passes. A context opens only while the leases' limits fit the device's leasable memory: it is never oversubscribed.
/// </summary>
internal sealed class DeviceLeases(FairShareDispatcher dispatcher)
{
    private readonly Lock _gate = new();
    private readonly HashSet<DeviceContext> _contexts = [];
    private long _used;

    public FairShareDispatcher Dispatcher { get; } = dispatcher;

    /// <summary>Bytes allocated by all contexts.</summary>
    public ulong MemoryUsed => (ulong)Interlocked.Read(ref _used);

    /// <summary>Sum of the open contexts' memory limits.</summary>
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

    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _contexts.Count;
            }
        }
    }

    /// <summary>
    /// Checks the options and the room left of <paramref name="leasable"/> bytes, then opens the context with
    /// <paramref name="open"/>, which is given what the other leases may still allocate. One context opens at a time per
    /// device, so the backend's own check of free memory sees the same contexts.
    /// </summary>
    public DeviceContext Open(int device, ContextOptions options, ulong leasable, string leasableNoun, Func<ulong, DeviceContext> open)
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

        if (!Enum.IsDefined(options.ShareMode))
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"share mode {(int)options.ShareMode} is not one this broker knows: work-conserving (0) or capped (1)");
        }

        lock (_gate)
        {
            ulong reserved = 0, promised = 0;
            foreach (var c in _contexts)
            {
                reserved += c.MemoryLimit;
                promised += c.MemoryLimit - Math.Min(c.MemoryLimit, c.MemoryUsed);
            }

            if (options.MemoryLimit > leasable - Math.Min(leasable, reserved))
            {
                throw new DeviceException(DeviceErrorCode.OutOfMemory,
                    $"device {device} cannot take a {options.MemoryLimit}-byte lease: {reserved} of its {leasable} {leasableNoun} are already leased");
            }

            var context = open(promised);
            _contexts.Add(context);
            return context;
        }
    }

    public void AddUsed(long delta) => Interlocked.Add(ref _used, delta);

    public void Release(DeviceContext context)
    {
        lock (_gate)
        {
            _contexts.Remove(context);
        }
    }
}
