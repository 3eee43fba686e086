using GpuPool.Modules.Elf;
using GpuPool.Modules.Ptx;

namespace GpuPool.Modules.Tests;

/// <summary>Kernel parameter layouts read from a cubin's .nv.info, against what the PTX of the same source declares.</summary>
public sealed class CubinKernelTests(Nvcc nvcc) : IClassFixture<Nvcc>
{
    /// <summary>Cuda/params.cu's kernels: parameter sizes, offsets and the bytes a launch packs, worked out by hand from the C types.</summary>
    public static TheoryData<string, int[], int[], int> Layouts => new()
    {
        { "pointers", [8, 8, 8], [0, 8, 16], 24 },
        { "scalars", [1, 8, 4, 2, 4, 8], [0, 8, 16, 20, 24, 32], 40 },
        { "by_struct", [1, 12, 16, 8], [0, 4, 16, 32], 40 },
        { "vectors", [16, 1, 8, 8], [0, 16, 24, 32], 40 },
        { "tail_padding", [8, 1], [0, 8], 9 },
        { "no_params", [], [], 0 },
        { "big", [4000, 1, 8], [0, 4000, 4008], 4016 },
        { "_Z9templatedIfEvPT_S0_", [8, 4], [0, 8], 12 },
    };

    private static readonly int[] ArchList = [52, 70];

    public static TheoryData<int> Archs => new(ArchList);

    [Theory]
    [MemberData(nameof(Layouts))]
    public void The_cubin_gives_each_parameters_size_and_offset(string kernel, int[] sizes, int[] offsets, int paramBytes)
    {
        foreach (var arch in ArchList)
        {
            var signature = Cubin.Read(nvcc.Cubin("params.cu", arch)).Kernels[kernel];

            Assert.Equal(sizes, signature.Params.Select(p => p.Size));
            Assert.Equal(offsets, signature.Offsets);
            Assert.Equal(paramBytes, signature.ParamBytes);
        }
    }

    [Theory]
    [MemberData(nameof(Archs))]
    public void The_cubin_and_the_ptx_of_one_source_agree_on_every_layout(int arch)
    {
        var fromPtx = PtxModule.Parse(nvcc.Ptx("params.cu")).Entries;

        var fromCubin = Cubin.Read(nvcc.Cubin("params.cu", arch)).Kernels;

        Assert.Equal(fromPtx.Keys.Order(), fromCubin.Keys.Order());
        Assert.All(fromCubin.Values, k => Assert.True(k.HasSameLayout(fromPtx[k.Name]), $"cubin {k} vs PTX {fromPtx[k.Name]}"));
    }

    [Fact]
    public void Every_kernel_of_the_source_is_found_and_nothing_else()
    {
        var kernels = Cubin.Read(nvcc.Cubin("params.cu", 70)).Kernels;

        Assert.Equal(Layouts.Select(row => (string)row[0]).Order(), kernels.Keys.Order());
    }

    [Fact]
    public void Parameters_are_named_as_nvcc_names_them_in_ptx()
    {
        var pointers = Cubin.Read(nvcc.Cubin("params.cu", 70)).Kernels["pointers"];

        Assert.Equal(["pointers_param_0", "pointers_param_1", "pointers_param_2"], pointers.Params.Select(p => p.Name));
    }

    [Fact]
    public void Tail_padding_counts_only_in_the_padded_size()
    {
        var tail = Cubin.Read(nvcc.Cubin("params.cu", 70)).Kernels["tail_padding"];

        Assert.Equal(9, tail.ParamBytes);
        Assert.Equal(16, tail.PaddedBytes);
    }

    [Fact]
    public void Scalar_and_vector_alignments_are_their_sizes()
    {
        var kernels = Cubin.Read(nvcc.Cubin("params.cu", 70)).Kernels;

        Assert.Equal([1, 8, 4, 2, 4, 8], kernels["scalars"].Params.Select(p => p.Align));
        Assert.Equal([16, 1, 8, 8], kernels["vectors"].Params.Select(p => p.Align));
    }

    [Theory]
    [MemberData(nameof(Archs))]
    public void The_arch_comes_from_the_elf_flags(int arch)
    {
        Assert.Equal(arch, Cubin.Read(nvcc.Cubin("params.cu", arch)).SmArch);
    }

    [Fact]
    public void A_relocatable_cubins_device_functions_are_not_kernels()
    {
        var image = nvcc.Build("calls.rdc.cubin", "calls.cu", "-cubin", "-rdc=true", "-arch=sm_70");

        var cubin = Cubin.Read(image);

        Assert.Equal(["kernel"], cubin.Kernels.Keys);
        Assert.Equal([8, 4], cubin.Kernels["kernel"].Params.Select(p => p.Size));
        Assert.Equal(["defined"], cubin.Variables.Keys);
    }
}
