using System.Runtime.InteropServices;
using System.Text;

namespace GpuPool.Devices.Tests.Kernels;

/// <summary>A launch shape: grid and block extents in x, y, z.</summary>
public sealed record Geometry(uint GridX, uint GridY, uint GridZ, uint BlockX, uint BlockY, uint BlockZ)
{
    public override string ToString() => $"grid ({GridX},{GridY},{GridZ}) block ({BlockX},{BlockY},{BlockZ})";
}

/// <summary>
/// The built-in kernels' CUDA source (native/kernels) compiled for the host by clang++-14 together with
/// native/kernels/emulator/gpupool_emulator.cpp, which runs each GPU thread as a fiber. Built once per test run.
/// </summary>
internal sealed class KernelEmulator
{
    private static readonly Lazy<KernelEmulator> Shared = new(Build, LazyThreadSafetyMode.ExecutionAndPublication);

    private readonly LaunchFn _launch;
    private readonly UnaryFn _exp;
    private readonly UnaryFn _log;

    private KernelEmulator(IntPtr library)
    {
        var count = Marshal.GetDelegateForFunctionPointer<CountFn>(NativeLibrary.GetExport(library, "gp_emu_kernel_count"));
        var name = Marshal.GetDelegateForFunctionPointer<NameFn>(NativeLibrary.GetExport(library, "gp_emu_kernel_name"));
        KernelNames = [.. Enumerable.Range(0, count()).Select(i => Marshal.PtrToStringUTF8(name(i))!)];
        _launch = Marshal.GetDelegateForFunctionPointer<LaunchFn>(NativeLibrary.GetExport(library, "gp_emu_launch"));
        _exp = Marshal.GetDelegateForFunctionPointer<UnaryFn>(NativeLibrary.GetExport(library, "gp_emu_exp"));
        _log = Marshal.GetDelegateForFunctionPointer<UnaryFn>(NativeLibrary.GetExport(library, "gp_emu_log"));
    }

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int CountFn();

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate IntPtr NameFn(int index);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int LaunchFn([MarshalAs(UnmanagedType.LPUTF8Str)] string name, uint[] grid, uint[] block, byte[] parameters, nuint size, int reverse,
        byte[] error, nuint errorSize);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate float UnaryFn(float x);

    /// <summary>The emulator, built on first use; fails the calling test when clang-14 is missing or the build fails.</summary>
    public static KernelEmulator Instance
    {
        get
        {
            NativeToolchain.Require("clang++-14");
            return Shared.Value;
        }
    }

    public IReadOnlyList<string> KernelNames { get; }

    /// <summary>Runs one launch to completion; pointer parameters are host addresses. Threads of a block run in reverse order when asked.</summary>
    public void Launch(string kernel, Geometry geometry, byte[] parameters, bool reverse)
    {
        var error = new byte[256];
        var rc = _launch(kernel, [geometry.GridX, geometry.GridY, geometry.GridZ], [geometry.BlockX, geometry.BlockY, geometry.BlockZ], parameters,
            (nuint)parameters.Length, reverse ? 1 : 0, error, (nuint)error.Length);
        if (rc != 0)
        {
            throw new InvalidOperationException($"emulated launch of {kernel} with {geometry} failed ({rc}): {Encoding.UTF8.GetString(error).TrimEnd('\0')}");
        }
    }

    public float Exp(float x) => _exp(x);

    public float Log(float x) => _log(x);

    private static KernelEmulator Build()
    {
        var dir = Directory.CreateTempSubdirectory("gpupool-kernel-emulator-");
        try
        {
            var library = Path.Combine(dir.FullName, "libgpupool_kernel_emulator.so");
            var source = Path.Combine(NativeToolchain.KernelsDirectory, "emulator", "gpupool_emulator.cpp");
            var (exitCode, log) = NativeToolchain.Run("clang++-14",
                ["-std=c++17", "-O2", "-ffp-contract=off", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall", "-Wextra", "-Werror", source, "-o", library],
                TimeSpan.FromMinutes(5));
            if (exitCode != 0)
            {
                throw new InvalidOperationException($"building the kernel emulator failed ({exitCode}):\n{log}");
            }

            // Once loaded, the file can go: the mapping stays for the life of the process.
            return new KernelEmulator(NativeLibrary.Load(library));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
