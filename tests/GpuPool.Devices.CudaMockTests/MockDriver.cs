using System.Diagnostics;
using System.Runtime.InteropServices;
using GpuPool.Devices.Cuda;

namespace GpuPool.Devices.CudaMockTests;

/// <summary>
/// The mock driver (native/mock_cuda.c), built with gcc once per test run, and the one cuda backend the tests of
/// this process share: a driver library binds once per process. Small staging buffers make copies take many chunks.
/// </summary>
internal static unsafe class MockDriver
{
    public const int StagingBufferBytes = 64 * 1024;
    public const int StagingBuffers = 4;

    private static readonly Lazy<(string Path, CudaBackend Backend)> Shared = new(Start);

    public static CudaBackend Backend => Shared.Value.Backend;

    public static CudaDevice Device => (CudaDevice)Backend.Devices[0];

    public static string LibraryPath => Shared.Value.Path;

    /// <summary>One of the mock's counters: contexts, allocations, streams, events, modules, pinned, launches, used.</summary>
    public static long Stat(string name)
    {
        var function = (delegate* unmanaged<byte*, long>)Export("mock_stat");
        var bytes = System.Text.Encoding.ASCII.GetBytes(name + "\0");
        fixed (byte* p = bytes)
        {
            return function(p);
        }
    }

    public static void Set(string name, long value)
    {
        var function = (delegate* unmanaged<byte*, long, void>)Export("mock_set");
        var bytes = System.Text.Encoding.ASCII.GetBytes(name + "\0");
        fixed (byte* p = bytes)
        {
            function(p, value);
        }
    }

    private static nint Export(string name) => NativeLibrary.GetExport(NativeLibrary.Load(LibraryPath), name);

    private static (string, CudaBackend) Start()
    {
        var folder = Directory.CreateTempSubdirectory("gpupool-mock-cuda-").FullName;
        var library = Path.Combine(folder, "libcuda.so.1");
        var source = Path.Combine(AppContext.BaseDirectory, "native", "mock_cuda.c");
        var gcc = Process.Start(new ProcessStartInfo("gcc", ["-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", "-pthread", "-o", library, source])
        {
            RedirectStandardError = true,
            UseShellExecute = false,
        }) ?? throw new InvalidOperationException("gcc did not start");
        var errors = gcc.StandardError.ReadToEnd();
        gcc.WaitForExit();
        Assert.True(gcc.ExitCode == 0, $"gcc could not build the mock driver (install gcc: apt-get install -y gcc): {errors}");

        var options = new CudaOptions
        {
            DriverLibrary = library,
            NvmlLibrary = library,
            StagingBufferBytes = StagingBufferBytes,
            StagingBuffers = StagingBuffers,
            CloseGrace = TimeSpan.FromSeconds(5),
        };
        Assert.True(CudaBackend.TryCreate(options, out var backend, out var reason), $"the cuda backend did not start on the mock driver: {reason}");
        return (library, backend);
    }
}
