using GpuPool.Devices.Cpu.Kernels;
using GpuPool.Modules.Ptx;

namespace GpuPool.Shim.Tests;

/// <summary>
/// The built-in kernels' PTX module, which the shim's tests and samples load, declares every kernel with the parameter
/// layout the cpu backend runs: otherwise the shim would pack launches the broker refuses.
/// </summary>
public sealed class BuiltinKernelPtxTests
{
    [Fact]
    public void Every_entry_matches_the_built_in_kernel_of_its_name()
    {
        const string module = "native/kernels/ptx/gpupool_kernels.ptx";
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
