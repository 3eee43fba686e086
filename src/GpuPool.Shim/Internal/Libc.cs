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

    /// <summary>
    /// Writes <paramref name="text"/> through the C program's own <c>stdout</c> (fwrite, then fflush), as CUDA's driver
    /// writes device printf: what the program printed before is in the same buffer, so the order is the program's.
    /// </summary>
    public static unsafe void WriteStdout(string text)
    {
        var stdoutVariable = Function("stdout");
        var fwrite = (delegate* unmanaged<byte*, nuint, nuint, nint, nuint>)Function("fwrite");
        var fflush = (delegate* unmanaged<nint, int>)Function("fflush");
        if (stdoutVariable == 0 || fwrite is null || fflush is null)
        {
            Console.Out.Write(text);
            Console.Out.Flush();
            return;
        }

        var stream = *(nint*)stdoutVariable;
        var bytes = System.Text.Encoding.UTF8.GetBytes(text);
        fixed (byte* p = bytes)
        {
            _ = fwrite(p, 1, (nuint)bytes.Length, stream);
        }

        _ = fflush(stream);
    }
}
