using GpuPool.Devices.Cuda;
using GpuPool.Devices.Cuda.Native;

namespace GpuPool.Devices.Tests.Cuda;

/// <summary>
/// Starting the cuda backend where it cannot start. Each test names a driver library that cannot load, so the
/// outcome is the same on a machine with a GPU; `gpupool up` without a driver is covered by the CLI tests.
/// </summary>
public sealed class CudaDetectionTests
{
    [Fact]
    public void A_driver_library_that_does_not_exist_fails_with_one_sentence_naming_it_and_the_loaders_reason()
    {
        var created = CudaBackend.TryCreate(new CudaOptions { DriverLibrary = "/nonexistent/libcuda.so.1" }, out var backend, out var reason);

        Assert.False(created);
        Assert.Null(backend);
        Assert.Equal("no NVIDIA driver: /nonexistent/libcuda.so.1 could not be loaded (cannot open shared object file: No such file or directory)", reason);
    }

    [Fact]
    public void A_file_that_is_not_a_library_fails_with_the_loaders_reason_on_one_line()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "not a shared object");

            Assert.False(CudaBackend.TryCreate(new CudaOptions { DriverLibrary = path }, out _, out var reason));

            // dlopen's own words: "file too short", "invalid ELF header", depending on the file.
            Assert.Matches($@"^no NVIDIA driver: {System.Text.RegularExpressions.Regex.Escape(path)} could not be loaded \([^\n()]+\)$", reason);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void The_loaders_reason_keeps_dlerrors_words_and_drops_dotnets_advice()
    {
        const string message = "Unable to load shared library 'libcuda.so.1' or one of its dependencies. In order to help diagnose loading problems, "
            + "consider using a tool like strace. If you're using glibc, consider setting the LD_DEBUG environment variable: \n"
            + "libcuda.so.1: cannot open shared object file: No such file or directory\n";

        Assert.Equal("cannot open shared object file: No such file or directory", NativeLibraries.LoaderReason(message, "libcuda.so.1"));
    }

    [Fact]
    public void Device_uuids_are_spelled_as_nvml_and_nvidia_smi_spell_them()
    {
        byte[] uuid = [0x8b, 0x1a, 0x3c, 0x4d, 0x5e, 0x6f, 0x70, 0x81, 0x92, 0xa3, 0xb4, 0xc5, 0xd6, 0xe7, 0xf8, 0x09];

        Assert.Equal("GPU-8b1a3c4d-5e6f-7081-92a3-b4c5d6e7f809", CudaDevice.FormatUuid(uuid));
    }
}
