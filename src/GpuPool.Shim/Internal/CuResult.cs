using System.Collections.Frozen;
using System.Runtime.InteropServices;
using System.Text;

namespace GpuPool.Shim.Internal;

/// <summary>The driver API's result codes that the shim returns (values as in the CUDA driver API reference).</summary>
internal enum CuResult
{
    Success = 0,
    InvalidValue = 1,
    OutOfMemory = 2,
    NotInitialized = 3,
    Deinitialized = 4,
    NoDevice = 100,
    InvalidDevice = 101,
    InvalidImage = 200,
    InvalidContext = 201,
    InvalidPtx = 218,
    FileNotFound = 301,
    OperatingSystem = 304,
    InvalidHandle = 400,
    IllegalState = 401,
    NotFound = 500,
    NotReady = 600,
    IllegalAddress = 700,
    LaunchOutOfResources = 701,
    LaunchTimeout = 702,
    PrimaryContextActive = 708,
    ContextIsDestroyed = 709,
    LaunchFailed = 719,
    NotPermitted = 800,
    NotSupported = 801,
    Unknown = 999,
}

/// <summary>Names and descriptions of result codes, as NUL-terminated strings that live as long as the process (cuGetErrorName/String hand them out).</summary>
internal static unsafe class CuResultText
{
    private static readonly FrozenDictionary<int, (string Name, string Description)> Texts = new Dictionary<int, (string, string)>
    {
        [0] = ("CUDA_SUCCESS", "no error"),
        [1] = ("CUDA_ERROR_INVALID_VALUE", "invalid argument"),
        [2] = ("CUDA_ERROR_OUT_OF_MEMORY", "out of memory"),
        [3] = ("CUDA_ERROR_NOT_INITIALIZED", "initialization error"),
        [4] = ("CUDA_ERROR_DEINITIALIZED", "driver shutting down"),
        [5] = ("CUDA_ERROR_PROFILER_DISABLED", "profiler disabled while using external profiling tool"),
        [34] = ("CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library"),
        [46] = ("CUDA_ERROR_DEVICE_UNAVAILABLE", "CUDA-capable device(s) is/are busy or unavailable"),
        [100] = ("CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"),
        [101] = ("CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"),
        [102] = ("CUDA_ERROR_DEVICE_NOT_LICENSED", "device doesn't have valid Grid license"),
        [200] = ("CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"),
        [201] = ("CUDA_ERROR_INVALID_CONTEXT", "invalid device context"),
        [202] = ("CUDA_ERROR_CONTEXT_ALREADY_CURRENT", "context already current"),
        [205] = ("CUDA_ERROR_MAP_FAILED", "mapping of buffer object failed"),
        [206] = ("CUDA_ERROR_UNMAP_FAILED", "unmapping of buffer object failed"),
        [209] = ("CUDA_ERROR_NO_BINARY_FOR_GPU", "no kernel image is available for execution on the device"),
        [215] = ("CUDA_ERROR_UNSUPPORTED_LIMIT", "limit is not supported on this architecture"),
        [216] = ("CUDA_ERROR_CONTEXT_ALREADY_IN_USE", "exclusive-thread device already in use by a different thread"),
        [218] = ("CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"),
        [221] = ("CUDA_ERROR_JIT_COMPILER_NOT_FOUND", "PTX JIT compiler library not found"),
        [222] = ("CUDA_ERROR_UNSUPPORTED_PTX_VERSION", "the provided PTX was compiled with an unsupported toolchain"),
        [300] = ("CUDA_ERROR_INVALID_SOURCE", "device kernel image is invalid"),
        [301] = ("CUDA_ERROR_FILE_NOT_FOUND", "file not found"),
        [304] = ("CUDA_ERROR_OPERATING_SYSTEM", "OS call failed or operation not supported on this OS"),
        [400] = ("CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"),
        [401] = ("CUDA_ERROR_ILLEGAL_STATE", "the operation cannot be performed in the present state"),
        [500] = ("CUDA_ERROR_NOT_FOUND", "named symbol not found"),
        [600] = ("CUDA_ERROR_NOT_READY", "device not ready"),
        [700] = ("CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"),
        [701] = ("CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"),
        [702] = ("CUDA_ERROR_LAUNCH_TIMEOUT", "the launch timed out and was terminated"),
        [708] = ("CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE", "primary context active"),
        [709] = ("CUDA_ERROR_CONTEXT_IS_DESTROYED", "context is destroyed"),
        [710] = ("CUDA_ERROR_ASSERT", "device-side assert triggered"),
        [716] = ("CUDA_ERROR_MISALIGNED_ADDRESS", "misaligned address"),
        [719] = ("CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"),
        [720] = ("CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE", "too many blocks in cooperative launch"),
        [800] = ("CUDA_ERROR_NOT_PERMITTED", "operation not permitted"),
        [801] = ("CUDA_ERROR_NOT_SUPPORTED", "operation not supported"),
        [802] = ("CUDA_ERROR_SYSTEM_NOT_READY", "system not yet initialized"),
        [909] = ("CUDA_ERROR_TIMEOUT", "wait operation timed out"),
        [999] = ("CUDA_ERROR_UNKNOWN", "unknown error"),
    }.ToFrozenDictionary();

    private static readonly object Gate = new();
    private static readonly Dictionary<(int, bool), nint> Native = [];

    public static bool IsKnown(int code) => Texts.ContainsKey(code);

    public static string Name(CuResult code) => Texts.TryGetValue((int)code, out var t) ? t.Name : $"CUresult {(int)code}";

    /// <summary>The name or description of <paramref name="code"/> as a C string that is never freed; null for a code we do not know.</summary>
    public static byte* NativeText(int code, bool name)
    {
        if (!Texts.TryGetValue(code, out var text))
        {
            return null;
        }

        lock (Gate)
        {
            if (!Native.TryGetValue((code, name), out var ptr))
            {
                ptr = Utf8.Allocate(name ? text.Name : text.Description);
                Native[(code, name)] = ptr;
            }

            return (byte*)ptr;
        }
    }
}

/// <summary>NUL-terminated UTF-8 strings in and out of native memory.</summary>
internal static unsafe class Utf8
{
    /// <summary>A native copy of <paramref name="text"/> that the caller owns.</summary>
    public static nint Allocate(string text)
    {
        var bytes = Encoding.UTF8.GetByteCount(text);
        var ptr = (byte*)NativeMemory.Alloc((nuint)bytes + 1);
        Encoding.UTF8.GetBytes(text, new Span<byte>(ptr, bytes));
        ptr[bytes] = 0;
        return (nint)ptr;
    }

    /// <summary>Reads a C string, refusing one longer than <paramref name="maxBytes"/> (a pointer to garbage must not make us read forever).</summary>
    public static string Read(byte* text, int maxBytes = 4096)
    {
        var span = MemoryMarshal.CreateReadOnlySpanFromNullTerminated(text);
        if (span.Length > maxBytes)
        {
            throw new CudaException(CuResult.InvalidValue, $"a string argument is longer than {maxBytes} bytes");
        }

        return Encoding.UTF8.GetString(span);
    }

    /// <summary>Writes <paramref name="text"/> into a caller's buffer of <paramref name="capacity"/> bytes, truncated and always NUL-terminated.</summary>
    public static int Write(string text, byte* buffer, int capacity)
    {
        if (buffer is null || capacity <= 0)
        {
            return 0;
        }

        var bytes = Encoding.UTF8.GetBytes(text);
        var n = Math.Min(bytes.Length, capacity - 1);
        bytes.AsSpan(0, n).CopyTo(new Span<byte>(buffer, n));
        buffer[n] = 0;
        return n + 1;
    }
}
