using CsCheck;
using GpuPool.Ptx.Semantics;
using static GpuPool.Ptx.Tests.Semantics.FloatGens;

namespace GpuPool.Ptx.Tests.Semantics;

/// <summary>f16, bf16 and tf32: exhaustive over the 16-bit patterns, and against exact rounding for the arithmetic.</summary>
public class Half16Tests
{
    private static readonly Gen<FloatRounding> Modes = Gen.Enum<FloatRounding>();

    private static bool IsNaN16(ushort h) => (h & 0x7FFF) > 0x7C00;

    private static bool IsNaNB16(ushort h) => (h & 0x7FFF) > 0x7F80;

    private static ushort F16(Rational x, FloatRounding r) => (ushort)ExactRound.Round(x, 10, 5, r);

    private static ushort B16(Rational x, FloatRounding r) => (ushort)ExactRound.Round(x, 7, 8, r);

    [Fact]
    public void ToSingle_agrees_with_System_Half_for_all_65536_patterns()
    {
        for (int i = 0; i < 65536; i++)
        {
            ushort h = (ushort)i;
            float expected = (float)BitConverter.UInt16BitsToHalf(h);
            float actual = Half16.ToSingle(h);
            if (IsNaN16(h))
            {
                Assert.True(float.IsNaN(actual), $"0x{h:X4}");
            }
            else
            {
                Assert.True(Bits(expected) == Bits(actual), $"0x{h:X4}: expected {expected:R}, got {actual:R}");
            }
        }
    }

    [Fact]
    public void Every_f16_and_bf16_survives_the_round_trip_through_float_in_every_mode()
    {
        for (int i = 0; i < 65536; i++)
        {
            ushort h = (ushort)i;
            foreach (FloatRounding r in Enum.GetValues<FloatRounding>())
            {
                Assert.Equal(IsNaN16(h) ? Half16.CanonicalNaN : h, Half16.FromSingle(Half16.ToSingle(h), r));
                Assert.Equal(IsNaN16(h) ? Half16.CanonicalNaN : h, Half16.FromDouble(Half16.ToDouble(h), r));
                Assert.Equal(IsNaNB16(h) ? Half16.CanonicalNaN : h, Half16.BFromSingle(Half16.BToSingle(h), r));
            }
        }
    }

    [Fact]
    public void FromSingle_rn_agrees_with_System_Half_on_a_million_floats_and_every_midpoint()
    {
        for (uint bits = 0; bits < 0xFFFF_F000; bits += 4093)
        {
            Check(BitConverter.UInt32BitsToSingle(bits));
        }

        // Midpoints between neighbouring f16 values, and their float neighbours: where ties-to-even decides.
        for (int i = 0; i < 0x7C00; i++)
        {
            float mid = (float)(((double)Half16.ToSingle((ushort)i) + Half16.ToSingle((ushort)(i + 1))) / 2);
            Check(mid);
            Check(-mid);
            Check(MathF.BitIncrement(mid));
            Check(MathF.BitDecrement(mid));
        }

        static void Check(float f)
        {
            ushort expected = float.IsNaN(f) ? Half16.CanonicalNaN : BitConverter.HalfToUInt16Bits((Half)f);
            ushort actual = Half16.FromSingle(f, FloatRounding.Rn);
            Assert.True(expected == actual, $"{f:R}: expected 0x{expected:X4}, got 0x{actual:X4}");
        }
    }

    [Fact]
    public void FromSingle_and_BFromSingle_round_exactly_in_every_mode() =>
        Gen.Select(F32, Modes).Sample((f, r) =>
        {
            ushort zero = float.IsNegative(f) ? (ushort)0x8000 : (ushort)0;
            Assert.Equal(f == 0 ? zero : F16(Rational.Of(f), r), Half16.FromSingle(f, r));
            Assert.Equal(f == 0 ? zero : B16(Rational.Of(f), r), Half16.BFromSingle(f, r));
        }, iter: 50_000);

    [Fact]
    public void FromDouble_rounds_once_from_the_double() =>
        Gen.Select(F64, Modes).Sample((d, r) =>
            Assert.Equal(d == 0 ? (double.IsNegative(d) ? (ushort)0x8000 : (ushort)0) : F16(Rational.Of(d), r), Half16.FromDouble(d, r)), iter: 50_000);

    private static readonly Gen<ushort> AnyF16 = Gen.UShort.Where(h => !IsNaN16(h) && (h & 0x7C00) != 0x7C00);
    private static readonly Gen<ushort> AnyBF16 = Gen.UShort.Where(h => !IsNaNB16(h) && (h & 0x7F80) != 0x7F80);

    private static void AssertF16(Rational exact, ushort actual, FloatRounding r, string what)
    {
        if (exact.Sign == 0)
        {
            Assert.True((actual & 0x7FFF) == 0, what);
            return;
        }

        ushort expected = F16(exact, r);
        Assert.True(expected == actual, $"{what} {r}: expected 0x{expected:X4}, got 0x{actual:X4}");
    }

    private static void AssertB16(Rational exact, ushort actual, FloatRounding r, string what)
    {
        if (exact.Sign == 0)
        {
            Assert.True((actual & 0x7FFF) == 0, what);
            return;
        }

        ushort expected = B16(exact, r);
        Assert.True(expected == actual, $"{what} {r}: expected 0x{expected:X4}, got 0x{actual:X4}");
    }

    [Fact]
    public void F16_arithmetic_rounds_exactly_in_every_mode() =>
        Gen.Select(AnyF16, AnyF16, AnyF16, Modes).Sample((a, b, c, r) =>
        {
            Rational x = Rational.Of(Half16.ToDouble(a)), y = Rational.Of(Half16.ToDouble(b)), z = Rational.Of(Half16.ToDouble(c));
            AssertF16(x + y, Half16.Add(a, b, r, false, false), r, $"0x{a:X4} + 0x{b:X4}");
            AssertF16(x - y, Half16.Sub(a, b, r, false, false), r, $"0x{a:X4} - 0x{b:X4}");
            AssertF16(x * y, Half16.Mul(a, b, r, false, false), r, $"0x{a:X4} * 0x{b:X4}");
            AssertF16((x * y) + z, Half16.Fma(a, b, c, r, false, false), r, $"fma(0x{a:X4}, 0x{b:X4}, 0x{c:X4})");
        }, iter: 30_000);

    [Fact]
    public void Bf16_arithmetic_rounds_exactly_in_every_mode() =>
        Gen.Select(AnyBF16, AnyBF16, AnyBF16, Modes).Sample((a, b, c, r) =>
        {
            Rational x = Rational.Of(Half16.BToSingle(a)), y = Rational.Of(Half16.BToSingle(b)), z = Rational.Of(Half16.BToSingle(c));
            AssertB16(x + y, Half16.BAdd(a, b, r), r, $"0x{a:X4} + 0x{b:X4}");
            AssertB16(x - y, Half16.BSub(a, b, r), r, $"0x{a:X4} - 0x{b:X4}");
            AssertB16(x * y, Half16.BMul(a, b, r), r, $"0x{a:X4} * 0x{b:X4}");
            AssertB16((x * y) + z, Half16.BFma(a, b, c, r), r, $"fma(0x{a:X4}, 0x{b:X4}, 0x{c:X4})");
        }, iter: 30_000);

    [Fact]
    public void Packed_pairs_work_lane_by_lane_with_element_0_low() =>
        Gen.Select(Gen.UInt, Gen.UInt, Gen.UInt).Sample((a, b, c) =>
        {
            Assert.Equal(Half16.Pack(Half16.Add(Half16.Lo(a), Half16.Lo(b), FloatRounding.Rn, false, false), Half16.Add(Half16.Hi(a), Half16.Hi(b), FloatRounding.Rn, false, false)),
                Half16.Add2(a, b, FloatRounding.Rn, false, false));
            Assert.Equal(Half16.Pack(Half16.Fma(Half16.Lo(a), Half16.Lo(b), Half16.Lo(c), FloatRounding.Rn, true, true), Half16.Fma(Half16.Hi(a), Half16.Hi(b), Half16.Hi(c), FloatRounding.Rn, true, true)),
                Half16.Fma2(a, b, c, FloatRounding.Rn, true, true));
            Assert.Equal(Half16.Pack(Half16.BMax(Half16.Lo(a), Half16.Lo(b)), Half16.BMax(Half16.Hi(a), Half16.Hi(b))), Half16.BMax2(a, b));
        }, iter: 5_000);

    [Fact]
    public void F16_special_values()
    {
        const ushort one = 0x3C00, two = 0x4000, max = 0x7BFF, inf = 0x7C00, nan = 0x7E00, minSub = 0x0001;
        Assert.Equal(two, Half16.Add(one, one, FloatRounding.Rn, false, false));
        Assert.Equal(inf, Half16.Add(max, max, FloatRounding.Rn, false, false));
        Assert.Equal(max, Half16.Add(max, max, FloatRounding.Rz, false, false));
        Assert.Equal(Half16.CanonicalNaN, Half16.Add(nan, one, FloatRounding.Rn, false, false));
        Assert.Equal(Half16.CanonicalNaN, Half16.Add(inf, (ushort)(inf | 0x8000), FloatRounding.Rn, false, false));
        Assert.Equal((ushort)0x8000, Half16.Sub(one, one, FloatRounding.Rm, false, false));
        Assert.Equal((ushort)0, Half16.Sub(one, one, FloatRounding.Rn, false, false));

        // .ftz flushes subnormal inputs and results; .sat clamps to [0, 1] and NaN to +0.
        Assert.Equal((ushort)0x0002, Half16.Add(minSub, minSub, FloatRounding.Rn, false, false));
        Assert.Equal((ushort)0, Half16.Add(minSub, minSub, FloatRounding.Rn, true, false));
        Assert.Equal((ushort)0x8000, Half16.Mul(0x8200, one, FloatRounding.Rn, true, false));
        Assert.Equal(one, Half16.Add(one, one, FloatRounding.Rn, false, true));
        Assert.Equal((ushort)0, Half16.Sub(0, one, FloatRounding.Rn, false, true));
        Assert.Equal((ushort)0, Half16.Add(nan, one, FloatRounding.Rn, false, true));
        Assert.Equal((ushort)0x3800, Half16.Mul(one, 0x3800, FloatRounding.Rn, false, true));

        // min/max: NaN loses to a number; two NaNs give the canonical NaN; -0 < +0; .NaN propagates.
        Assert.Equal(one, Half16.Min(nan, one));
        Assert.Equal(Half16.CanonicalNaN, Half16.Max(nan, nan));
        Assert.Equal(Half16.CanonicalNaN, Half16.Min(nan, one, nan: true));
        Assert.Equal((ushort)0x8000, Half16.Min(0, 0x8000));
        Assert.Equal((ushort)0, Half16.Max(0x8000, 0));
        Assert.Equal((ushort)0x8000, Half16.Max(0x8000, 0x8000));
        Assert.Equal((ushort)0, Half16.Relu(0xBC00));
        Assert.Equal(Half16.CanonicalNaN, Half16.Relu(nan));
        Assert.Equal((ushort)0xBC00, Half16.Neg(one));
        Assert.Equal(one, Half16.Abs(0xBC00));

        Assert.True(Half16.Compare(CompareOp.Lt, one, two));
        Assert.False(Half16.Compare(CompareOp.Eq, nan, nan));
        Assert.True(Half16.Compare(CompareOp.Neu, nan, nan));
        Assert.True(Half16.Compare(CompareOp.Eq, 0, 0x8000));
    }

    [Fact]
    public void Bf16_special_values()
    {
        const ushort one = 0x3F80, inf = 0x7F80;
        Assert.Equal((ushort)0x4000, Half16.BAdd(one, one, FloatRounding.Rn));
        Assert.Equal(one, Half16.BFromSingle(1.00390625f, FloatRounding.Rn));            // tie to even: 1 + 2^-8
        Assert.Equal((ushort)0x3F82, Half16.BFromSingle(1.01171875f, FloatRounding.Rn)); // tie to even: 1 + 3·2^-8
        Assert.Equal((ushort)0x3F81, Half16.BFromSingle(1.00390625f, FloatRounding.Rp));
        Assert.Equal((ushort)0x7F7F, Half16.BFromSingle(float.MaxValue, FloatRounding.Rz));
        Assert.Equal(inf, Half16.BFromSingle(float.MaxValue, FloatRounding.Rn));
        Assert.Equal(Half16.CanonicalNaN, Half16.BFromSingle(float.NaN, FloatRounding.Rn));
        Assert.Equal(Half16.CanonicalNaN, Half16.BMul(inf, 0, FloatRounding.Rn));
        Assert.Equal(one, Half16.BMin(0x7FC0, one));
        Assert.Equal((ushort)0x8000, Half16.BMin(0, 0x8000));
        Assert.Equal((ushort)0, Half16.BRelu(0xBF80));
    }

    [Fact]
    public void Tf32_rna_rounds_ties_away_from_zero_to_ten_mantissa_bits()
    {
        // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: away from zero gives 1 + 2^-10.
        float tie = 1f + MathF.ScaleB(1f, -11);
        Assert.Equal(BitConverter.SingleToUInt32Bits(1f + MathF.ScaleB(1f, -10)), Half16.Tf32FromSingle(tie));
        Assert.Equal(0x3F80_0000u, Half16.Tf32FromSingle(MathF.BitDecrement(tie)));
        Assert.Equal(0xBF80_2000u, Half16.Tf32FromSingle(-tie));
        Assert.Equal(0x7F80_0000u, Half16.Tf32FromSingle(float.MaxValue));
        Assert.Equal(0x7FFF_FFFFu, Half16.Tf32FromSingle(float.NaN));
        Assert.Equal(0x0000_2000u, Half16.Tf32FromSingle(BitConverter.UInt32BitsToSingle(0x0000_1000)));
        Assert.Equal(0x3F80_2000u, Half16.Tf32FromSingle(tie, FloatRounding.Rp));
        Assert.Equal(0x3F80_0000u, Half16.Tf32FromSingle(tie, FloatRounding.Rn));
        Assert.Equal(0x3F80_0000u, Half16.Tf32FromSingle(MathF.BitDecrement(1.5f), FloatRounding.Rz) & 0xFF80_0000u);
    }
}
