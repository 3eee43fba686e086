using System.Text;
using GpuPool.Ptx.Engine;

namespace GpuPool.Ptx.Tests.Engine;

/// <summary>
/// slct, testp, copysign, abs.s16/neg.s16 and mad.hi.sat.s32, which nvcc writes only from inline PTX: the kernels of
/// Cuda/inline_ptx_kernels.cu, built by nvcc during the run, over edge values, against the host. Outputs are poisoned first.
/// </summary>
public sealed class InlinePtxInstructionTests(Nvcc nvcc) : IClassFixture<Nvcc>
{
    private static readonly uint[] FloatEdges =
    [
        0x0000_0000, 0x8000_0000, 0x0000_0001, 0x8000_0001, 0x007F_FFFF, 0x807F_FFFF, 0x0080_0000, 0x3F80_0000, 0xBF80_0000,
        0x7F7F_FFFF, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0000, 0xFFC0_0001, 0x7F80_0001,
    ];

    private static readonly ulong[] DoubleEdges =
    [
        0x0000_0000_0000_0000, 0x8000_0000_0000_0000, 0x0000_0000_0000_0001, 0x800F_FFFF_FFFF_FFFF, 0x0010_0000_0000_0000,
        0x3FF0_0000_0000_0000, 0xBFF0_0000_0000_0000, 0x7FEF_FFFF_FFFF_FFFF, 0x7FF0_0000_0000_0000, 0xFFF0_0000_0000_0000,
        0x7FF8_0000_0000_0000, 0xFFF8_0000_0000_0001, 0x7FF0_0000_0000_0001,
    ];

    private PtxModuleProgram Module(string arch)
        => PtxModuleProgram.Compile(Encoding.UTF8.GetString(nvcc.Build($"inline_ptx_kernels_{arch}.ptx", "inline_ptx_kernels.cu", "-ptx", $"-arch={arch}")));

    private static PtxLaunch Launch(HostMemory memory, int n)
        => new(((uint)n + 63) / 64, 1, 1, 64, 1, 1, 0, memory) { Parallelism = 2, Deadline = TimeSpan.FromSeconds(60) };

    [Theory]
    [InlineData("sm_52")]
    [InlineData("sm_80")]
    public void Slct_picks_a_where_the_selector_is_at_least_zero_for_every_width_and_both_selector_types(string arch)
    {
        var random = new Random(52);
        var selectors = FloatEdges.Select(BitConverter.UInt32BitsToSingle).Concat([-0.5f, 3f, -1e-30f, 1e-30f]).ToArray();
        var n = selectors.Length * 3;
        var cf = Enumerable.Range(0, n).Select(k => selectors[k % selectors.Length]).ToArray();
        var ci = Enumerable.Range(0, n).Select(k => k % 3 == 0 ? 0 : k % 3 == 1 ? int.MinValue + k : random.Next(int.MinValue, int.MaxValue)).ToArray();
        var a = Enumerable.Range(0, n).Select(_ => random.Next(int.MinValue, int.MaxValue)).ToArray();
        var b = Enumerable.Range(0, n).Select(_ => random.Next(int.MinValue, int.MaxValue)).ToArray();
        var a64 = Enumerable.Range(0, n).Select(_ => random.NextInt64(long.MinValue, long.MaxValue)).ToArray();
        var b64 = Enumerable.Range(0, n).Select(_ => random.NextInt64(long.MinValue, long.MaxValue)).ToArray();
        using var memory = new HostMemory();
        var (out32, out16, out64) = (memory.Upload(Enumerable.Repeat(0x5A5A5A5A, n * 6).ToArray()), memory.Upload(Enumerable.Repeat((short)0x5A5A, n * 2).ToArray()), memory.Upload(Enumerable.Repeat(0x5A5A5A5A5A5A5A5AL, n * 4).ToArray()));

        Module(arch).Kernels["slct_forms"].Launch(Launch(memory, n), new Params().Add(memory.Upload(a)).Add(memory.Upload(b)).Add(memory.Upload(a64)).Add(memory.Upload(b64))
            .Add(memory.Upload(ci)).Add(memory.Upload(cf)).Add(out32).Add(out16).Add(out64).Add(n).ToArray(), []);

        // An f32 selector compares as a float: NaN is not >= 0, -0 is; .ftz makes a subnormal a zero of its sign first.
        static bool F(float c) => c >= 0f;
        static bool Ftz(float c) => float.IsSubnormal(c) || F(c);
        var expected32 = Enumerable.Range(0, n).SelectMany(k => new[]
        {
            ci[k] >= 0 ? a[k] : b[k], F(cf[k]) ? a[k] : b[k], Ftz(cf[k]) ? a[k] : b[k], ci[k] >= 0 ? a[k] : b[k], Ftz(cf[k]) ? a[k] : b[k], ci[k] >= 0 ? a[k] : 7,
        });
        var expected16 = Enumerable.Range(0, n).SelectMany(k => new[] { (short)(ci[k] >= 0 ? a[k] : b[k]), (short)(Ftz(cf[k]) ? a[k] : b[k]) });
        var expected64 = Enumerable.Range(0, n).SelectMany(k => new[] { ci[k] >= 0 ? a64[k] : b64[k], F(cf[k]) ? a64[k] : b64[k], ci[k] >= 0 ? a64[k] : b64[k], Ftz(cf[k]) ? a64[k] : b64[k] });
        Assert.Equal(expected32, memory.Download<int>(out32, n * 6));
        Assert.Equal(expected16, memory.Download<short>(out16, n * 2));
        Assert.Equal(expected64, memory.Download<long>(out64, n * 4));
    }

    [Fact]
    public void Testp_classifies_zeros_as_normal_and_tells_subnormals_infinities_and_NaNs_apart()
    {
        var n = Math.Max(FloatEdges.Length, DoubleEdges.Length);
        var f = Enumerable.Range(0, n).Select(k => BitConverter.UInt32BitsToSingle(FloatEdges[k % FloatEdges.Length])).ToArray();
        var x = Enumerable.Range(0, n).Select(k => BitConverter.UInt64BitsToDouble(DoubleEdges[k % DoubleEdges.Length])).ToArray();
        using var memory = new HostMemory();
        var pout = memory.Upload(Enumerable.Repeat(0xFFFF_FFFFu, n).ToArray());

        Module("sm_70").Kernels["testp_forms"].Launch(Launch(memory, n), new Params().Add(memory.Upload(f)).Add(memory.Upload(x)).Add(pout).Add(n).ToArray(), []);

        static uint Bits(bool finite, bool infinite, bool nan, bool subnormal)
            => (finite ? 1u : 0) | (infinite ? 2u : 0) | (!nan ? 4u : 0) | (nan ? 8u : 0) | (finite && !subnormal ? 16u : 0) | (subnormal ? 32u : 0);
        var expected = Enumerable.Range(0, n).Select(k =>
            Bits(float.IsFinite(f[k]), float.IsInfinity(f[k]), float.IsNaN(f[k]), float.IsSubnormal(f[k]))
            | (Bits(double.IsFinite(x[k]), double.IsInfinity(x[k]), double.IsNaN(x[k]), double.IsSubnormal(x[k])) << 8));
        Assert.Equal(expected, memory.Download<uint>(pout, n));
    }

    [Fact]
    public void Copysign_gives_the_second_operands_magnitude_the_first_operands_sign_bit_for_bit()
    {
        var pairs = (from s in FloatEdges from m in FloatEdges select (s, m)).ToArray();
        var dpairs = (from s in DoubleEdges from m in DoubleEdges select (s, m)).ToArray();
        var n = Math.Max(pairs.Length, dpairs.Length);
        float F(int k, bool sign) => BitConverter.UInt32BitsToSingle(sign ? pairs[k % pairs.Length].s : pairs[k % pairs.Length].m);
        double D(int k, bool sign) => BitConverter.UInt64BitsToDouble(sign ? dpairs[k % dpairs.Length].s : dpairs[k % dpairs.Length].m);
        var (a, b) = (Enumerable.Range(0, n).Select(k => F(k, true)).ToArray(), Enumerable.Range(0, n).Select(k => F(k, false)).ToArray());
        var (x, y) = (Enumerable.Range(0, n).Select(k => D(k, true)).ToArray(), Enumerable.Range(0, n).Select(k => D(k, false)).ToArray());
        using var memory = new HostMemory();
        var (outf, outd) = (memory.Upload(Enumerable.Repeat(1234f, n).ToArray()), memory.Upload(Enumerable.Repeat(1234.0, n).ToArray()));

        Module("sm_70").Kernels["copysign_forms"].Launch(Launch(memory, n), new Params().Add(memory.Upload(a)).Add(memory.Upload(b)).Add(memory.Upload(x)).Add(memory.Upload(y)).Add(outf).Add(outd).Add(n).ToArray(), []);

        // The operands are only moved, never computed with, so even NaN payloads come through as they are.
        Assert.Equal(
            Enumerable.Range(0, n).Select(k => (BitConverter.SingleToUInt32Bits(a[k]) & 0x8000_0000) | (BitConverter.SingleToUInt32Bits(b[k]) & 0x7FFF_FFFF)),
            memory.Download<uint>(outf, n));
        Assert.Equal(
            Enumerable.Range(0, n).Select(k => (BitConverter.DoubleToUInt64Bits(x[k]) & 0x8000_0000_0000_0000) | (BitConverter.DoubleToUInt64Bits(y[k]) & 0x7FFF_FFFF_FFFF_FFFF)),
            memory.Download<ulong>(outd, n));
    }

    [Fact]
    public void Abs_and_neg_s16_wrap_the_most_negative_value_and_mad_hi_sat_s32_clamps_to_the_int_range()
    {
        var random = new Random(16);
        int[] edges = [0, 1, -1, int.MaxValue, int.MinValue, 0x10000, -0x10000];
        var triples = (from x in edges from y in edges from z in edges select (x, y, z))
            .Concat(Enumerable.Range(0, 100).Select(_ => (random.Next(int.MinValue, int.MaxValue), random.Next(int.MinValue, int.MaxValue), random.Next(int.MinValue, int.MaxValue))))
            .ToArray();
        var n = triples.Length;
        short[] shortEdges = [0, 1, -1, short.MaxValue, short.MinValue, -300, 300];
        var s = Enumerable.Range(0, n).Select(k => k < shortEdges.Length ? shortEdges[k] : (short)random.Next(short.MinValue, short.MaxValue + 1)).ToArray();
        var (a, b, c) = (triples.Select(t => t.Item1).ToArray(), triples.Select(t => t.Item2).ToArray(), triples.Select(t => t.Item3).ToArray());
        using var memory = new HostMemory();
        var (out16, out32) = (memory.Upload(Enumerable.Repeat((short)0x5A5A, n * 2).ToArray()), memory.Upload(Enumerable.Repeat(0x5A5A5A5A, n).ToArray()));

        Module("sm_70").Kernels["int_forms"].Launch(Launch(memory, n), new Params().Add(memory.Upload(s)).Add(memory.Upload(a)).Add(memory.Upload(b)).Add(memory.Upload(c)).Add(out16).Add(out32).Add(n).ToArray(), []);

        Assert.Equal(s.SelectMany(v => new[] { unchecked((short)Math.Abs((int)v)), unchecked((short)-v) }), memory.Download<short>(out16, n * 2));
        Assert.Equal(
            Enumerable.Range(0, n).Select(k => (int)Math.Clamp((((long)a[k] * b[k]) >> 32) + c[k], int.MinValue, int.MaxValue)),
            memory.Download<int>(out32, n));
    }

    [Theory]
    [InlineData("slct.u32.u32 %r0, %r1, %r2, %r3", "slct.u32.u32")]
    [InlineData("slct.ftz.u32.s32 %r0, %r1, %r2, %r3", "slct.ftz.u32.s32")]
    [InlineData("mad.lo.sat.s32 %r0, %r1, %r2, %r3", "mad on .s32 with .sat")]
    [InlineData("testp.normal.u32 %p0, %r1", "testp on .u32")]
    public void Forms_the_ISA_does_not_have_are_refused_naming_them(string instruction, string named)
    {
        var ptx = $".version 7.0\n.target sm_70\n.address_size 64\n.visible .entry k()\n{{\n.reg .pred %p<1>;\n.reg .b32 %r<4>;\n{instruction};\nret;\n}}\n";

        var error = Assert.Throws<PtxNotSupportedException>(() => PtxModuleProgram.Compile(ptx).CompileAll());

        Assert.Equal($"kernel k, line 8: the cpu backend's PTX engine does not run {named} (`{instruction}`)", error.Message);
    }
}
