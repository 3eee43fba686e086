using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// Host functions and stream callbacks: run on this machine, on the shim's callback thread, once the work queued
/// before them on their stream has completed; work queued on that stream after them waits until they have returned
/// (Driver.HostFunctions says what blocks). A stream callback gets the failure of the work before it, if any; a host
/// function is not called then, as the driver documents.
/// </summary>
internal static unsafe partial class Cuda
{
    [UnmanagedCallersOnly(EntryPoint = "cuLaunchHostFunc")]
    internal static CuResult LaunchHostFunc(nint stream, nint function, nint userData) => QueueHostCall("cuLaunchHostFunc", stream, function, userData, 0, isStreamCallback: false);

    [UnmanagedCallersOnly(EntryPoint = "cuStreamAddCallback")]
    internal static CuResult StreamAddCallback(nint stream, nint callback, nint userData, uint flags) => QueueHostCall("cuStreamAddCallback", stream, callback, userData, flags, isStreamCallback: true);

    private static CuResult QueueHostCall(string call, nint stream, nint function, nint userData, uint flags, bool isStreamCallback)
    {
        try
        {
            var driver = Driver.Instance;
            _ = Driver.Current();
            if (function == 0)
            {
                throw new CudaException(CuResult.InvalidValue, isStreamCallback ? "callback is null" : "fn is null");
            }

            if (flags != 0)
            {
                throw new CudaException(CuResult.InvalidValue, $"flags must be 0, not {flags}");
            }

            // Not waiting for host functions already queued there: they run in order on the callback thread.
            var s = driver.ResolveStreamNoWait(stream);
            driver.EnqueueHostCall(s, stream, function, userData, isStreamCallback);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }
}
