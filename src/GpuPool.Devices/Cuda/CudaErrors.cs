using System.Collections.Frozen;
using System.Runtime.InteropServices;
using GpuPool.Devices.Cuda.Native;

namespace GpuPool.Devices.Cuda;

/// <summary>
/// Turns CUresult codes into <see cref="DeviceException"/>s that name the driver call and the driver's name for the
/// error (cuGetErrorName, or this table's copy of the driver API reference's names when the driver cannot say).
/// </summary>
internal static unsafe class CudaErrors
{
    public const int Success = 0;
    public const int InvalidValue = 1;
    public const int OutOfMemory = 2;
    public const int NotFound = 500;
    public const int NotReady = 600;

    /// <summary>CUresult values with their names and descriptions (the table shared with the shim).</summary>
    internal static FrozenDictionary<int, (string Name, string Description)> Known => GpuPool.DriverApi.CuResultNames.Known;

    /// <summary>
    /// The backend-neutral code for a CUresult: what the broker puts on the wire, and the shim turns back into a
    /// CUresult of the same class for the program.
    /// </summary>
    public static DeviceErrorCode CodeOf(int result) => result switch
    {
        1 => DeviceErrorCode.InvalidArgument,
        2 => DeviceErrorCode.OutOfMemory,

        // A module the driver cannot take: malformed is the caller's fault, unsupported is this device's.
        200 or 218 or 300 => DeviceErrorCode.InvalidArgument,
        209 or 221 or 222 => DeviceErrorCode.NotSupported,
        201 or 709 => DeviceErrorCode.ContextClosed,
        400 or 500 => DeviceErrorCode.NotFound,
        600 => DeviceErrorCode.NotReady,

        // A kernel that touched memory it must not: the same class the cpu backend reports for a bad pointer.
        700 or 716 or 717 => DeviceErrorCode.InvalidAddress,
        800 or 801 or 804 => DeviceErrorCode.NotSupported,

        // Launch failures proper (701, 702, 710, 714, 715, 718, 719, 720), lost or broken devices (46, 100, 101, 214,
        // 802, 803, 999) and anything newer than this table: the work did not run.
        _ => DeviceErrorCode.LaunchFailed,
    };

    /// <summary>
    /// Whether the error leaves the CUDA context unusable: after a kernel fault every later call of that context
    /// fails, as the driver API reference says of these codes.
    /// </summary>
    public static bool IsContextFatal(int result) => result is 700 or 710 or 714 or 715 or 716 or 717 or 718 or 719;

    /// <summary>"CUDA_ERROR_OUT_OF_MEMORY (out of memory)": the driver's name and description of a result.</summary>
    public static string Describe(int result)
    {
        var (name, description) = NameOf(result);
        return description.Length > 0 ? $"{name} ({description})" : name;
    }

    public static (string Name, string Description) NameOf(int result)
    {
        if (NativeLibraries.IsLoaded(CuApi.Library))
        {
            try
            {
                if (CuApi.cuGetErrorName(result, out var name) == Success && name is not null)
                {
                    var text = CuApi.cuGetErrorString(result, out var s) == Success && s is not null ? Marshal.PtrToStringUTF8((nint)s) ?? "" : "";
                    return (Marshal.PtrToStringUTF8((nint)name) ?? $"CUresult {result}", text);
                }
            }
            catch (EntryPointNotFoundException)
            {
                // A driver too old to name its errors: the table below does.
            }
        }

        return Known.TryGetValue(result, out var known) ? known : ($"CUresult {result}", "");
    }

    /// <summary>The exception for a failed driver call: "cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)".</summary>
    public static DeviceException Error(int result, string call, string? context = null)
        => new(CodeOf(result), $"{call}{(context is null ? "" : $" ({context})")} failed: {Describe(result)}");

    public static void Check(int result, string call, string? context = null)
    {
        if (result != Success)
        {
            throw Error(result, call, context);
        }
    }
}
