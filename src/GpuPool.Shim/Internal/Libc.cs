using System.Runtime.InteropServices;

namespace GpuPool.Shim.Internal;

/// <summary>C library functions looked up at run time: glibc 2.34 and later have the dl* functions in libc, earlier ones in libdl.</summary>
internal static class Libc
{
    public static nint Function(string name)
    {
        foreach (var library in (ReadOnlySpan<string>)["libc.so.6", "libdl.so.2"])
        {
            if (NativeLibrary.TryLoad(library, out var handle) && NativeLibrary.TryGetExport(handle, name, out var address))
            {
                return address;
            }
        }

        return 0;
    }
}
