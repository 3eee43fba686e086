using GpuPool.Devices.Cpu.Kernels;
using GpuPool.Modules.Ptx;

namespace GpuPool.Shim.Tests;

/// <summary>
/// The PTX the shim's tests load (and, once it is checked in, the built-in kernels' PTX module) declares every
/// kernel with the parameter layout the cpu backend runs: otherwise the shim would pack launches the broker refuses.
/// </summary>
public sealed class BuiltinKernelPtxTests
{
    public static TheoryData<string> Modules()
    {
        var data = new TheoryData<string> { "tests/GpuPool.IntegrationTests/Shim/ptx/builtin_subset.ptx" };
        if (File.Exists(RepoFiles.Path("native/kernels/ptx/gpupool_kernels.ptx")))
        {
            data.Add("native/kernels/ptx/gpupool_kernels.ptx");
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Modules))]
    public void Every_entry_matches_the_built_in_kernel_of_its_name(string module)
    {
        var ptx = PtxModule.Parse(File.ReadAllText(RepoFiles.Path(module)));

        Assert.NotEmpty(ptx.Entries);
        foreach (var (name, signature) in ptx.Entries)
        {
            Assert.True(BuiltinKernels.All.TryGetValue(name, out var builtin), $"{module}: {name} is not a built-in kernel");
            Assert.Equal(builtin.Params.Select(p => p.Size), signature.Params.Select(p => p.Size));
            Assert.Equal(builtin.Offsets, signature.Offsets);
            Assert.Equal(builtin.ParamBytes, signature.ParamBytes);
        }
    }
}
