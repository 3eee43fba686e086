using GpuPool.Devices;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.Broker;

/// <summary>Maps backend errors onto the wire's error codes.</summary>
internal static class OpErrors
{
    public static ErrorCode ToCode(DeviceErrorCode code) => code switch
    {
        DeviceErrorCode.InvalidArgument => ErrorCode.InvalidArgument,
        DeviceErrorCode.OutOfMemory => ErrorCode.OutOfMemory,
        DeviceErrorCode.InvalidAddress => ErrorCode.InvalidAddress,
        DeviceErrorCode.NotFound => ErrorCode.NotFound,
        DeviceErrorCode.NotSupported => ErrorCode.NotSupported,
        DeviceErrorCode.LaunchFailed => ErrorCode.LaunchFailed,
        DeviceErrorCode.LaunchTimeout => ErrorCode.LaunchTimeout,
        DeviceErrorCode.NotReady => ErrorCode.FailedPrecondition,
        DeviceErrorCode.ContextClosed => ErrorCode.LeaseEnded,
        DeviceErrorCode.TransferFailed => ErrorCode.Unavailable,
        _ => ErrorCode.Internal,
    };

    public static GpuPoolException ToGpuPool(DeviceException ex) => new(ToCode(ex.Code), ex.Message, inner: ex);

    /// <summary>An error for the reply of a synchronizing call that surfaces an earlier op's failure.</summary>
    public static Error Sticky(StickyError sticky) => new()
    {
        Code = ToCode(sticky.Error.Code),
        Message = $"operation #{sticky.Op.Seq} ({sticky.Op.Op}) failed: {sticky.Error.Message}",
        FailedSeq = sticky.Op.Seq,
        FailedOp = sticky.Op.Op,
    };

    public static Error Own(DeviceException ex) => new() { Code = ToCode(ex.Code), Message = ex.Message };
}
