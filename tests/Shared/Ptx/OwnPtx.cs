using System.Globalization;
using System.Text;

namespace GpuPool.Testing.Ptx;

/// <summary>
/// PTX modules of a program's own for tests of the cpu backend: kernels with real bodies, which its PTX engine runs, some
/// named and laid out like built-in kernels (only the built-in library's exact image runs as the built-in C#).
/// </summary>
internal static class OwnPtx
{
    private const string Header = ".version 7.0\n.target sm_70\n.address_size 64\n\n";

    /// <summary>
    /// <c>fill_f32(n, value, y)</c> with the built-in's parameters: y[i] = value for i &lt; n, in a grid-stride loop, or
    /// y[i] = <paramref name="constant"/> when one is given (a body that is not the built-in's).
    /// </summary>
    public static string Fill(float? constant = null) => $$"""
        .visible .entry fill_f32(
        	.param .u64 fill_f32_param_0,
        	.param .f32 fill_f32_param_1,
        	.param .u64 fill_f32_param_2
        )
        {
        	.reg .pred %p<2>;
        	.reg .b32 %r<5>;
        	.reg .f32 %f<2>;
        	.reg .b64 %rd<9>;

        	ld.param.u64 %rd1, [fill_f32_param_0];
        	{{(constant is { } c ? $"mov.b32 %f1, 0f{BitConverter.SingleToUInt32Bits(c).ToString("X8", CultureInfo.InvariantCulture)};" : "ld.param.f32 %f1, [fill_f32_param_1];")}}
        	ld.param.u64 %rd2, [fill_f32_param_2];
        	cvta.to.global.u64 %rd3, %rd2;
        	mov.u32 %r1, %ctaid.x;
        	mov.u32 %r2, %ntid.x;
        	mov.u32 %r3, %tid.x;
        	mov.u32 %r4, %nctaid.x;
        	mul.wide.u32 %rd4, %r1, %r2;
        	cvt.u64.u32 %rd5, %r3;
        	add.s64 %rd4, %rd4, %rd5;
        	mul.wide.u32 %rd6, %r4, %r2;
        $L__loop:
        	setp.ge.u64 %p1, %rd4, %rd1;
        	@%p1 bra.uni $L__done;
        	shl.b64 %rd7, %rd4, 2;
        	add.s64 %rd8, %rd3, %rd7;
        	st.global.f32 [%rd8], %f1;
        	add.s64 %rd4, %rd4, %rd6;
        	bra.uni $L__loop;
        $L__done:
        	ret;
        }

        """;

    /// <summary>An entry that takes one pointer and does nothing (<c>ret</c>).</summary>
    public static string Empty(string name) => $".visible .entry {name}(\n\t.param .u64 {name}_param_0\n)\n{{\n\tret;\n}}\n\n";

    /// <summary>An entry that takes one pointer and runs an instruction the cpu backend's PTX engine does not run (on line 3 of the entry).</summary>
    public static string Refused(string name) => $".visible .entry {name}(.param .u64 p)\n{{\n\twgmma.fence.sync.aligned;\n\tret;\n}}\n\n";

    /// <summary>A module of <paramref name="declarations"/> (variables) and <paramref name="entries"/>, NUL-terminated as drivers take PTX.</summary>
    public static byte[] WithVariables(string declarations, params string[] entries)
    {
        var text = new StringBuilder(Header).Append(declarations).Append('\n');
        foreach (var entry in entries)
        {
            text.Append(entry);
        }

        return [.. Encoding.UTF8.GetBytes(text.ToString()), 0];
    }

    /// <summary>A module of <paramref name="entries"/>, NUL-terminated as drivers take PTX.</summary>
    public static byte[] Module(params string[] entries) => WithVariables("", entries);
}
