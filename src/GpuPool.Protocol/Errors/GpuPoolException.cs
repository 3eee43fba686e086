using Google.Protobuf;
using Grpc.Core;
using GpuPool.Protocol.V1;

namespace GpuPool.Protocol.Errors;

/// <summary>
/// The one error type of GpuPool: a code a program can act on and a sentence a person can read.
/// Crosses the wire as a gRPC status with an <see cref="Error"/> in the "gpupool-error-bin" trailer.
/// </summary>
public sealed class GpuPoolException : Exception
{
    public const string TrailerKey = "gpupool-error-bin";

    public GpuPoolException(ErrorCode code, string message, ulong failedSeq = 0, string failedOp = "", Exception? inner = null)
        : base(message, inner)
    {
        Code = code;
        FailedSeq = failedSeq;
        FailedOp = failedOp;
    }

    public ErrorCode Code { get; }

    /// <summary>For a sticky error: the sequence number of the fire-and-forget op that failed, else 0.</summary>
    public ulong FailedSeq { get; }

    public string FailedOp { get; }

    public Error ToProto() => new() { Code = Code, Message = Message, FailedSeq = FailedSeq, FailedOp = FailedOp };

    public static GpuPoolException FromProto(Error error) => new(error.Code, error.Message, error.FailedSeq, error.FailedOp);

    /// <summary>The gRPC exception a service throws for this error, with the details in a trailer.</summary>
    public RpcException ToRpcException()
    {
        var trailers = new Metadata { { TrailerKey, ToProto().ToByteArray() } };
        return new RpcException(new Status(ToStatusCode(Code), Message), trailers);
    }

    /// <summary>
    /// Turns a failed call into a GpuPoolException: our own errors keep their code; transport failures
    /// become Unavailable or ResourceExhausted with a sentence that says what to do, naming
    /// <paramref name="server"/> ("broker b1 at http://10.0.0.5:7071") where the caller knows it.
    /// </summary>
    public static GpuPoolException FromRpc(RpcException ex, string what, string? server = null)
    {
        server ??= "the server";
        var bin = ex.Trailers.GetValueBytes(TrailerKey);
        if (bin is not null)
        {
            return FromProto(Error.Parser.ParseFrom(bin));
        }

        return ex.StatusCode switch
        {
            StatusCode.Internal when ex.Status.DebugException is IOException or System.Net.Http.HttpRequestException
                => new GpuPoolException(ErrorCode.Unavailable, $"{what}: the connection to {server} was lost ({ex.Status.Detail})", inner: ex),
            StatusCode.Unavailable => new GpuPoolException(ErrorCode.Unavailable, $"{what}: cannot reach {server} ({ex.Status.Detail})", inner: ex),
            StatusCode.ResourceExhausted => new GpuPoolException(ErrorCode.ResourceExhausted, $"{what}: the server refused a message larger than its limit ({ex.Status.Detail})", inner: ex),
            StatusCode.Cancelled => new GpuPoolException(ErrorCode.Unavailable, $"{what}: the call was cancelled ({ex.Status.Detail})", inner: ex),
            StatusCode.DeadlineExceeded => new GpuPoolException(ErrorCode.Unavailable, $"{what}: the call timed out ({ex.Status.Detail})", inner: ex),
            StatusCode.Unauthenticated => new GpuPoolException(ErrorCode.Unauthenticated, $"{what}: {ex.Status.Detail}", inner: ex),
            StatusCode.PermissionDenied => new GpuPoolException(ErrorCode.PermissionDenied, $"{what}: {ex.Status.Detail}", inner: ex),
            StatusCode.NotFound => new GpuPoolException(ErrorCode.NotFound, $"{what}: {ex.Status.Detail}", inner: ex),
            StatusCode.InvalidArgument => new GpuPoolException(ErrorCode.InvalidArgument, $"{what}: {ex.Status.Detail}", inner: ex),
            _ => new GpuPoolException(ErrorCode.Internal, $"{what}: {ex.StatusCode} {ex.Status.Detail}", inner: ex),
        };
    }

    public static StatusCode ToStatusCode(ErrorCode code) => code switch
    {
        ErrorCode.InvalidArgument or ErrorCode.InvalidAddress => StatusCode.InvalidArgument,
        ErrorCode.OutOfMemory or ErrorCode.ResourceExhausted or ErrorCode.QuotaExceeded => StatusCode.ResourceExhausted,
        ErrorCode.NotFound => StatusCode.NotFound,
        ErrorCode.Unauthenticated => StatusCode.Unauthenticated,
        ErrorCode.PermissionDenied => StatusCode.PermissionDenied,
        ErrorCode.LeaseEnded or ErrorCode.FailedPrecondition => StatusCode.FailedPrecondition,
        ErrorCode.NotSupported => StatusCode.Unimplemented,
        ErrorCode.Unavailable => StatusCode.Unavailable,
        ErrorCode.LaunchFailed or ErrorCode.LaunchTimeout => StatusCode.Aborted,
        _ => StatusCode.Internal,
    };
}
