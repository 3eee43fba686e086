using CsCheck;
using GpuPool.Ptx.Semantics;
using static GpuPool.Ptx.Tests.Semantics.FloatGens;

namespace GpuPool.Ptx.Tests.Semantics;

/// <summary>f32 arithmetic in every rounding mode against exact rational arithmetic.</summary>
public class Fp32RoundingTests
{
    private const int Iter = 40_000;

    private static readonly Gen<FloatRounding> Modes = Gen.Enum<FloatRounding>();

    private static void AssertRounded(Rational exact, FloatRounding r, float actual, string what)
    {
        if (exact.Sign == 0)
        {
            Assert.True(actual == 0, $"{what}: exact zero, got {actual}");
            return;
        }

        float expected = ExactRound.F32(exact, r);
        Assert.True(Bits(expected) == Bits(actual), $"{what} {r}: expected {expected:R} (0x{Bits(expected):X8}), got {actual:R} (0x{Bits(actual):X8})");
    }

    [Fact]
    public void Add_and_Sub_round_exactly_in_every_mode() =>
        Gen.Select(F32, F32, Modes).Sample((a, b, r) =>
        {
            AssertRounded(Rational.Of(a) + Rational.Of(b), r, Fp32.Add(a, b, r), $"{a:R} + {b:R}");
            AssertRounded(Rational.Of(a) - Rational.Of(b), r, Fp32.Sub(a, b, r), $"{a:R} - {b:R}");
        }, iter: Iter);

    [Fact]
    public void Mul_rounds_exactly_in_every_mode() =>
        Gen.Select(F32, F32, Modes).Sample((a, b, r) =>
            AssertRounded(Rational.Of(a) * Rational.Of(b), r, Fp32.Mul(a, b, r), $"{a:R} * {b:R}"), iter: Iter);

    [Fact]
    public void Fma_rounds_once_exactly_in_every_mode() =>
        Gen.Select(F32, F32, F32, Modes).Sample((a, b, c, r) =>
            AssertRounded((Rational.Of(a) * Rational.Of(b)) + Rational.Of(c), r, Fp32.Fma(a, b, c, r), $"fma({a:R}, {b:R}, {c:R})"), iter: Iter);

    [Fact]
    public void Fma_with_a_product_that_nearly_cancels_the_addend_rounds_exactly() =>
        Gen.Select(F32, F32, Modes).Sample((a, b, r) =>
        {
            float c = -(float)((double)a * b);   // the addend cancels all but the product's low bits
            if (float.IsFinite(c))
            {
                AssertRounded((Rational.Of(a) * Rational.Of(b)) + Rational.Of(c), r, Fp32.Fma(a, b, c, r), $"fma({a:R}, {b:R}, {c:R})");
            }
        }, iter: Iter);

    [Fact]
    public void Div_and_Rcp_round_exactly_in_every_mode() =>
        Gen.Select(F32, F32, Modes).Sample((a, b, r) =>
        {
            if (b != 0)
            {
                AssertRounded(Rational.Of(a) / Rational.Of(b), r, Fp32.Div(a, b, r), $"{a:R} / {b:R}");
                AssertRounded(Rational.Of(1.0) / Rational.Of(b), r, Fp32.Rcp(b, r), $"1 / {b:R}");
            }
        }, iter: Iter);

    [Fact]
    public void Sqrt_brackets_the_exact_root_as_each_mode_requires() =>
        Gen.Select(F32, Modes).Sample((a0, r) =>
        {
            float a = MathF.Abs(a0);
            if (a == 0)
            {
                return;
            }

            float y = Fp32.Sqrt(a, r);
            Rational x = Rational.Of(a);
            Rational y2 = Rational.Of(y) * Rational.Of(y);
            Rational below = Rational.Of(MathF.BitDecrement(y)) * Rational.Of(MathF.BitDecrement(y));
            Rational above = Rational.Of(MathF.BitIncrement(y)) * Rational.Of(MathF.BitIncrement(y));
            switch (r)
            {
                case FloatRounding.Rz or FloatRounding.Rm:
                    Assert.True(y2.CompareTo(x) <= 0 && above.CompareTo(x) > 0, $"sqrt({a:R}) {r} = {y:R}");
                    break;
                case FloatRounding.Rp:
                    Assert.True(y2.CompareTo(x) >= 0 && below.CompareTo(x) < 0, $"sqrt({a:R}) {r} = {y:R}");
                    break;
                default:
                    Rational lo = Rational.Of(((double)y + MathF.BitDecrement(y)) / 2), hi = Rational.Of(((double)y + MathF.BitIncrement(y)) / 2);
                    Assert.True((lo * lo).CompareTo(x) < 0 && (hi * hi).CompareTo(x) > 0, $"sqrt({a:R}) rn = {y:R}");
                    break;
            }
        }, iter: Iter);

    [Theory]
    [InlineData(FloatRounding.Rn, 0x7F80_0000u)]
    [InlineData(FloatRounding.Rz, 0x7F7F_FFFFu)]
    [InlineData(FloatRounding.Rm, 0x7F7F_FFFFu)]
    [InlineData(FloatRounding.Rp, 0x7F80_0000u)]
    public void Overflow_goes_to_infinity_or_to_the_largest_finite_by_mode(FloatRounding r, uint expected) =>
        Assert.Equal(expected, Bits(Fp32.Mul(float.MaxValue, 2f, r)));

    [Theory]
    [InlineData(FloatRounding.Rn, 0u)]
    [InlineData(FloatRounding.Rz, 0u)]
    [InlineData(FloatRounding.Rm, 0u)]
    [InlineData(FloatRounding.Rp, 1u)]
    public void Underflow_below_the_smallest_subnormal_rounds_by_mode(FloatRounding r, uint expected) =>
        Assert.Equal(expected, Bits(Fp32.Mul(float.Epsilon, 0.25f, r)));

    [Theory]
    [InlineData(FloatRounding.Rn, 0u)]
    [InlineData(FloatRounding.Rz, 0u)]
    [InlineData(FloatRounding.Rp, 0u)]
    [InlineData(FloatRounding.Rm, 0x8000_0000u)]
    public void An_exact_zero_sum_is_plus_zero_except_when_rounding_down(FloatRounding r, uint expected)
    {
        Assert.Equal(expected, Bits(Fp32.Add(1.5f, -1.5f, r)));
        Assert.Equal(expected, Bits(Fp32.Add(0f, -0f, r)));
        Assert.Equal(expected, Bits(Fp32.Fma(2f, 3f, -6f, r)));
        Assert.Equal(0x8000_0000u, Bits(Fp32.Add(-0f, -0f, r)));
    }

    [Fact]
    public void Directed_adds_of_far_apart_values_step_one_ulp()
    {
        Assert.Equal(MathF.BitIncrement(1f), Fp32.Add(1f, 1e-30f, FloatRounding.Rp));
        Assert.Equal(1f, Fp32.Add(1f, 1e-30f, FloatRounding.Rz));
        Assert.Equal(MathF.BitDecrement(1f), Fp32.Add(1f, -1e-30f, FloatRounding.Rz));
        Assert.Equal(MathF.BitDecrement(1f), Fp32.Sub(1f, 1e-30f, FloatRounding.Rm));
        Assert.Equal(1f, Fp32.Sub(1f, 1e-30f, FloatRounding.Rn));
    }

    [Theory]
    [InlineData(FloatRounding.Rn)]
    [InlineData(FloatRounding.Rz)]
    [InlineData(FloatRounding.Rm)]
    [InlineData(FloatRounding.Rp)]
    public void NaN_results_are_the_canonical_NaN_in_every_mode(FloatRounding r)
    {
        float odd = BitConverter.UInt32BitsToSingle(0xFFC0_1234);
        Assert.Equal(0x7FFF_FFFFu, Bits(Fp32.Add(odd, 1f, r)));
        Assert.Equal(0x7FFF_FFFFu, Bits(Fp32.Add(float.PositiveInfinity, float.NegativeInfinity, r)));
        Assert.Equal(0x7FFF_FFFFu, Bits(Fp32.Mul(0f, float.PositiveInfinity, r)));
        Assert.Equal(0x7FFF_FFFFu, Bits(Fp32.Div(0f, 0f, r)));
        Assert.Equal(0x7FFF_FFFFu, Bits(Fp32.Sqrt(-1f, r)));
        Assert.Equal(0x7FFF_FFFFu, Bits(Fp32.Fma(0f, float.PositiveInfinity, 1f, r)));
        Assert.Equal(float.PositiveInfinity, Fp32.Div(1f, 0f, r));
        Assert.Equal(float.NegativeInfinity, Fp32.Rcp(-0f, r));
        Assert.Equal(0x8000_0000u, Bits(Fp32.Sqrt(-0f, r)));
    }
}
