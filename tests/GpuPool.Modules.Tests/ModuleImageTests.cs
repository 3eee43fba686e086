using System.Text;
using GpuPool.Modules.Elf;
using GpuPool.Modules.Fatbin;
using GpuPool.Modules.Ptx;

namespace GpuPool.Modules.Tests;

/// <summary>The façade: an image of any format in, the code a backend runs and the kernels and variables out.</summary>
public sealed class ModuleImageTests(Nvcc nvcc) : IClassFixture<Nvcc>
{
    [Fact]
    public void Ptx_text_is_read_as_ptx()
    {
        var text = nvcc.Ptx("params.cu");

        var image = ModuleImage.Read(Encoding.UTF8.GetBytes(text));

        Assert.Equal(ModuleFormat.Ptx, image.Format);
        Assert.Equal(text, image.Ptx);
        Assert.Null(image.Cubin);
        Assert.Empty(image.Entries);
        Assert.Equal(PtxModule.Parse(text).Entries.Keys.Order(), image.Kernels.Keys.Order());
    }

    [Fact]
    public void Ptx_text_may_end_in_its_nul_terminator()
    {
        var text = nvcc.Ptx("params.cu");

        var image = ModuleImage.Read([.. Encoding.UTF8.GetBytes(text), 0]);

        Assert.Equal(text, image.Ptx);
        Assert.Equal(8, image.Kernels.Count);
    }

    [Fact]
    public void A_cubin_is_its_own_cubin_with_its_kernels_and_variables()
    {
        var bytes = nvcc.Cubin("variables.cu", 70);

        var image = ModuleImage.Read(bytes);

        Assert.Equal(ModuleFormat.Cubin, image.Format);
        Assert.Equal(bytes, image.Cubin!.Value.ToArray());
        Assert.Null(image.Ptx);
        Assert.Equal(["touch"], image.Kernels.Keys);
        Assert.Equal(5, image.Variables.Count);
    }

    [Fact]
    public void A_fat_binary_offers_its_highest_cubin_and_highest_ptx()
    {
        var image = ModuleImage.Read(nvcc.FatBinary("params.cu", Stored.Default));

        Assert.Equal(ModuleFormat.FatBinary, image.Format);
        Assert.Equal(3, image.Entries.Count);
        Assert.Equal(70, Cubin.Read(image.Cubin!.Value.Span).SmArch);
        Assert.Contains(".target sm_70", image.Ptx);
        Assert.DoesNotContain("\0", image.Ptx, StringComparison.Ordinal);
    }

    [Fact]
    public void A_fat_binarys_kernels_come_from_its_cubin_named_by_its_ptx()
    {
        var image = ModuleImage.Read(nvcc.FatBinary("params.cu", Stored.Default));

        var fromCubin = Cubin.Read(image.Cubin!.Value.Span).Kernels;
        Assert.Equal(fromCubin.Keys.Order(), image.Kernels.Keys.Order());
        Assert.All(image.Kernels.Values, k => Assert.True(k.HasSameLayout(fromCubin[k.Name])));

        // Where the two agree, the PTX lends its declared alignments: a 16-byte struct at offset 16 is aligned to 8,
        // which the cubin alone cannot tell from 16.
        Assert.Equal(16, fromCubin["by_struct"].Params[2].Align);
        Assert.Equal(8, image.Kernels["by_struct"].Params[2].Align);
        Assert.Equal("by_struct_param_2", image.Kernels["by_struct"].Params[2].Name);
    }

    [Fact]
    public void A_ptx_only_fat_binary_offers_its_highest_ptx_and_its_kernels()
    {
        var image = ModuleImage.Read(nvcc.PtxOnlyFatBinary("params.cu"));

        Assert.Null(image.Cubin);
        Assert.Contains(".target sm_70", image.Ptx);
        Assert.Equal(PtxModule.Parse(nvcc.Ptx("params.cu")).Entries.Keys.Order(), image.Kernels.Keys.Order());
        Assert.Empty(image.Variables);
    }

    [Fact]
    public void A_cubin_only_fat_binary_has_no_ptx_and_its_cubins_kernels()
    {
        var image = ModuleImage.Read(nvcc.CubinOnlyFatBinary("params.cu"));

        Assert.Null(image.Ptx);
        Assert.Equal(8, image.Kernels.Count);
        Assert.Equal("pointers_param_0", image.Kernels["pointers"].Params[0].Name);
    }

    [Theory]
    [InlineData(52, 52)]
    [InlineData(53, 52)]
    [InlineData(61, null)]
    [InlineData(70, 70)]
    [InlineData(75, 70)]
    [InlineData(80, null)]
    [InlineData(50, null)]
    public void A_device_gets_the_cubin_of_its_major_arch_at_or_below_its_minor(int device, int? expected)
    {
        var image = ModuleImage.Read(nvcc.FatBinary("params.cu", Stored.Default));

        var cubin = image.CubinFor(device);

        Assert.Equal(expected, cubin is { } bytes ? Cubin.Read(bytes.Span).SmArch : null);
    }

    [Theory]
    [InlineData(52, ".target sm_52")]
    [InlineData(61, ".target sm_52")]
    [InlineData(90, ".target sm_70")]
    [InlineData(50, null)]
    public void A_device_gets_the_highest_ptx_not_above_its_arch(int device, string? target)
    {
        var image = ModuleImage.Read(nvcc.PtxOnlyFatBinary("params.cu"));

        var ptx = image.PtxFor(device);

        if (target is null)
        {
            Assert.Null(ptx);
        }
        else
        {
            Assert.Contains(target, ptx);
        }
    }

    [Fact]
    public void A_standalone_cubin_runs_only_on_its_own_major_arch()
    {
        var image = ModuleImage.Read(nvcc.Cubin("variables.cu", 70));

        Assert.NotNull(image.CubinFor(75));
        Assert.Null(image.CubinFor(80));
    }

    [Fact]
    public void The_registered_wrapper_is_not_an_image_and_says_where_the_image_is()
    {
        byte[] wrapper = [0xB1, 0x43, 0x62, 0x46, 1, 0, 0, 0, .. new byte[16]];

        var e = Assert.Throws<ModuleImageException>(() => ModuleImage.Read(wrapper));

        Assert.Equal(ModuleImageError.InvalidImage, e.Error);
        Assert.Contains("__fatBinC_Wrapper_t", e.Message);
    }

    [Fact]
    public void Bytes_of_no_known_format_are_refused_naming_their_start()
    {
        var e = Assert.Throws<ModuleImageException>(() => ModuleImage.Read("MZ\x90\0"u8));

        Assert.Contains("4D5A", e.Message);
    }

    [Fact]
    public void Text_with_an_entry_that_cannot_be_read_is_invalid_ptx()
    {
        var e = Assert.Throws<ModuleImageException>(() => ModuleImage.Read("// just a comment\n.entry"u8));

        Assert.Equal(ModuleImageError.InvalidPtx, e.Error);
        Assert.IsType<PtxFormatException>(e.InnerException);
    }

    [Fact]
    public void The_entries_of_a_fat_binary_are_the_ones_its_reader_gives()
    {
        var bytes = nvcc.FatBinary("params.cu", Stored.Default);

        Assert.Equal(FatBinary.Read(bytes).Select(e => e.ToString()), ModuleImage.Read(bytes).Entries.Select(e => e.ToString()));
    }
}
