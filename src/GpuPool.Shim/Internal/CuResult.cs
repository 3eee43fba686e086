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
    UnsupportedLimit = 215,
    PeerAccessUnsupported = 217,
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
    PeerAccessNotEnabled = 705,
    PrimaryContextActive = 708,
    ContextIsDestroyed = 709,
    HostMemoryAlreadyRegistered = 712,
    HostMemoryNotRegistered = 713,
    LaunchFailed = 719,
    NotPermitted = 800,
    NotSupported = 801,
    Unknown = 999,
}

/// <summary>Names and descriptions of result codes, as NUL-terminated strings that live as long as the process (cuGetErrorName/String hand them out).</summary>
internal static unsafe class CuResultText
{
    private static FrozenDictionary<int, (string Name, string Description)> Texts => GpuPool.DriverApi.CuResultNames.Known;

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
