using GpuPool.Ptx.Semantics;

namespace GpuPool.Ptx.Tests.Semantics;

/// <summary>
/// The 8-bit formats against a reference that knows nothing of their encoding rules: the nearest of the format's 256
/// values by brute force, ties to the even code.
/// </summary>
public sealed class Fp8Tests
{
    [Theory]
    [InlineData(0x38, 1.0)]
    [InlineData(0x7E, 448.0)]
    [InlineData(0x01, 0.001953125)]
    [InlineData(0x08, 0.015625)]
    [InlineData(0xB8, -1.0)]
    public void E4m3_codes_mean_what_the_format_says(int code, double value) => Assert.Equal(value, Fp8.FromE4M3((byte)code));

    [Theory]
    [InlineData(0x3C, 1.0)]
    [InlineData(0x7B, 57344.0)]
    [InlineData(0x01, 1.52587890625e-05)]
    [InlineData(0x7C, double.PositiveInfinity)]
    public void E5m2_codes_mean_what_the_format_says(int code, double value) => Assert.Equal(value, Fp8.FromE5M2((byte)code));

    /// <summary>The code nearest <paramref name="x"/> among the finite ones, ties to the even code.</summary>
    private static byte Nearest(double x, Func<byte, double> decode)
    {
        var best = -1;
        var bestDistance = double.PositiveInfinity;
        for (var c = 0; c < 256; c++)
        {
            var v = decode((byte)c);
            if (!double.IsFinite(v) || (v == 0 && (c & 0x80) != (double.IsNegative(x) ? 0x80 : 0)))
            {
                continue;
            }

            var d = Math.Abs(x - v);
            if (d < bestDistance || (d == bestDistance && (c & 1) == 0 && v != 0))
            {
                (best, bestDistance) = (c, d);
            }
        }

        return (byte)best;
    }

    [Fact]
    public void Every_float_in_range_rounds_to_the_nearest_code_ties_to_even_in_both_formats()
    {
        var random = new Random(8);
        var values = Enumerable.Range(0, 20000).Select(_ => (double)(float)(Math.ScaleB(random.NextDouble() + 0.5, random.Next(-20, 17)) * (random.Next(2) * 2 - 1)))
            .Concat(Enumerable.Range(0, 256).SelectMany(c => new[] { Fp8.FromE4M3((byte)c), Fp8.FromE5M2((byte)c) }).Where(double.IsFinite))
            .Concat(Enumerable.Range(0, 255).Select(c => (Fp8.FromE4M3((byte)c) + Fp8.FromE4M3((byte)(c + 1))) / 2).Where(double.IsFinite))
            .ToArray();
        foreach (var x in values)
        {
            var clamped4 = Math.Clamp(x, -448, 448);
            Assert.True(Fp8.ToE4M3(x, relu: false, satfinite: true) == Nearest(clamped4, Fp8.FromE4M3), $"e4m3 of {x:R}: 0x{Fp8.ToE4M3(x, false, true):x2}, nearest 0x{Nearest(clamped4, Fp8.FromE4M3):x2}");
            var clamped5 = Math.Clamp(x, -57344, 57344);
            Assert.True(Fp8.ToE5M2(x, relu: false, satfinite: true) == Nearest(clamped5, Fp8.FromE5M2), $"e5m2 of {x:R}");
        }
    }

    [Fact]
    public void Past_the_largest_finite_satfinite_clamps_and_without_it_e4m3_is_nan_and_e5m2_infinity()
    {
        Assert.Equal(0x7E, Fp8.ToE4M3(500, relu: false, satfinite: true));
        Assert.Equal(0xFE, Fp8.ToE4M3(double.NegativeInfinity, relu: false, satfinite: true));
        Assert.Equal(0x7F, Fp8.ToE4M3(500, relu: false, satfinite: false));
        Assert.Equal(0x7E, Fp8.ToE4M3(460, relu: false, satfinite: false));
        Assert.Equal(0x7B, Fp8.ToE5M2(70000, relu: false, satfinite: true));
        Assert.Equal(0x7C, Fp8.ToE5M2(70000, relu: false, satfinite: false));
        Assert.Equal(0x7F, Fp8.ToE4M3(double.NaN, relu: false, satfinite: true));
        Assert.Equal(0, Fp8.ToE4M3(-3, relu: true, satfinite: true));
    }
}
