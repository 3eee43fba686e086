using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Tests;

/// <summary>How broker errors become CUresults: the table in docs/shim.md.</summary>
public sealed class ErrorMappingTests
{
    [Theory]
    [InlineData(ErrorCode.InvalidArgument, "", (int)CuResult.InvalidValue)]
    [InlineData(ErrorCode.InvalidAddress, "memcpy_htod", (int)CuResult.InvalidValue)]
    [InlineData(ErrorCode.InvalidAddress, "launch", (int)CuResult.IllegalAddress)]
    [InlineData(ErrorCode.OutOfMemory, "", (int)CuResult.OutOfMemory)]
    [InlineData(ErrorCode.ResourceExhausted, "", (int)CuResult.OutOfMemory)]
    [InlineData(ErrorCode.NotFound, "", (int)CuResult.NotFound)]
    [InlineData(ErrorCode.NotSupported, "", (int)CuResult.NotSupported)]
    [InlineData(ErrorCode.Unauthenticated, "", (int)CuResult.NotPermitted)]
    [InlineData(ErrorCode.PermissionDenied, "", (int)CuResult.NotPermitted)]
    [InlineData(ErrorCode.LeaseEnded, "", (int)CuResult.LaunchFailed)]
    [InlineData(ErrorCode.Unavailable, "", (int)CuResult.LaunchFailed)]
    [InlineData(ErrorCode.LaunchFailed, "launch", (int)CuResult.LaunchFailed)]
    [InlineData(ErrorCode.FailedPrecondition, "", (int)CuResult.IllegalState)]
    [InlineData(ErrorCode.Internal, "", (int)CuResult.Unknown)]
    public void Broker_errors_map_to_the_matching_cuda_result(ErrorCode code, string failedOp, int expected)
        => Assert.Equal((CuResult)expected, Errors.Map(new GpuPoolException(code, "x", 1, failedOp)));

    [Fact]
    public void The_shims_own_checks_keep_their_result()
        => Assert.Equal(CuResult.InvalidHandle, Errors.Map(new CudaException(CuResult.InvalidHandle, "x")));

    [Fact]
    public void A_broker_that_does_not_answer_is_a_launch_timeout()
        => Assert.Equal(CuResult.LaunchTimeout, Errors.Map(new ShimTimeoutException("x")));

    [Fact]
    public void Anything_else_is_unknown_not_a_crash()
        => Assert.Equal(CuResult.Unknown, Errors.Map(new InvalidOperationException("bug")));

    [Fact]
    public void Every_result_the_shim_returns_has_a_name_and_a_description()
    {
        foreach (var code in Enum.GetValues<CuResult>())
        {
            Assert.True(CuResultText.IsKnown((int)code), code.ToString());
            Assert.StartsWith("CUDA_", CuResultText.Name(code), StringComparison.Ordinal);
        }
    }
}
