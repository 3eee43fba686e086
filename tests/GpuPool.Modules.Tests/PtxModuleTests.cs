using GpuPool.Modules.Ptx;

namespace GpuPool.Modules.Tests;

/// <summary>The PTX signature parser: cuLaunchKernel's parameter sizes and offsets come from here.</summary>
public sealed class PtxModuleTests
{
    private const string Header = ".version 7.0\n.target sm_70\n.address_size 64\n";

    [Fact]
    public void Clang_style_parameters_get_their_sizes_and_offsets()
    {
        var ptx = PtxModule.Parse(Header + """
            .visible .entry axpy_f32(
            	.param .u64 axpy_f32_param_0,
            	.param .f32 axpy_f32_param_1,
            	.param .u64 .ptr .global .align 4 axpy_f32_param_2,
            	.param .u64 .ptr .global .align 4 axpy_f32_param_3
            )
            {
            	ld.param.u64 	%rd1, [axpy_f32_param_0];
            	ret;
            }
            """);

        var axpy = ptx.Entries["axpy_f32"];
        Assert.Equal([8, 4, 8, 8], axpy.Params.Select(p => p.Size));
        Assert.Equal([0, 8, 16, 24], axpy.Offsets);
        Assert.Equal(32, axpy.ParamBytes);
        Assert.Equal(70, ptx.Version);
    }

    [Fact]
    public void Clang_output_with_device_functions_module_variables_and_a_struct_parameter_parses()
    {
        var ptx = PtxModule.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Ptx", "clang14_sample.ptx")));

        Assert.Equal(["axpy_f32", "bystruct", "gemm_f32", "noop"], ptx.Entries.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(32, ptx.Entries["axpy_f32"].ParamBytes);
        Assert.Equal(13, ptx.Entries["gemm_f32"].Params.Count);
        Assert.Equal(68, ptx.Entries["gemm_f32"].ParamBytes);
        Assert.Equal([0, 16, 24], ptx.Entries["bystruct"].Offsets);
        Assert.Equal(0, ptx.Entries["noop"].ParamBytes);
        Assert.Equal(["table"], ptx.Globals);
        Assert.Equal(60, ptx.Version);
    }

    [Fact]
    public void The_alignment_after_ptr_is_the_pointees_not_the_parameters()
    {
        var ptx = PtxModule.Parse(Header + ".entry k(.param .u32 a, .param .u64 .ptr .align 16 p) { ret; }");

        var k = ptx.Entries["k"];
        Assert.Equal(8, k.Params[1].Align);
        Assert.Equal([0, 8], k.Offsets);
    }

    [Fact]
    public void A_struct_by_value_takes_its_declared_alignment_and_array_size()
    {
        var ptx = PtxModule.Parse(Header + ".visible .entry k(.param .u8 flag, .param .align 8 .b8 s[24], .param .f16 h) { ret; }");

        var k = ptx.Entries["k"];
        Assert.Equal(new PtxParam("s", 24, 8), k.Params[1]);
        Assert.Equal([0, 8, 32], k.Offsets);
        Assert.Equal(34, k.ParamBytes);
        Assert.Equal(40, k.PaddedBytes);
    }

    [Fact]
    public void Tail_padding_is_counted_only_in_the_padded_size()
    {
        var k = PtxModule.Parse(Header + ".entry k(.param .u64 n, .param .f32 x) { ret; }").Entries["k"];

        Assert.Equal(12, k.ParamBytes);
        Assert.Equal(16, k.PaddedBytes);
    }

    [Fact]
    public void A_kernel_without_parameters_takes_none()
    {
        var ptx = PtxModule.Parse(Header + ".visible .entry noop()\n{\n ret;\n}\n.entry bare { ret; }");

        Assert.Equal(0, ptx.Entries["noop"].ParamBytes);
        Assert.Equal(0, ptx.Entries["bare"].ParamBytes);
    }

    [Fact]
    public void Comments_device_functions_and_module_variables_are_not_kernels()
    {
        var ptx = PtxModule.Parse(Header + """
            // .entry commented_out(.param .u64 a)
            /* .entry also_commented(.param .u64 a) */
            .file 1 "/src/k.cu"
            .global .align 4 .b8 table[16] = {1, 2, 3, 4};
            .visible .const .align 4 .f32 scale;
            .func (.param .b32 retval) helper(.param .b64 .ptr .global p, .param .b32 x)
            {
            	ret;
            }
            .extern .func ext(.param .b32 y);
            .visible .entry real(.param .u64 .ptr .global .align 4 out)
            {
            	call.uni (retval), helper, (p, x);
            	ret;
            }
            """);

        Assert.Equal(["real"], ptx.Entries.Keys);
        Assert.Equal(8, ptx.Entries["real"].ParamBytes);
        Assert.Equal(["scale", "table"], ptx.Globals.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Text_without_version_and_target_is_not_ptx()
    {
        var ex = Assert.Throws<PtxFormatException>(() => PtxModule.Parse(".entry k(.param .u64 a) { ret; }"));

        Assert.True(ex.NotPtx);
    }

    [Theory]
    [InlineData(".entry k(.param .u64 a, { ret; }", "never closed")]
    [InlineData(".entry k(.param .u64 a,) { ret; }", "empty parameter")]
    [InlineData(".entry k(.param a) { ret; }", "no type or no name")]
    [InlineData(".entry k(.reg .u64 a) { ret; }", "not .param")]
    [InlineData(".entry k(.param .align 3 .b8 a[4]) { ret; }", "power of two")]
    [InlineData(".entry k(.param .b8 a[0]) { ret; }", "bad array size")]
    [InlineData(".entry k(.param .b8 a[5000]) { ret; }", "more than a launch can carry")]
    [InlineData(".entry k() { ret; ", "never closed")]
    [InlineData(".entry (.param .u64 a) { ret; }", "kernel name")]
    [InlineData("/* .entry k() { ret; }", "never closed")]
    public void Broken_ptx_is_refused_with_a_reason(string body, string reason)
    {
        var ex = Assert.Throws<PtxFormatException>(() => PtxModule.Parse(Header + body));

        Assert.Contains(reason, ex.Message, StringComparison.Ordinal);
        Assert.False(ex.NotPtx);
    }

    [Fact]
    public void Images_are_told_apart_by_their_first_bytes()
    {
        Assert.Equal(ImageKind.Cubin, PtxModule.Classify([0x7F, (byte)'E', (byte)'L', (byte)'F', 2, 1]));
        Assert.Equal(ImageKind.FatBinary, PtxModule.Classify([0x50, 0xED, 0x55, 0xBA, 1, 0]));
        Assert.Equal(ImageKind.FatBinary, PtxModule.Classify([0xB1, 0x43, 0x62, 0x46, 1, 0]));
        Assert.Equal(ImageKind.Ptx, PtxModule.Classify("\n  .version 7.0"u8));
        Assert.Equal(ImageKind.Ptx, PtxModule.Classify("// generated\n.version 7.0"u8));
        Assert.Equal(ImageKind.Unknown, PtxModule.Classify("hello"u8));
        Assert.Equal(ImageKind.Unknown, PtxModule.Classify([]));
    }
}
