using CsCheck;
using GpuPool.Ptx.Semantics;
using static GpuPool.Ptx.Tests.Semantics.FloatGens;

namespace GpuPool.Ptx.Tests.Semantics;

/// <summary>f64 arithmetic in every rounding mode against exact rational arithmetic.</summary>
public class Fp64RoundingTests
{
    private const int Iter = 20_000;

    private static readonly Gen<FloatRounding> Modes = Gen.Enum<FloatRounding>();

    private static void AssertRounded(Rational exact, FloatRounding r, double actual, string what)
    {
        if (exact.Sign == 0)
        {
            Assert.True(actual == 0, $"{what}: exact zero, got {actual}");
            return;
        }

        double expected = ExactRound.F64(exact, r);
        Assert.True(Bits(expected) == Bits(actual), $"{what} {r}: expected {expected:R} (0x{Bits(expected):X16}), got {actual:R} (0x{Bits(actual):X16})");
    }

    [Fact]
    public void Add_and_Sub_round_exactly_in_every_mode() =>
        Gen.Select(F64, F64, Modes).Sample((a, b, r) =>
        {
            AssertRounded(Rational.Of(a) + Rational.Of(b), r, Fp64.Add(a, b, r), $"{a:R} + {b:R}");
            AssertRounded(Rational.Of(a) - Rational.Of(b), r, Fp64.Sub(a, b, r), $"{a:R} - {b:R}");
        }, iter: Iter);

    [Fact]
    public void Mul_rounds_exactly_in_every_mode() =>
        Gen.Select(F64, F64, Modes).Sample((a, b, r) =>
            AssertRounded(Rational.Of(a) * Rational.Of(b), r, Fp64.Mul(a, b, r), $"{a:R} * {b:R}"), iter: Iter);

    [Fact]
    public void Fma_rounds_once_exactly_in_every_mode() =>
        Gen.Select(F64, F64, F64, Modes).Sample((a, b, c, r) =>
            AssertRounded((Rational.Of(a) * Rational.Of(b)) + Rational.Of(c), r, Fp64.Fma(a, b, c, r), $"fma({a:R}, {b:R}, {c:R})"), iter: Iter);

    [Fact]
    public void Fma_with_a_product_that_nearly_cancels_the_addend_rounds_exactly() =>
        Gen.Select(F64, F64, Modes).Sample((a, b, r) =>
        {
            double c = -(a * b);
            if (double.IsFinite(c))
            {
                AssertRounded((Rational.Of(a) * Rational.Of(b)) + Rational.Of(c), r, Fp64.Fma(a, b, c, r), $"fma({a:R}, {b:R}, {c:R})");
            }
        }, iter: Iter);

    [Fact]
    public void Div_and_Rcp_round_exactly_in_every_mode() =>
        Gen.Select(F64, F64, Modes).Sample((a, b, r) =>
        {
            if (b != 0)
            {
                AssertRounded(Rational.Of(a) / Rational.Of(b), r, Fp64.Div(a, b, r), $"{a:R} / {b:R}");
                AssertRounded(Rational.Of(1.0) / Rational.Of(b), r, Fp64.Rcp(b, r), $"1 / {b:R}");
            }
        }, iter: Iter);

    [Fact]
    public void Sqrt_brackets_the_exact_root_as_each_mode_requires() =>
        Gen.Select(F64, Modes).Sample((a0, r) =>
        {
            double a = Math.Abs(a0);
            if (a == 0)
            {
                return;
            }

            double y = Fp64.Sqrt(a, r);
            Rational x = Rational.Of(a);
            Rational y2 = Rational.Of(y) * Rational.Of(y);
            Rational above = Rational.Of(Math.BitIncrement(y)) * Rational.Of(Math.BitIncrement(y));
            Rational below = Rational.Of(Math.BitDecrement(y)) * Rational.Of(Math.BitDecrement(y));
            switch (r)
            {
                case FloatRounding.Rz or FloatRounding.Rm:
                    Assert.True(y2.CompareTo(x) <= 0 && above.CompareTo(x) > 0, $"sqrt({a:R}) {r} = {y:R}");
                    break;
                case FloatRounding.Rp:
                    Assert.True(y2.CompareTo(x) >= 0 && below.CompareTo(x) < 0, $"sqrt({a:R}) {r} = {y:R}");
                    break;
                default:
                    Rational lo = (Rational.Of(y) + Rational.Of(Math.BitDecrement(y))) / Rational.Of(2.0);
                    Rational hi = (Rational.Of(y) + Rational.Of(Math.BitIncrement(y))) / Rational.Of(2.0);
                    Assert.True((lo * lo).CompareTo(x) < 0 && (hi * hi).CompareTo(x) > 0, $"sqrt({a:R}) rn = {y:R}");
                    break;
            }
        }, iter: Iter);

    [Fact]
    public void Directed_results_at_the_edges_of_the_range()
    {
        Assert.Equal(double.MaxValue, Fp64.Mul(double.MaxValue, 2, FloatRounding.Rz));
        Assert.Equal(double.PositiveInfinity, Fp64.Mul(double.MaxValue, 2, FloatRounding.Rp));
        Assert.Equal(-double.MaxValue, Fp64.Mul(double.MaxValue, -2, FloatRounding.Rp));
        Assert.Equal(double.Epsilon, Fp64.Mul(double.Epsilon, 0.25, FloatRounding.Rp));
        Assert.Equal(0.0, Fp64.Mul(double.Epsilon, 0.75, FloatRounding.Rz));
        Assert.Equal(-double.Epsilon, Fp64.Mul(double.Epsilon, -0.25, FloatRounding.Rm));
        Assert.Equal(Math.BitIncrement(1.0), Fp64.Add(1.0, 1e-300, FloatRounding.Rp));
        Assert.Equal(Math.BitDecrement(1.0), Fp64.Sub(1.0, double.Epsilon, FloatRounding.Rz));
        Assert.Equal(0x8000_0000_0000_0000UL, Bits(Fp64.Add(1.0, -1.0, FloatRounding.Rm)));
        Assert.Equal(0UL, Bits(Fp64.Add(1.0, -1.0, FloatRounding.Rp)));
        Assert.Equal(0x8000_0000_0000_0000UL, Bits(Fp64.Fma(-0.0, 1.0, -0.0, FloatRounding.Rz)));
        Assert.Equal(Math.BitIncrement(1.0), Fp64.Div(1.0, Math.BitDecrement(1.0), FloatRounding.Rp));
        Assert.True(double.IsNaN(Fp64.Sqrt(-1.0, FloatRounding.Rz)));
        Assert.Equal(1.0, Fp64.Sqrt(1.0, FloatRounding.Rp));
    }
}
