using System.Text;
using GpuPool.Ptx.Engine;
using GpuPool.Ptx.Semantics;

namespace GpuPool.Ptx.Tests.Engine;

/// <summary>
/// Half-precision arithmetic as nvcc writes it from cuda_fp16.h and cuda_bf16.h (Cuda/half_kernels.cu), against exact
/// host arithmetic rounded once: inputs of magnitude 1/16 to 16, where a sum, a product and a fused multiply-add of
/// halves are exact in double, so rounding that double to the half format is the right answer.
/// </summary>
public sealed class HalfPrecisionTests(Nvcc nvcc) : IClassFixture<Nvcc>
{
    private const int N = 300;

    private PtxModuleProgram Module(string arch)
        => PtxModuleProgram.Compile(Encoding.UTF8.GetString(nvcc.Build($"half_kernels_{arch}.ptx", "half_kernels.cu", "-ptx", $"-arch={arch}")));

    private static PtxLaunch Launch(HostMemory memory)
        => new(3, 1, 1, 128, 1, 1, 0, memory) { Parallelism = 2, Deadline = TimeSpan.FromSeconds(60) };

    /// <summary>Seeded halves of magnitude 1/16 to 16 with random signs and mantissas, as their bits.</summary>
    private static ushort[] Inputs(int seed) => Enumerable.Range(0, N).Select(k =>
    {
        var random = new Random(seed * 1000 + k);
        var value = Math.ScaleB(1 + (random.Next(1024) / 1024.0), random.Next(-4, 4)) * (random.Next(2) == 0 ? 1 : -1);
        return BitConverter.HalfToUInt16Bits((Half)value);
    }).ToArray();

    private static double H(ushort bits) => (double)BitConverter.UInt16BitsToHalf(bits);

    private static ushort ToHalf(double exact) => BitConverter.HalfToUInt16Bits((Half)exact);

    [Theory]
    [InlineData("sm_70")]
    [InlineData("sm_80")]
    public void F16_add_sub_mul_fma_neg_abs_and_comparisons_round_once_as_the_host_does(string arch)
    {
        using var memory = new HostMemory();
        var (a, b, c) = (Inputs(1), Inputs(2), Inputs(3));
        var pout = memory.Upload(Enumerable.Repeat((ushort)0xFFFF, N * 8).ToArray());

        Module(arch).Kernels["half_ops"].Launch(Launch(memory), new Params().Add(memory.Upload(a)).Add(memory.Upload(b)).Add(memory.Upload(c)).Add(pout).Add(N).ToArray(), []);

        var expected = Enumerable.Range(0, N).SelectMany(i =>
        {
            var (x, y, z) = (H(a[i]), H(b[i]), H(c[i]));
            return new[]
            {
                ToHalf(x + y), ToHalf(x - y), ToHalf(x * y), ToHalf((x * y) + z), (ushort)(a[i] ^ 0x8000), (ushort)(b[i] & 0x7FFF),
                x < y ? a[i] : c[i], x >= z ? b[i] : c[i],
            };
        });
        Assert.Equal(expected, memory.Download<ushort>(pout, N * 8));
    }

    [Theory]
    [InlineData("sm_70")]
    [InlineData("sm_80")]
    public void F16x2_pairs_work_on_each_half_and_a_pair_comparison_sets_each_half_to_one_or_zero(string arch)
    {
        using var memory = new HostMemory();
        var (a, b, c) = (Inputs(4), Inputs(5), Inputs(6));
        var pout = memory.Upload(Enumerable.Repeat((ushort)0xFFFF, N * 4).ToArray());

        // N halves are N / 2 pairs.
        Module(arch).Kernels["half2_ops"].Launch(Launch(memory), new Params().Add(memory.Upload(a)).Add(memory.Upload(b)).Add(memory.Upload(c)).Add(pout).Add(N / 2).ToArray(), []);

        var expected = Enumerable.Range(0, N / 2).SelectMany(p =>
        {
            var halves = new[] { 2 * p, (2 * p) + 1 };
            return new[]
            {
                halves.Select(i => ToHalf(H(a[i]) + H(b[i]))),
                halves.Select(i => ToHalf(H(a[i]) * H(b[i]))),
                halves.Select(i => ToHalf((H(a[i]) * H(b[i])) + H(c[i]))),
                halves.Select(i => H(a[i]) < H(b[i]) ? (ushort)0x3C00 : (ushort)0),
            }.SelectMany(x => x);
        });
        Assert.Equal(expected, memory.Download<ushort>(pout, N * 4));
    }

    [Fact]
    public void Bf16_add_mul_fma_and_min_round_once_to_bf16()
    {
        using var memory = new HostMemory();
        ushort Bf(double v) => Half16.BFromDouble(v, FloatRounding.Rn);
        double B(ushort bits) => Half16.BToSingle(bits);
        var (a, b, c) = (Inputs(7).Select(h => Bf(H(h))).ToArray(), Inputs(8).Select(h => Bf(H(h))).ToArray(), Inputs(9).Select(h => Bf(H(h))).ToArray());
        var pout = memory.Upload(Enumerable.Repeat((ushort)0xFFFF, N * 4).ToArray());

        Module("sm_80").Kernels["bf16_ops"].Launch(Launch(memory), new Params().Add(memory.Upload(a)).Add(memory.Upload(b)).Add(memory.Upload(c)).Add(pout).Add(N).ToArray(), []);

        var expected = Enumerable.Range(0, N).SelectMany(i => new[]
        {
            Bf(B(a[i]) + B(b[i])), Bf(B(a[i]) * B(b[i])), Bf((B(a[i]) * B(b[i])) + B(c[i])), B(a[i]) <= B(b[i]) ? a[i] : b[i],
        });
        Assert.Equal(expected, memory.Download<ushort>(pout, N * 4));
    }

    [Fact]
    public void Pair_conversions_of_two_floats_into_f16x2_and_e4m3x2_and_back_round_to_the_nearest()
    {
        using var memory = new HostMemory();
        var random = new Random(11);
        float F() => (float)(Math.ScaleB(random.NextDouble() + 0.5, random.Next(-12, 10)) * (random.Next(2) * 2 - 1));
        var (a, b) = (Enumerable.Range(0, N).Select(_ => F()).ToArray(), Enumerable.Range(0, N).Select(_ => F()).ToArray());
        var (halves, e4m3, e5m2, back) = (memory.Upload(new uint[N]), memory.Upload(new ushort[N]), memory.Upload(new ushort[N]), memory.Upload(new uint[N]));

        Module("sm_90").Kernels["pair_cvt"].Launch(Launch(memory), new Params().Add(memory.Upload(a)).Add(memory.Upload(b)).Add(halves).Add(e4m3).Add(e5m2).Add(back).Add(N).ToArray(), []);

        uint Half(float v) => BitConverter.HalfToUInt16Bits((Half)v);
        Assert.Equal(Enumerable.Range(0, N).Select(i => Half(a[i]) | (Half(b[i]) << 16)), memory.Download<uint>(halves, N));
        var fp8 = memory.Download<ushort>(e4m3, N);
        Assert.Equal(Enumerable.Range(0, N).Select(i => (ushort)(Fp8.ToE4M3(b[i], false, true) | (Fp8.ToE4M3(a[i], false, true) << 8))), fp8);
        Assert.Equal(Enumerable.Range(0, N).Select(i => (ushort)(Fp8.ToE5M2(b[i], false, false) | (Fp8.ToE5M2(a[i], false, false) << 8))), memory.Download<ushort>(e5m2, N));
        Assert.Equal(fp8.Select(p => Half((float)Fp8.FromE4M3((byte)p)) | (Half((float)Fp8.FromE4M3((byte)(p >> 8))) << 16)), memory.Download<uint>(back, N));
    }
}
