using System.Text.RegularExpressions;
using GpuPool.Devices.Cuda;
using GpuPool.Devices.Tests.Kernels;

namespace GpuPool.Devices.Tests.Cuda;

/// <summary>CUresult codes become DeviceExceptions that name the call, the driver's error name, and the right class of error.</summary>
public sealed partial class CudaErrorsTests
{
    [Theory]
    [InlineData(1, DeviceErrorCode.InvalidArgument)]
    [InlineData(2, DeviceErrorCode.OutOfMemory)]
    [InlineData(200, DeviceErrorCode.InvalidArgument)]
    [InlineData(218, DeviceErrorCode.InvalidArgument)]
    [InlineData(209, DeviceErrorCode.NotSupported)]
    [InlineData(222, DeviceErrorCode.NotSupported)]
    [InlineData(201, DeviceErrorCode.ContextClosed)]
    [InlineData(709, DeviceErrorCode.ContextClosed)]
    [InlineData(400, DeviceErrorCode.NotFound)]
    [InlineData(500, DeviceErrorCode.NotFound)]
    [InlineData(600, DeviceErrorCode.NotReady)]
    [InlineData(700, DeviceErrorCode.InvalidAddress)]
    [InlineData(716, DeviceErrorCode.InvalidAddress)]
    [InlineData(701, DeviceErrorCode.LaunchFailed)]
    [InlineData(702, DeviceErrorCode.LaunchFailed)]
    [InlineData(710, DeviceErrorCode.LaunchFailed)]
    [InlineData(719, DeviceErrorCode.LaunchFailed)]
    [InlineData(801, DeviceErrorCode.NotSupported)]
    [InlineData(800, DeviceErrorCode.NotSupported)]
    [InlineData(999, DeviceErrorCode.LaunchFailed)]
    [InlineData(12345, DeviceErrorCode.LaunchFailed)]
    public void Each_CUresult_maps_to_the_device_error_class_the_shim_turns_back_into_a_matching_CUresult(int result, DeviceErrorCode expected)
        => Assert.Equal(expected, CudaErrors.CodeOf(result));

    [Fact]
    public void A_failed_call_names_the_call_the_drivers_error_name_and_its_description()
    {
        var error = CudaErrors.Error(2, "cuMemAlloc_v2");

        Assert.Equal(DeviceErrorCode.OutOfMemory, error.Code);
        Assert.Equal("cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)", error.Message);
    }

    [Fact]
    public void A_failed_call_may_say_what_it_was_for()
    {
        var error = Assert.Throws<DeviceException>(() => CudaErrors.Check(700, "cuStreamSynchronize", "after kernel axpy_f32"));

        Assert.Equal(DeviceErrorCode.InvalidAddress, error.Code);
        Assert.Equal("cuStreamSynchronize (after kernel axpy_f32) failed: CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory access was encountered)", error.Message);
    }

    [Fact]
    public void Success_passes_and_an_unknown_code_is_named_by_its_number()
    {
        CudaErrors.Check(0, "cuInit");

        Assert.Equal("CUresult 12345", CudaErrors.Describe(12345));
    }

    [Theory]
    [InlineData(700, true)]
    [InlineData(719, true)]
    [InlineData(715, true)]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(701, false)]
    public void Kernel_faults_are_the_errors_that_leave_a_context_unusable(int result, bool fatal)
        => Assert.Equal(fatal, CudaErrors.IsContextFatal(result));

    [Fact]
    public void The_tables_codes_and_names_agree_with_the_projects_driver_api_header()
    {
        var header = File.ReadAllText(Path.Combine(NativeToolchain.RepositoryRoot, "native", "include", "gpupool_cuda.h"));
        var declared = HeaderResult().Matches(header).ToDictionary(m => int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture), m => m.Groups[1].Value);
        Assert.NotEmpty(declared);

        foreach (var (code, (name, _)) in CudaErrors.Known)
        {
            if (declared.TryGetValue(code, out var headerName))
            {
                Assert.Equal(headerName, name);
            }
        }

        Assert.All(declared, d => Assert.True(CudaErrors.Known.ContainsKey(d.Key), $"{d.Value} = {d.Key} is in the header but not in the cuda backend's table"));
    }

    [GeneratedRegex(@"\b(CUDA_(?:SUCCESS|ERROR_\w+))\s*=\s*(\d+)", RegexOptions.CultureInvariant)]
    private static partial Regex HeaderResult();
}
