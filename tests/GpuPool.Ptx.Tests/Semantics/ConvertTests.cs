using System.Numerics;
using CsCheck;
using GpuPool.Ptx.Semantics;
using static GpuPool.Ptx.Tests.Semantics.FloatGens;
using Cvt = GpuPool.Ptx.Semantics.Convert;

namespace GpuPool.Ptx.Tests.Semantics;

/// <summary>cvt: integer/float conversions against exact references, and the generic form's register conventions.</summary>
public class ConvertTests
{
    private static readonly Gen<FloatRounding> Modes = Gen.Enum<FloatRounding>();
    private static readonly Gen<IntRounding> IntModes = Gen.Enum<IntRounding>();

    private static readonly Gen<long> Longs = Gen.OneOf(Gen.Long, Gen.Long[-(1L << 26), 1L << 26], Gen.Int.Select(i => (long)i << Math.Abs(i % 40)));

    private static float RefF32(BigInteger v, FloatRounding r) => v.IsZero ? 0f : ExactRound.F32(Rational.Of(v), r);

    private static double RefF64(BigInteger v, FloatRounding r) => v.IsZero ? 0.0 : ExactRound.F64(Rational.Of(v), r);

    [Fact]
    public void Integer_to_float_rounds_exactly_in_every_mode() =>
        Gen.Select(Longs, Modes).Sample((v, r) =>
        {
            Assert.Equal(Bits(RefF32(v, r)), Bits(Cvt.S64ToF32(v, r)));
            Assert.Equal(Bits(RefF32((ulong)v, r)), Bits(Cvt.U64ToF32((ulong)v, r)));
            Assert.Equal(Bits(RefF64(v, r)), Bits(Cvt.S64ToF64(v, r)));
            Assert.Equal(Bits(RefF64((ulong)v, r)), Bits(Cvt.U64ToF64((ulong)v, r)));
            Assert.Equal(Bits(RefF32((int)v, r)), Bits(Cvt.S32ToF32((int)v, r)));
            Assert.Equal(Bits(RefF32((uint)v, r)), Bits(Cvt.U32ToF32((uint)v, r)));
        }, iter: 30_000);

    [Fact]
    public void Integer_to_float_at_the_edges()
    {
        Assert.Equal(16777216f, Cvt.S32ToF32(16777217, FloatRounding.Rz));
        Assert.Equal(16777218f, Cvt.S32ToF32(16777217, FloatRounding.Rp));
        Assert.Equal(16777216f, Cvt.S32ToF32(16777217, FloatRounding.Rn));
        Assert.Equal(-16777218f, Cvt.S32ToF32(-16777217, FloatRounding.Rm));
        Assert.Equal(18446744073709551616f, Cvt.U64ToF32(ulong.MaxValue, FloatRounding.Rn));
        Assert.Equal(MathF.BitDecrement(18446744073709551616f), Cvt.U64ToF32(ulong.MaxValue, FloatRounding.Rz));
        Assert.Equal(-9223372036854775808.0, Cvt.S64ToF64(long.MinValue, FloatRounding.Rz));
        Assert.Equal(Math.BitDecrement(9223372036854775808.0), Cvt.S64ToF64(long.MaxValue, FloatRounding.Rz));
        Assert.Equal(0UL, Bits(Cvt.S64ToF64(0, FloatRounding.Rm)));
    }

    private static BigInteger RoundRef(Rational x, IntRounding r)
    {
        BigInteger q = BigInteger.DivRem(x.Num, x.Den, out BigInteger rem);   // truncates toward zero
        if (rem.IsZero)
        {
            return q;
        }

        BigInteger floor = x.Sign < 0 ? q - 1 : q;
        BigInteger ceil = floor + 1;
        return r switch
        {
            IntRounding.Rzi => q,
            IntRounding.Rmi => floor,
            IntRounding.Rpi => ceil,
            _ => (Rational.Of(floor) + Rational.Of(ceil)).CompareTo(x + x) switch
            {
                < 0 => ceil,
                > 0 => floor,
                _ => floor.IsEven ? floor : ceil,
            },
        };
    }

    private static BigInteger Clamp(BigInteger v, BigInteger lo, BigInteger hi) => v < lo ? lo : (v > hi ? hi : v);

    [Fact]
    public void Float_to_integer_rounds_then_clamps_and_NaN_is_zero() =>
        Gen.Select(Gen.OneOf(F64, F32.Select(f => (double)f), Gen.Double[-1e20, 1e20], Gen.Int.Select(i => i / 4.0)), IntModes).Sample((d, r) =>
        {
            BigInteger v = RoundRef(Rational.Of(d), r);
            Assert.Equal((long)Clamp(v, long.MinValue, long.MaxValue), Cvt.F64ToS64(d, r));
            Assert.Equal((ulong)Clamp(v, 0, ulong.MaxValue), Cvt.F64ToU64(d, r));
            Assert.Equal((int)Clamp(v, int.MinValue, int.MaxValue), Cvt.F64ToS32(d, r));
            Assert.Equal((uint)Clamp(v, 0, uint.MaxValue), Cvt.F64ToU32(d, r));
            float f = (float)d;
            if (float.IsFinite(f))
            {
                BigInteger w = RoundRef(Rational.Of(f), r);
                Assert.Equal((int)Clamp(w, int.MinValue, int.MaxValue), Cvt.F32ToS32(f, r));
                Assert.Equal((ulong)Clamp(w, 0, ulong.MaxValue), Cvt.F32ToU64(f, r));
            }
        }, iter: 30_000);

    [Fact]
    public void Float_to_integer_special_values()
    {
        Assert.Equal(0, Cvt.F32ToS32(float.NaN, IntRounding.Rni));
        Assert.Equal(0UL, Cvt.F64ToU64(double.NaN, IntRounding.Rzi));
        Assert.Equal(int.MaxValue, Cvt.F32ToS32(float.PositiveInfinity, IntRounding.Rzi));
        Assert.Equal(int.MinValue, Cvt.F32ToS32(float.NegativeInfinity, IntRounding.Rzi));
        Assert.Equal(0u, Cvt.F32ToU32(-5f, IntRounding.Rzi));
        Assert.Equal(long.MaxValue, Cvt.F32ToS64(9.3e18f, IntRounding.Rni));
        Assert.Equal(2, Cvt.F32ToS32(2.5f, IntRounding.Rni));
        Assert.Equal(-2, Cvt.F32ToS32(-2.5f, IntRounding.Rni));
        Assert.Equal(-3, Cvt.F32ToS32(-2.5f, IntRounding.Rmi));
        Assert.Equal(3, Cvt.F32ToS32(2.1f, IntRounding.Rpi));
        Assert.Equal(0u, Cvt.F32ToU32(-0.5f, IntRounding.Rpi));
    }

    [Fact]
    public void RoundToInt_keeps_the_sign_of_zero_and_rounds_ties_to_even()
    {
        Assert.Equal(2f, Cvt.RoundToInt(2.5f, IntRounding.Rni));
        Assert.Equal(4f, Cvt.RoundToInt(3.5f, IntRounding.Rni));
        Assert.Equal(0x8000_0000u, Bits(Cvt.RoundToInt(-0.4f, IntRounding.Rni)));
        Assert.Equal(0x8000_0000u, Bits(Cvt.RoundToInt(-0.5f, IntRounding.Rpi)));
        Assert.Equal(-1f, Cvt.RoundToInt(-0.5f, IntRounding.Rmi));
        Assert.Equal(1e30f, Cvt.RoundToInt(1e30f, IntRounding.Rzi));
        Assert.Equal(0x7FFF_FFFFu, Bits(Cvt.RoundToInt(float.NaN, IntRounding.Rni)));
        Assert.Equal(double.NegativeInfinity, Cvt.RoundToInt(double.NegativeInfinity, IntRounding.Rpi));
        Assert.Equal(-2.0, Cvt.RoundToInt(-1.5, IntRounding.Rni));
    }

    [Fact]
    public void F64ToF32_rounds_exactly_in_every_mode() =>
        Gen.Select(F64, Modes).Sample((d, r) =>
        {
            float expected = d == 0 ? (float)d : ExactRound.F32(Rational.Of(d), r);
            Assert.Equal(Bits(expected), Bits(Cvt.F64ToF32(d, r, false, false)));
        }, iter: 30_000);

    [Fact]
    public void F64ToF32_ftz_and_sat()
    {
        // Ties to even: 1 + 2^-24 is halfway between 1 and 1 + 2^-23.
        Assert.Equal(1f, Cvt.F64ToF32(1 + Math.ScaleB(1, -24), FloatRounding.Rn, false, false));
        Assert.Equal(1f + MathF.ScaleB(1, -22), Cvt.F64ToF32(1 + (3 * Math.ScaleB(1, -24)), FloatRounding.Rn, false, false));
        Assert.Equal(0x8000_0000u, Bits(Cvt.F64ToF32(-1e-40, FloatRounding.Rn, true, false)));
        Assert.Equal(1e-40f, Cvt.F64ToF32(1e-40, FloatRounding.Rn, false, false));
        Assert.Equal(1f, Cvt.F64ToF32(7.0, FloatRounding.Rn, false, true));
        Assert.Equal(0u, Bits(Cvt.F64ToF32(double.NaN, FloatRounding.Rn, false, true)));
        Assert.Equal(0x7FFF_FFFFu, Bits(Cvt.F64ToF32(double.NaN, FloatRounding.Rn, false, false)));
        Assert.Equal(float.MaxValue, Cvt.F64ToF32(1e300, FloatRounding.Rz, false, false));
        Assert.Equal(float.PositiveInfinity, Cvt.F64ToF32(double.PositiveInfinity, FloatRounding.Rz, false, false));
        Assert.Equal(0.0, Cvt.F32ToF64(1e-40f, true, false));
        Assert.Equal(0.5, Cvt.F32ToF64(0.5f, false, true));
    }

    private static ulong C(ulong bits, ScalarType from, ScalarType to, bool sat = false, FloatRounding? fr = null, IntRounding? ir = null, bool ftz = false) =>
        Cvt.Cvt(bits, from, to, fr, ir, sat, ftz);

    [Fact]
    public void Generic_integer_conversions_extend_by_the_source_and_return_the_destination_extended_to_64_bits()
    {
        Assert.Equal(0xFFFF_FFFF_FFFF_FF80UL, C(0x80, ScalarType.S8, ScalarType.S32));     // sign-extended result
        Assert.Equal(0xFFFF_FF80UL, C(0x80, ScalarType.S8, ScalarType.U32));                 // s8 → u32 sign-extends the source
        Assert.Equal(0x80UL, C(0x80, ScalarType.U8, ScalarType.S32));
        Assert.Equal(0x34UL, C(0x1234, ScalarType.U32, ScalarType.U8));                      // truncation
        Assert.Equal(0xFFFF_FFFF_FFFF_FFFFUL, C(0x12FF, ScalarType.U32, ScalarType.S8));     // truncated, then signed
        Assert.Equal(0x7FUL, C(0x1234, ScalarType.U32, ScalarType.S8, sat: true));
        Assert.Equal(0xFFFF_FFFF_FFFF_FF80UL, C(unchecked((ulong)-1000L), ScalarType.S32, ScalarType.S8, sat: true));
        Assert.Equal(0UL, C(unchecked((ulong)-5L), ScalarType.S64, ScalarType.U16, sat: true));
        Assert.Equal(0x7FFF_FFFFUL, C(0xFFFF_FFFF, ScalarType.U32, ScalarType.S32, sat: true));
        Assert.Equal(0xFFFF_FFFFUL, C(0xFFFF_FFFF, ScalarType.S64, ScalarType.U32, sat: true));
        Assert.Equal(0xFFFF_FFFF_FFFF_FFFFUL, C(0xFFFF_FFFF, ScalarType.S32, ScalarType.S64));
        Assert.Equal(0xFFFF_FFFFUL, C(0xFFFF_FFFF, ScalarType.U32, ScalarType.S64));
    }

    [Fact]
    public void Generic_float_conversions()
    {
        Assert.Equal(0x3C00UL, C(Bits(1f), ScalarType.F32, ScalarType.F16, fr: FloatRounding.Rn));
        Assert.Equal(Bits(1f), C(0x3C00, ScalarType.F16, ScalarType.F32));
        Assert.Equal(Bits(1.0), C(0x3F80, ScalarType.BF16, ScalarType.F64));
        Assert.Equal(0x7BFFUL, C(Bits(1e6f), ScalarType.F32, ScalarType.F16, fr: FloatRounding.Rz));
        Assert.Equal(0x7C00UL, C(Bits(1e6f), ScalarType.F32, ScalarType.F16, fr: FloatRounding.Rn));
        Assert.Equal(0x3C00UL, C(Bits(1e6f), ScalarType.F32, ScalarType.F16, fr: FloatRounding.Rn, sat: true));
        Assert.Equal(0x7FUL, C(Bits(300f), ScalarType.F32, ScalarType.S8, ir: IntRounding.Rzi));
        Assert.Equal(0xFFFF_FFFF_FFFF_FF80UL, C(Bits(-300f), ScalarType.F32, ScalarType.S8, ir: IntRounding.Rzi));
        Assert.Equal(0xFFFFUL, C(0x7C00, ScalarType.F16, ScalarType.U16, ir: IntRounding.Rni));
        Assert.Equal(0UL, C(0x7E00, ScalarType.F16, ScalarType.S32, ir: IntRounding.Rni));
        Assert.Equal(Bits(3f), C(Bits(2.5f), ScalarType.F32, ScalarType.F32, ir: IntRounding.Rpi));
        Assert.Equal(0UL, C(Bits(1e-40f), ScalarType.F32, ScalarType.F32, ftz: true));
        Assert.Equal(Bits(16777216f), C(16777217, ScalarType.S32, ScalarType.F32, fr: FloatRounding.Rz));
        Assert.Equal(0x7C00UL, C(70000, ScalarType.U32, ScalarType.F16, fr: FloatRounding.Rn));
        Assert.Equal(0x7BFFUL, C(70000, ScalarType.U32, ScalarType.F16, fr: FloatRounding.Rz));
        Assert.Equal(0xBC00UL, C(unchecked((ulong)-1L), ScalarType.S64, ScalarType.F16));
        Assert.Equal(Bits(1.0), C(5, ScalarType.S32, ScalarType.F64, sat: true));
        Assert.Throws<ArgumentException>(() => C(Bits(1f), ScalarType.F32, ScalarType.S32));
    }

    [Fact]
    public void Sat_takes_a_NaN_to_plus_zero_for_every_float_destination()
    {
        Assert.Equal(0UL, Bits(Cvt.F32ToF64(float.NaN, false, true)));
        Assert.Equal(0UL, Bits(Cvt.F32ToF64(BitConverter.UInt32BitsToSingle(0xFFC0_0001), true, true)));
        Assert.Equal(0x7FFF_FFFF_FFFF_FFFFUL, Bits(Cvt.F32ToF64(float.NaN, false, false)));
        Assert.Equal(0UL, C(0x7E00, ScalarType.F16, ScalarType.F64, sat: true));
        Assert.Equal(0UL, C(0x7FC1, ScalarType.BF16, ScalarType.F64, sat: true));
        Assert.Equal(0UL, C(Bits(double.NaN), ScalarType.F64, ScalarType.F64, ir: IntRounding.Rni, sat: true));
        Assert.Equal(0UL, C(0x7E00, ScalarType.F16, ScalarType.F32, sat: true));
        Assert.Equal(0UL, C(Bits(float.NaN), ScalarType.F32, ScalarType.F16, fr: FloatRounding.Rn, sat: true));
        Assert.Equal(0UL, C(Bits(double.NaN), ScalarType.F64, ScalarType.BF16, fr: FloatRounding.Rn, sat: true));
        Assert.Equal(0x7FFF_FFFF_FFFF_FFFFUL, C(0x7E00, ScalarType.F16, ScalarType.F64));
    }
}
