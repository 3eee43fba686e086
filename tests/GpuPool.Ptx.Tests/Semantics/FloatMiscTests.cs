using CsCheck;
using GpuPool.Ptx.Semantics;
using static GpuPool.Ptx.Tests.Semantics.FloatGens;

namespace GpuPool.Ptx.Tests.Semantics;

/// <summary>min/max, compare, testp, copysign, ftz, sat, and the approximate functions held to the ISA's error bounds.</summary>
public class FloatMiscTests
{
    private static readonly float NaN1 = BitConverter.UInt32BitsToSingle(0x7FC0_0001);
    private const uint Canon = 0x7FFF_FFFF;

    [Fact]
    public void Min_and_Max_prefer_numbers_to_NaN_and_order_minus_zero_first()
    {
        Assert.Equal(2f, Fp32.Min(NaN1, 2f));
        Assert.Equal(2f, Fp32.Max(2f, NaN1));
        Assert.Equal(Canon, Bits(Fp32.Min(NaN1, float.NaN)));
        Assert.Equal(0x8000_0000u, Bits(Fp32.Min(0f, -0f)));
        Assert.Equal(0x8000_0000u, Bits(Fp32.Min(-0f, 0f)));
        Assert.Equal(0u, Bits(Fp32.Max(-0f, 0f)));
        Assert.Equal(0u, Bits(Fp32.Max(0f, -0f)));
        Assert.Equal(-3f, Fp32.Min(-3f, float.PositiveInfinity));
        Assert.Equal(Canon, Bits(Fp32.MinNaN(NaN1, 2f)));
        Assert.Equal(Canon, Bits(Fp32.MaxNaN(2f, NaN1)));
        Assert.Equal(2f, Fp32.MaxNaN(2f, 1f));
        Assert.Equal(0x7FFF_FFFF_FFFF_FFFFUL, Bits(Fp64.Min(double.NaN, double.NaN)));
        Assert.Equal(1.0, Fp64.Max(double.NaN, 1.0));
        Assert.Equal(0x8000_0000_0000_0000UL, Bits(Fp64.Min(0.0, -0.0)));
        Assert.True(double.IsNaN(Fp64.MaxNaN(1.0, double.NaN)));
    }

    [Fact]
    public void Min_and_Max_agree_with_the_ordinary_order_on_distinct_numbers() =>
        Gen.Select(F32, F32).Sample((a, b) =>
        {
            if (a != b)
            {
                Assert.Equal(a < b ? a : b, Fp32.Min(a, b));
                Assert.Equal(a > b ? a : b, Fp32.Max(a, b));
                Assert.Equal(a < b ? a : b, Fp32.MinNaN(a, b));
            }
        }, iter: 5_000);

    [Theory]
    [InlineData(CompareOp.Eq, false, true, false)]
    [InlineData(CompareOp.Ne, true, false, false)]
    [InlineData(CompareOp.Lt, true, false, false)]
    [InlineData(CompareOp.Le, true, true, false)]
    [InlineData(CompareOp.Gt, false, false, false)]
    [InlineData(CompareOp.Ge, false, true, false)]
    [InlineData(CompareOp.Equ, false, true, true)]
    [InlineData(CompareOp.Neu, true, false, true)]
    [InlineData(CompareOp.Ltu, true, false, true)]
    [InlineData(CompareOp.Leu, true, true, true)]
    [InlineData(CompareOp.Gtu, false, false, true)]
    [InlineData(CompareOp.Geu, false, true, true)]
    [InlineData(CompareOp.Num, true, true, false)]
    [InlineData(CompareOp.Nan, false, false, true)]
    public void Compare_on_less_equal_and_unordered_operands(CompareOp op, bool less, bool equal, bool unordered)
    {
        Assert.Equal(less, Fp32.Compare(op, 1f, 2f));
        Assert.Equal(equal, Fp32.Compare(op, -0f, 0f));
        Assert.Equal(unordered, Fp32.Compare(op, float.NaN, 1f));
        Assert.Equal(unordered, Fp64.Compare(op, 1.0, double.NaN));
    }

    [Fact]
    public void Compare_rejects_the_unsigned_integer_comparisons() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => Fp32.Compare(CompareOp.Lo, 1f, 2f));

    [Fact]
    public void Testp_counts_zero_as_normal()
    {
        Assert.True(Fp32.Testp(TestpKind.Normal, 0f));
        Assert.True(Fp32.Testp(TestpKind.Normal, -0f));
        Assert.True(Fp32.Testp(TestpKind.Normal, 1f));
        Assert.False(Fp32.Testp(TestpKind.Normal, float.Epsilon));
        Assert.True(Fp32.Testp(TestpKind.Subnormal, float.Epsilon));
        Assert.False(Fp32.Testp(TestpKind.Subnormal, 0f));
        Assert.True(Fp32.Testp(TestpKind.Finite, float.MaxValue));
        Assert.False(Fp32.Testp(TestpKind.Finite, float.NegativeInfinity));
        Assert.True(Fp32.Testp(TestpKind.Infinite, float.NegativeInfinity));
        Assert.False(Fp32.Testp(TestpKind.Number, float.NaN));
        Assert.True(Fp32.Testp(TestpKind.NotANumber, float.NaN));
        Assert.False(Fp32.Testp(TestpKind.Normal, float.NaN));
        Assert.True(Fp64.Testp(TestpKind.Normal, 0.0));
        Assert.True(Fp64.Testp(TestpKind.Subnormal, double.Epsilon));
        Assert.False(Fp64.Testp(TestpKind.Infinite, double.MaxValue));
    }

    [Fact]
    public void Copysign_takes_the_sign_of_the_first_operand_and_the_magnitude_of_the_second()
    {
        Assert.Equal(-3f, Fp32.Copysign(-1f, 3f));
        Assert.Equal(3f, Fp32.Copysign(1f, -3f));
        Assert.Equal(0x8000_0000u, Bits(Fp32.Copysign(-5f, 0f)));
        Assert.Equal(-2.5, Fp64.Copysign(-0.0, 2.5));
        Assert.Equal(2.5, Fp64.Copysign(1.0, -2.5));
    }

    [Fact]
    public void Ftz_Saturate_Neg_Abs()
    {
        Assert.Equal(0x8000_0000u, Bits(Fp32.Ftz(-float.Epsilon)));
        Assert.Equal(0u, Bits(Fp32.Ftz(BitConverter.UInt32BitsToSingle(0x007F_FFFF))));
        Assert.Equal(BitConverter.UInt32BitsToSingle(0x0080_0000), Fp32.Ftz(BitConverter.UInt32BitsToSingle(0x0080_0000)));
        Assert.Equal(Canon, Bits(Fp32.Ftz(BitConverter.UInt32BitsToSingle(Canon))));
        Assert.Equal(0u, Bits(Fp32.Saturate(float.NaN)));
        Assert.Equal(0u, Bits(Fp32.Saturate(-0f)));
        Assert.Equal(0u, Bits(Fp32.Saturate(-7f)));
        Assert.Equal(1f, Fp32.Saturate(float.PositiveInfinity));
        Assert.Equal(0.25f, Fp32.Saturate(0.25f));
        Assert.Equal(0x8000_0000u, Bits(Fp32.Neg(0f)));
        Assert.Equal(3f, Fp32.Abs(-3f));
        Assert.Equal(0x7FC0_0001u, Bits(Fp32.Abs(BitConverter.UInt32BitsToSingle(0xFFC0_0001))));
        Assert.Equal(0UL, Bits(Fp64.Saturate(double.NaN)));
        Assert.Equal(0UL, Bits(Fp64.Saturate(-0.0)));
        Assert.Equal(1.0, Fp64.Saturate(double.PositiveInfinity));
        Assert.Equal(0.25, Fp64.Saturate(0.25));
        Assert.Equal(0x8000_0000_0000_0000UL, Bits(Fp64.Ftz(-double.Epsilon)));
        Assert.Equal(-1.0, Fp64.Neg(1.0));
        Assert.Equal(1.0, Fp64.Abs(-1.0));
    }

    // ---- approximations: each held to the bound the ISA documents, against the double-precision function ----

    private static double UlpOf(float y) => Math.Max(MathF.BitIncrement(MathF.Abs(y)) - MathF.Abs(y), float.Epsilon);

    private static double UlpError(float got, double exact) => Math.Abs(got - exact) / UlpOf((float)exact);

    private static readonly Gen<float> Moderate = Gen.Float[-100f, 100f];

    [Fact]
    public void Ex2Approx_is_within_2_ulp() =>
        Gen.Float[-126f, 127.99f].Sample(x => Assert.True(UlpError(Fp32.Ex2Approx(x), Math.Pow(2, x)) <= 2, $"ex2({x:R})"), iter: 20_000);

    [Fact]
    public void Lg2Approx_is_within_its_absolute_bound() =>
        F32.Sample(x0 =>
        {
            float x = MathF.Abs(x0);
            if (x != 0)
            {
                double exact = Math.Log2(x);
                double err = Math.Abs(Fp32.Lg2Approx(x) - exact);
                Assert.True(err <= Math.Max(Math.Pow(2, -22.6), UlpOf((float)exact)), $"lg2({x:R}) err {err}");
            }
        }, iter: 20_000);

    [Fact]
    public void SinApprox_and_CosApprox_are_within_2_to_the_minus_20_9_on_minus_pi_to_pi() =>
        Gen.Float[-MathF.PI, MathF.PI].Sample(x =>
        {
            Assert.True(Math.Abs(Fp32.SinApprox(x) - Math.Sin(x)) <= Math.Pow(2, -20.9), $"sin({x:R})");
            Assert.True(Math.Abs(Fp32.CosApprox(x) - Math.Cos(x)) <= Math.Pow(2, -20.9), $"cos({x:R})");
        }, iter: 20_000);

    [Fact]
    public void TanhApprox_is_within_a_relative_2_to_the_minus_11() =>
        Moderate.Sample(x =>
        {
            double exact = Math.Tanh(x);
            Assert.True(exact == 0 ? Fp32.TanhApprox(x) == 0 : Math.Abs((Fp32.TanhApprox(x) - exact) / exact) <= Math.Pow(2, -11), $"tanh({x:R})");
        }, iter: 20_000);

    [Fact]
    public void Reciprocal_roots_and_quotients_are_within_their_bounds() =>
        Gen.Select(F32, F32).Sample((a, b) =>
        {
            if (b != 0 && float.IsNormal(1f / b))
            {
                Assert.True(UlpError(Fp32.RcpApprox(b), 1.0 / b) <= 1, $"rcp({b:R})");
            }

            float m = MathF.Abs(b);
            double q = (double)a / b;
            if (m >= MathF.ScaleB(1, -126) && m <= MathF.ScaleB(1, 126) && float.IsNormal((float)q))
            {
                Assert.True(UlpError(Fp32.DivApprox(a, b), q) <= 2, $"div.approx({a:R}, {b:R})");
                Assert.True(UlpError(Fp32.DivFull(a, b), q) <= 2, $"div.full({a:R}, {b:R})");
            }

            if (m != 0)
            {
                double s = Math.Sqrt(m);
                Assert.True(Math.Abs((Fp32.SqrtApprox(m) - s) / s) <= Math.Pow(2, -23), $"sqrt({m:R})");
                Assert.True(Math.Abs((Fp32.RsqrtApprox(m) - (1 / s)) * s) <= Math.Pow(2, -22.9), $"rsqrt({m:R})");
            }
        }, iter: 20_000);

    [Fact]
    public void F64_approximations_are_within_their_bounds() =>
        F64.Sample(a =>
        {
            double m = Math.Abs(a);
            if (m != 0 && double.IsNormal(m) && double.IsNormal(1 / m))
            {
                Assert.True(Math.Abs((Fp64.RcpApproxFtz(m) * m) - 1) <= Math.Pow(2, -51), $"rcp({m:R})");
                Assert.True(Math.Abs((Fp64.RsqrtApprox(m) * Math.Sqrt(m)) - 1) <= Math.Pow(2, -50), $"rsqrt({m:R})");
            }
        }, iter: 10_000);

    [Fact]
    public void Approximations_at_special_values()
    {
        Assert.Equal(0u, Bits(Fp32.Ex2Approx(float.NegativeInfinity)));
        Assert.Equal(float.PositiveInfinity, Fp32.Ex2Approx(float.PositiveInfinity));
        Assert.Equal(1f, Fp32.Ex2Approx(0f));
        Assert.Equal(8f, Fp32.Ex2Approx(3f));
        Assert.Equal(float.PositiveInfinity, Fp32.Ex2Approx(128f));
        Assert.Equal(float.Epsilon, Fp32.Ex2Approx(-149f));
        Assert.Equal(float.NegativeInfinity, Fp32.Lg2Approx(0f));
        Assert.Equal(Canon, Bits(Fp32.Lg2Approx(-1f)));
        Assert.Equal(10f, Fp32.Lg2Approx(1024f));
        Assert.Equal(Canon, Bits(Fp32.SinApprox(float.PositiveInfinity)));
        Assert.Equal(Canon, Bits(Fp32.CosApprox(float.NaN)));
        Assert.Equal(1f, Fp32.TanhApprox(float.PositiveInfinity));
        Assert.Equal(-1f, Fp32.TanhApprox(-50f));
        Assert.Equal(float.PositiveInfinity, Fp32.RsqrtApprox(0f));
        Assert.Equal(float.NegativeInfinity, Fp32.RsqrtApprox(-0f));
        Assert.Equal(Canon, Bits(Fp32.RsqrtApprox(-4f)));
        Assert.Equal(0.5f, Fp32.RsqrtApprox(4f));
        Assert.Equal(float.NegativeInfinity, Fp32.RcpApprox(-0f));
        Assert.Equal(0f, Fp32.DivApprox(1f, MathF.ScaleB(1, 127)));
        Assert.Equal(Canon, Bits(Fp32.DivApprox(float.PositiveInfinity, MathF.ScaleB(1, 127))));
        Assert.Equal(0.5f, Fp32.DivApprox(1f, 2f));
        Assert.Equal(double.PositiveInfinity, Fp64.RcpApproxFtz(double.Epsilon));   // subnormal input flushed to +0
        Assert.Equal(0.0, Fp64.RcpApproxFtz(Math.ScaleB(1, 1023)));                // subnormal result flushed
        Assert.Equal(0.5, Fp64.RsqrtApprox(4.0));
    }
}
