using GpuPool.Devices.Cuda.Native;

namespace GpuPool.Devices.Cuda;

/// <summary>
/// Makes a CUDA context current to the calling thread for the length of a <c>using</c> block (cuCtxPushCurrent /
/// cuCtxPopCurrent), so a driver call made from any thread, such as a session's, acts on that context and leaves
/// the thread as it found it.
/// </summary>
internal readonly ref struct ContextScope
{
    public ContextScope(nint context) => CudaErrors.Check(CuApi.cuCtxPushCurrent_v2(context), "cuCtxPushCurrent_v2");

    public void Dispose() => _ = CuApi.cuCtxPopCurrent_v2(out _);
}
