using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.Shim.Internal;

/// <summary>A failure the shim itself detects (bad argument, unknown handle), with the CUresult to return.</summary>
internal sealed class CudaException(CuResult result, string message) : Exception(message)
{
    public CuResult Result { get; } = result;
}

/// <summary>
/// Turns whatever an export's body threw into the CUresult it returns. Nothing may cross the native
/// boundary as an exception, so every export ends in <see cref="Report"/>.
/// </summary>
internal static class Errors
{
    /// <summary>Maps <paramref name="ex"/> to a CUresult, logs it when GPUPOOL_SHIM_LOG is set, and returns it.</summary>
    public static CuResult Report(string call, Exception ex)
    {
        var result = Map(ex);
        if (ex is GpuPoolException { Code: ErrorCode.Unavailable or ErrorCode.LeaseEnded } lost)
        {
            Driver.MarkLost(lost.Message);
        }
        else if (ex is ShimTimeoutException)
        {
            Driver.MarkLost(ex.Message);
        }

        if (result is not CuResult.NotReady)
        {
            ShimLog.Failure(call, result, ex);
        }

        if (result is CuResult.NotSupported && ex is not CudaException && !ShimLog.Verbose)
        {
            var refused = ex is AggregateException { InnerException: { } inner } ? inner : ex;
            // What the broker's backend cannot do (a kernel the cpu backend cannot run): a program reports only the
            // code, so the broker's sentence is said once, whatever the log setting.
            ShimLog.OnceAlways("refused:" + refused.Message, $"{call}: {refused.Message}");
        }

        return result;
    }

    public static CuResult Map(Exception ex) => ex switch
    {
        CudaException c => c.Result,
        GpuPoolException g => FromCode(g.Code, g.FailedOp),
        ShimTimeoutException => CuResult.LaunchTimeout,
        OutOfMemoryException => CuResult.OutOfMemory,
        _ => CuResult.Unknown,
    };

    /// <summary>
    /// The CUresult for a broker error. A bad address is CUDA_ERROR_INVALID_VALUE, as the driver answers for a
    /// copy or memset out of bounds, except when a kernel launch touched it, which the driver reports as
    /// CUDA_ERROR_ILLEGAL_ADDRESS. A lost broker or an ended lease is CUDA_ERROR_LAUNCH_FAILED: the context is
    /// unusable from then on, as after a failed launch on a real device.
    /// </summary>
    public static CuResult FromCode(ErrorCode code, string failedOp) => code switch
    {
        ErrorCode.InvalidArgument => CuResult.InvalidValue,
        ErrorCode.InvalidAddress => failedOp == "launch" ? CuResult.IllegalAddress : CuResult.InvalidValue,
        ErrorCode.OutOfMemory or ErrorCode.ResourceExhausted => CuResult.OutOfMemory,
        ErrorCode.NotFound => CuResult.NotFound,
        ErrorCode.NotSupported => CuResult.NotSupported,
        ErrorCode.Unauthenticated or ErrorCode.PermissionDenied => CuResult.NotPermitted,
        ErrorCode.LeaseEnded or ErrorCode.Unavailable or ErrorCode.LaunchFailed => CuResult.LaunchFailed,
        ErrorCode.LaunchTimeout => CuResult.LaunchTimeout,
        ErrorCode.FailedPrecondition => CuResult.IllegalState,
        _ => CuResult.Unknown,
    };
}

/// <summary>The broker did not answer within GPUPOOL_SHIM_TIMEOUT.</summary>
internal sealed class ShimTimeoutException(string message) : Exception(message);
