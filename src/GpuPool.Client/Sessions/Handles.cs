namespace GpuPool.Client;

/// <summary>A device address inside a lease's memory.</summary>
public readonly record struct DevicePtr(ulong Address)
{
    public static DevicePtr operator +(DevicePtr ptr, ulong offset) => new(ptr.Address + offset);

    public DevicePtr Add(ulong offset) => this + offset;

    public override string ToString() => $"0x{Address:x}";
}

/// <summary>A device stream; <see cref="Default"/> is the context's default stream.</summary>
public readonly record struct DeviceStream(ulong Id)
{
    public static DeviceStream Default => default;
}

public readonly record struct DeviceEvent(ulong Id);

public readonly record struct DeviceModule(ulong Id);

/// <summary>A module-scope variable of a loaded module: where it lives on the device and its size in bytes.</summary>
public readonly record struct DeviceGlobal(DevicePtr Address, ulong Size, string Name);

/// <summary>A kernel in a loaded module, ready to launch.</summary>
public readonly record struct KernelFunction(ulong Handle, string Name);

/// <summary>Launch dimensions.</summary>
public readonly record struct Dim3(uint X, uint Y = 1, uint Z = 1)
{
    public static implicit operator Dim3(uint x) => new(x);
}

/// <summary>
/// What a lease's work has taken of its device, as its broker measured it: the device time so far, the fraction of the
/// device's time it took over the last 10 s (1 is the whole device; a capped lease of share 250 stays near 0.25), and its
/// memory in use of its limit.
/// </summary>
public readonly record struct DeviceUsage(TimeSpan DeviceTime, double RecentShare, ulong MemoryUsed, ulong MemoryLimit);
