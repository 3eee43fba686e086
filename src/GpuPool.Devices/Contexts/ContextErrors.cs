namespace GpuPool.Devices.Contexts;

/// <summary>The errors a context gives for a handle it does not have, or for any call once it is closed: one wording for every backend.</summary>
internal static class ContextErrors
{
    public static DeviceException Closed() => new(DeviceErrorCode.ContextClosed, "the lease's device context has been closed");

    public static DeviceException NoStream(ulong stream) => new(DeviceErrorCode.NotFound, $"stream {stream} does not exist in this lease");

    public static DeviceException NoEvent(ulong evt) => new(DeviceErrorCode.NotFound, $"event {evt} does not exist in this lease");

    public static DeviceException NoModule(ulong module) => new(DeviceErrorCode.NotFound, $"module {module} is not loaded in this lease");

    public static DeviceException NoFunction(ulong function)
        => new(DeviceErrorCode.NotFound, $"function {function} does not exist in this lease (get it from a loaded module first)");

    public static DeviceException NoKernel(ulong module, string name) => new(DeviceErrorCode.NotFound, $"no kernel named '{name}' in module {module}");

    public static DeviceException NoVariable(ulong module, string name) => new(DeviceErrorCode.NotFound, $"no variable named '{name}' in module {module}");
}

/// <summary>What each kind of range a stream op names is called in its bounds errors ("copy to host source: 0x… is not inside …").</summary>
internal static class RangeNames
{
    public const string CopyToDevice = "copy to device destination";
    public const string CopyToHost = "copy to host source";
    public const string DeviceCopySource = "device copy source";
    public const string DeviceCopyDestination = "device copy destination";
    public const string Memset = "memset destination";
}

/// <summary>
/// What a range is called in a bounds error: a fixed phrase (<see cref="RangeNames"/>), or a kernel's pointer parameter,
/// put into words only when an error needs it, so a check that passes builds no string.
/// </summary>
internal readonly struct RangeName
{
    private readonly string _phrase;
    private readonly string? _parameter;

    private RangeName(string phrase, string? parameter) => (_phrase, _parameter) = (phrase, parameter);

    public static RangeName KernelParameter(string kernel, string parameter) => new(kernel, parameter);

    public static implicit operator RangeName(string phrase) => new(phrase, null);

    public override string ToString() => _parameter is null ? _phrase : $"kernel {_phrase} parameter {_parameter}";
}
