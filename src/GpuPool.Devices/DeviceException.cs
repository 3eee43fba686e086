namespace GpuPool.Devices;

/// <summary>Why a device operation failed, in backend-neutral terms; the broker maps it onto the wire's ErrorCode.</summary>
public enum DeviceErrorCode
{
    InvalidArgument,
    OutOfMemory,
    InvalidAddress,
    NotFound,
    NotSupported,
    LaunchFailed,

    /// <summary>A kernel ran past its launch's deadline and was stopped.</summary>
    LaunchTimeout,
    NotReady,
    ContextClosed,

    /// <summary>The bytes of a copy stopped arriving: the connection that carried them closed before the copy was whole.</summary>
    TransferFailed,
}

/// <summary>A device operation failed; the message names the operation and the bad value.</summary>
public sealed class DeviceException(DeviceErrorCode code, string message, Exception? inner = null) : Exception(message, inner)
{
    public DeviceErrorCode Code { get; } = code;
}
