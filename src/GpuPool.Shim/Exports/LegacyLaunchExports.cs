using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// The launch API before CUDA 4.0, which pycuda still uses for a kernel call: the block shape, dynamic shared memory
/// and parameter bytes are set on the function one call at a time, then cuLaunchGrid launches it. The parameters are
/// a packed block, as cuLaunchKernel's <c>extra</c> buffer, and the launch goes the same way, checked the same.
/// </summary>
internal static unsafe partial class Cuda
{
    [UnmanagedCallersOnly(EntryPoint = "cuFuncSetBlockShape")]
    internal static CuResult FuncSetBlockShape(nint function, int x, int y, int z)
        => Legacy("cuFuncSetBlockShape", function, f =>
        {
            if (x <= 0 || y <= 0 || z <= 0)
            {
                throw new CudaException(CuResult.InvalidValue, $"block shape ({x}, {y}, {z}) has a dimension below 1");
            }

            f.LegacyBlock = ((uint)x, (uint)y, (uint)z);
        });

    [UnmanagedCallersOnly(EntryPoint = "cuFuncSetSharedSize")]
    internal static CuResult FuncSetSharedSize(nint function, uint bytes) => Legacy("cuFuncSetSharedSize", function, f => f.LegacyShared = bytes);

    [UnmanagedCallersOnly(EntryPoint = "cuParamSetSize")]
    internal static CuResult ParamSetSize(nint function, uint bytes)
        => Legacy("cuParamSetSize", function, f =>
        {
            if (bytes > MaxParamBytes)
            {
                throw new CudaException(CuResult.InvalidValue, $"{bytes} bytes of parameters is more than the {MaxParamBytes} a launch carries");
            }

            Array.Resize(ref f.LegacyParams, (int)bytes);
        });

    [UnmanagedCallersOnly(EntryPoint = "cuParamSeti")]
    internal static CuResult ParamSeti(nint function, int offset, uint value) => ParamSet("cuParamSeti", function, offset, &value, sizeof(uint));

    [UnmanagedCallersOnly(EntryPoint = "cuParamSetf")]
    internal static CuResult ParamSetf(nint function, int offset, float value) => ParamSet("cuParamSetf", function, offset, &value, sizeof(float));

    [UnmanagedCallersOnly(EntryPoint = "cuParamSetv")]
    internal static CuResult ParamSetv(nint function, int offset, void* value, uint bytes)
        => value is null && bytes > 0 ? Errors.Report("cuParamSetv", new CudaException(CuResult.InvalidValue, "ptr is null")) : ParamSet("cuParamSetv", function, offset, value, (int)Math.Min(bytes, int.MaxValue));

    [UnmanagedCallersOnly(EntryPoint = "cuLaunch")]
    internal static CuResult LegacyLaunch(nint function) => LaunchGrid("cuLaunch", function, 1, 1, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuLaunchGrid")]
    internal static CuResult LegacyLaunchGrid(nint function, int width, int height) => LaunchGrid("cuLaunchGrid", function, width, height, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuLaunchGridAsync")]
    internal static CuResult LegacyLaunchGridAsync(nint function, int width, int height, nint stream) => LaunchGrid("cuLaunchGridAsync", function, width, height, stream);

    private static CuResult ParamSet(string call, nint function, int offset, void* value, int bytes)
        => Legacy(call, function, f =>
        {
            if (offset < 0 || bytes < 0 || (long)offset + bytes > f.LegacyParams.Length)
            {
                throw new CudaException(CuResult.InvalidValue, $"{bytes} bytes at offset {offset} do not fit the {f.LegacyParams.Length} bytes cuParamSetSize set");
            }

            new ReadOnlySpan<byte>(value, bytes).CopyTo(f.LegacyParams.AsSpan(offset));
        });

    private static CuResult LaunchGrid(string call, nint function, int width, int height, nint stream)
    {
        FunctionObject f;
        try
        {
            f = ResolveFunction(Driver.Instance, function);
            if (width <= 0 || height <= 0)
            {
                throw new CudaException(CuResult.InvalidValue, $"grid ({width}, {height}) has a dimension below 1");
            }
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }

        var parameters = f.LegacyParams;
        var size = (nuint)parameters.Length;
        fixed (byte* buffer = parameters)
        {
            var extra = stackalloc nint[] { LaunchParamBufferPointer, (nint)buffer, LaunchParamBufferSize, (nint)(&size), LaunchParamEnd };
            return Launch(call, function, ((uint)width, (uint)height, 1), f.LegacyBlock, f.LegacyShared, stream, null, extra);
        }
    }

    private static CuResult Legacy(string call, nint function, Action<FunctionObject> set)
    {
        try
        {
            var driver = Driver.Instance;
            var f = ResolveFunction(driver, function);
            lock (f)
            {
                set(f);
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }
}
