using System.Runtime.CompilerServices;

namespace GpuPool.Ptx.Semantics;

/// <summary>
/// IEEE binary16 (.f16) and bfloat16 (.bf16) as raw ushort bits, packed pairs (.f16x2/.bf16x2) as uint with element 0 in
/// the low half, and tf32 as a 32-bit pattern. Arithmetic is exact in double, then rounded once to 16 bits; NaN results are
/// the canonical 0x7FFF. ftz flushes subnormal inputs and results to a zero of their sign; sat clamps the result to [0, 1]
/// with NaN giving +0.
/// </summary>
public static class Half16
{
    public const ushort CanonicalNaN = 0x7FFF;
    private const ushort F16One = 0x3C00, BF16One = 0x3F80;

    // ---- conversions ----

    /// <summary>The f16's exact value as a float.</summary>
    public static float ToSingle(ushort h)
    {
        uint sign = (uint)(h & 0x8000) << 16;
        int e = (h >> 10) & 0x1F;
        uint m = (uint)h & 0x3FF;
        if (e == 0x1F)
        {
            return BitConverter.UInt32BitsToSingle(sign | 0x7F80_0000 | (m << 13));
        }

        if (e == 0)
        {
            // Subnormal or zero: m × 2^-24, exact in a float.
            float v = m * (1f / 16777216f);
            return BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(v) | sign);
        }

        return BitConverter.UInt32BitsToSingle(sign | ((uint)(e + 112) << 23) | (m << 13));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double ToDouble(ushort h) => ToSingle(h);

    /// <summary>cvt.{rn,rz,rm,rp}.f16.f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FromSingle(float f, FloatRounding r) => FromDouble(f, r);

    /// <summary>cvt.{rn,rz,rm,rp}.f16.f64: rounded once, straight from the double.</summary>
    public static ushort FromDouble(double d, FloatRounding r) => Narrow(d, r, SoftFloat.F16Mant, SoftFloat.F16Exp);

    /// <summary>The bf16's exact value as a float: the top half of a float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float BToSingle(ushort b) => BitConverter.UInt32BitsToSingle((uint)b << 16);

    /// <summary>cvt.{rn,rz,rm,rp}.bf16.f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort BFromSingle(float f, FloatRounding r) => BFromDouble(f, r);

    /// <summary>cvt.{rn,rz,rm,rp}.bf16.f64.</summary>
    public static ushort BFromDouble(double d, FloatRounding r) => Narrow(d, r, SoftFloat.BF16Mant, SoftFloat.BF16Exp);

    private static ushort Narrow(double d, FloatRounding r, int mant, int exp)
    {
        if (double.IsNaN(d))
        {
            return CanonicalNaN;
        }

        ushort sign = double.IsNegative(d) ? (ushort)0x8000 : (ushort)0;
        if (double.IsInfinity(d))
        {
            return (ushort)(sign | (((1 << exp) - 1) << mant));
        }

        if (d == 0)
        {
            return sign;
        }

        SoftFloat.Decompose(d, out bool neg, out ulong sig, out int e);
        return (ushort)SoftFloat.RoundPack(neg, sig, e, false, mant, exp, r);
    }

    /// <summary>cvt.rna.tf32.f32: to 10 mantissa bits, ties away from zero; the result is a float pattern with 13 zero low bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Tf32FromSingle(float f)
    {
        uint bits = BitConverter.SingleToUInt32Bits(f);
        if ((bits & 0x7FFF_FFFF) > 0x7F80_0000)
        {
            return 0x7FFF_FFFF;
        }

        if ((bits & 0x7F80_0000) == 0x7F80_0000)
        {
            return bits;   // infinity
        }

        // Adding half of the dropped place rounds ties away; a carry into the exponent (up to infinity) is the right answer.
        return (bits + 0x1000) & 0xFFFF_E000;
    }

    /// <summary>cvt.{rn,rz}.tf32.f32 (sm_90) and the other IEEE roundings to tf32.</summary>
    public static uint Tf32FromSingle(float f, FloatRounding r)
    {
        if (float.IsNaN(f))
        {
            return 0x7FFF_FFFF;
        }

        if (float.IsInfinity(f) || f == 0)
        {
            return BitConverter.SingleToUInt32Bits(f);
        }

        SoftFloat.Decompose(f, out bool neg, out ulong sig, out int e);
        return (uint)SoftFloat.RoundPack(neg, sig, e, false, SoftFloat.TF32Mant, SoftFloat.TF32Exp, r) << 13;
    }

    // ---- f16 arithmetic ----

    public static ushort Add(ushort a, ushort b, FloatRounding r, bool ftz, bool sat) =>
        Finish(AddCore(In(a, ftz, false), In(b, ftz, false), r, false), ftz, sat, false);

    public static ushort Sub(ushort a, ushort b, FloatRounding r, bool ftz, bool sat) =>
        Finish(AddCore(In(a, ftz, false), -In(b, ftz, false), r, false), ftz, sat, false);

    public static ushort Mul(ushort a, ushort b, FloatRounding r, bool ftz, bool sat) =>
        Finish(MulCore(In(a, ftz, false), In(b, ftz, false), r, false), ftz, sat, false);

    public static ushort Fma(ushort a, ushort b, ushort c, FloatRounding r, bool ftz, bool sat) =>
        Finish(FmaCore(In(a, ftz, false), In(b, ftz, false), In(c, ftz, false), r, false), ftz, sat, false);

    public static uint Add2(uint a, uint b, FloatRounding r, bool ftz, bool sat) =>
        Pack(Add(Lo(a), Lo(b), r, ftz, sat), Add(Hi(a), Hi(b), r, ftz, sat));

    public static uint Sub2(uint a, uint b, FloatRounding r, bool ftz, bool sat) =>
        Pack(Sub(Lo(a), Lo(b), r, ftz, sat), Sub(Hi(a), Hi(b), r, ftz, sat));

    public static uint Mul2(uint a, uint b, FloatRounding r, bool ftz, bool sat) =>
        Pack(Mul(Lo(a), Lo(b), r, ftz, sat), Mul(Hi(a), Hi(b), r, ftz, sat));

    public static uint Fma2(uint a, uint b, uint c, FloatRounding r, bool ftz, bool sat) =>
        Pack(Fma(Lo(a), Lo(b), Lo(c), r, ftz, sat), Fma(Hi(a), Hi(b), Hi(c), r, ftz, sat));

    /// <summary>min.f16 (and min.NaN.f16 with <paramref name="nan"/>), with min.f32's NaN and signed-zero rules.</summary>
    public static ushort Min(ushort a, ushort b, bool ftz = false, bool nan = false) =>
        Pick(In16(a, ftz, false), In16(b, ftz, false), false, nan, false);

    public static ushort Max(ushort a, ushort b, bool ftz = false, bool nan = false) =>
        Pick(In16(a, ftz, false), In16(b, ftz, false), true, nan, false);

    public static uint Min2(uint a, uint b, bool ftz = false, bool nan = false) =>
        Pack(Min(Lo(a), Lo(b), ftz, nan), Min(Hi(a), Hi(b), ftz, nan));

    public static uint Max2(uint a, uint b, bool ftz = false, bool nan = false) =>
        Pack(Max(Lo(a), Lo(b), ftz, nan), Max(Hi(a), Hi(b), ftz, nan));

    /// <summary>neg.f16 / neg.bf16: flips the sign bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Neg(ushort a) => (ushort)(a ^ 0x8000);

    /// <summary>abs.f16 / abs.bf16: clears the sign bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Abs(ushort a) => (ushort)(a & 0x7FFF);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Neg2(uint a) => a ^ 0x8000_8000;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Abs2(uint a) => a & 0x7FFF_7FFF;

    /// <summary>.relu on an f16 result: negative values become +0, NaN the canonical NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Relu(ushort a) => (a & 0x7FFF) > 0x7C00 ? CanonicalNaN : ((a & 0x8000) != 0 ? (ushort)0 : a);

    /// <summary>.relu on a bf16 result.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort BRelu(ushort a) => (a & 0x7FFF) > 0x7F80 ? CanonicalNaN : ((a & 0x8000) != 0 ? (ushort)0 : a);

    public static bool Compare(CompareOp op, ushort a, ushort b) => Fp64.Compare(op, ToSingle(a), ToSingle(b));

    // ---- bf16 arithmetic (sm_80/sm_90: fma.rn.bf16, add/sub/mul.rn.bf16, min/max.bf16) ----

    public static ushort BAdd(ushort a, ushort b, FloatRounding r) => Finish(AddCore(BToSingle(a), BToSingle(b), r, true), false, false, true);

    public static ushort BSub(ushort a, ushort b, FloatRounding r) => Finish(AddCore(BToSingle(a), -BToSingle(b), r, true), false, false, true);

    public static ushort BMul(ushort a, ushort b, FloatRounding r) => Finish(MulCore(BToSingle(a), BToSingle(b), r, true), false, false, true);

    public static ushort BFma(ushort a, ushort b, ushort c, FloatRounding r) =>
        Finish(FmaCore(BToSingle(a), BToSingle(b), BToSingle(c), r, true), false, false, true);

    public static uint BAdd2(uint a, uint b, FloatRounding r) => Pack(BAdd(Lo(a), Lo(b), r), BAdd(Hi(a), Hi(b), r));

    public static uint BSub2(uint a, uint b, FloatRounding r) => Pack(BSub(Lo(a), Lo(b), r), BSub(Hi(a), Hi(b), r));

    public static uint BMul2(uint a, uint b, FloatRounding r) => Pack(BMul(Lo(a), Lo(b), r), BMul(Hi(a), Hi(b), r));

    public static uint BFma2(uint a, uint b, uint c, FloatRounding r) => Pack(BFma(Lo(a), Lo(b), Lo(c), r), BFma(Hi(a), Hi(b), Hi(c), r));

    public static ushort BMin(ushort a, ushort b, bool nan = false) => Pick(a, b, false, nan, true);

    public static ushort BMax(ushort a, ushort b, bool nan = false) => Pick(a, b, true, nan, true);

    public static uint BMin2(uint a, uint b, bool nan = false) => Pack(BMin(Lo(a), Lo(b), nan), BMin(Hi(a), Hi(b), nan));

    public static uint BMax2(uint a, uint b, bool nan = false) => Pack(BMax(Lo(a), Lo(b), nan), BMax(Hi(a), Hi(b), nan));

    public static bool BCompare(CompareOp op, ushort a, ushort b) => Fp64.Compare(op, BToSingle(a), BToSingle(b));

    // ---- shared ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Lo(uint x) => (ushort)x;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Hi(uint x) => (ushort)(x >> 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Pack(ushort lo, ushort hi) => lo | ((uint)hi << 16);

    private static bool IsSubnormal16(ushort h, bool bf) => bf ? (h & 0x7F80) == 0 && (h & 0x7F) != 0 : (h & 0x7C00) == 0 && (h & 0x3FF) != 0;

    private static ushort In16(ushort h, bool ftz, bool bf) => ftz && IsSubnormal16(h, bf) ? (ushort)(h & 0x8000) : h;

    private static float In(ushort h, bool ftz, bool bf)
    {
        h = In16(h, ftz, bf);
        return bf ? BToSingle(h) : ToSingle(h);
    }

    private static ushort AddCore(double x, double y, FloatRounding r, bool bf)
    {
        double s = x + y;
        if (!double.IsFinite(s))
        {
            return Special(s, bf);
        }

        double e = Fp32.TwoSumError(x, y, s);
        if (s == 0 && e == 0)
        {
            // IEEE: zeros of one sign keep it; any other exact zero is +0, or -0 when rounding down.
            if (x == 0 && y == 0 && double.IsNegative(x) == double.IsNegative(y))
            {
                return double.IsNegative(x) ? (ushort)0x8000 : (ushort)0;
            }

            return r == FloatRounding.Rm ? (ushort)0x8000 : (ushort)0;
        }

        return Round(s, Math.Sign(e), r, bf);
    }

    private static ushort MulCore(double x, double y, FloatRounding r, bool bf)
    {
        double p = x * y;   // exact: at most 22 significant bits
        if (!double.IsFinite(p))
        {
            return Special(p, bf);
        }

        return p == 0 ? (double.IsNegative(p) ? (ushort)0x8000 : (ushort)0) : Round(p, 0, r, bf);
    }

    private static ushort FmaCore(double x, double y, double z, FloatRounding r, bool bf)
    {
        double p = x * y;
        if (!double.IsFinite(p) || !double.IsFinite(z))
        {
            return Special(p + z, bf);
        }

        return AddCore(p, z, r, bf);
    }

    private static ushort Special(double v, bool bf)
    {
        if (double.IsNaN(v))
        {
            return CanonicalNaN;
        }

        ushort inf = bf ? (ushort)0x7F80 : (ushort)0x7C00;
        return double.IsNegative(v) ? (ushort)(inf | 0x8000) : inf;
    }

    private static ushort Round(double q, int residualSign, FloatRounding r, bool bf) => bf
        ? (ushort)SoftFloat.RoundDouble(q, residualSign, SoftFloat.BF16Mant, SoftFloat.BF16Exp, r)
        : (ushort)SoftFloat.RoundDouble(q, residualSign, SoftFloat.F16Mant, SoftFloat.F16Exp, r);

    private static ushort Finish(ushort h, bool ftz, bool sat, bool bf)
    {
        h = In16(h, ftz, bf);
        if (!sat)
        {
            return h;
        }

        ushort one = bf ? BF16One : F16One;
        bool nan = bf ? (h & 0x7FFF) > 0x7F80 : (h & 0x7FFF) > 0x7C00;
        if (nan || (h & 0x8000) != 0)
        {
            return 0;
        }

        return h > one ? one : h;
    }

    private static ushort Pick(ushort a, ushort b, bool max, bool nanPropagates, bool bf)
    {
        float x = bf ? BToSingle(a) : ToSingle(a);
        float y = bf ? BToSingle(b) : ToSingle(b);
        if (float.IsNaN(x) || float.IsNaN(y))
        {
            if (nanPropagates || (float.IsNaN(x) && float.IsNaN(y)))
            {
                return CanonicalNaN;
            }

            return float.IsNaN(x) ? b : a;
        }

        bool takeA = max
            ? x > y || (x == y && !float.IsNegative(x))
            : x < y || (x == y && float.IsNegative(x));
        return takeA ? a : b;
    }
}
