using System.Runtime.CompilerServices;

namespace GpuPool.Ptx.Semantics;

/// <summary>
/// cvt. Float-to-integer conversions always clamp to the destination's range and turn NaN into 0 (the ISA makes .sat
/// redundant there); integer-to-float and float narrowing round as asked. f32 NaN results are the canonical 0x7FFFFFFF,
/// f16/bf16 ones 0x7FFF, f64 ones 0x7FFFFFFFFFFFFFFF.
/// </summary>
public static class Convert
{
    // ---- float -> integer ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int F32ToS32(float f, IntRounding r) => F64ToS32(f, r);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint F32ToU32(float f, IntRounding r) => F64ToU32(f, r);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long F32ToS64(float f, IntRounding r) => F64ToS64(f, r);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong F32ToU64(float f, IntRounding r) => F64ToU64(f, r);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int F64ToS32(double f, IntRounding r)
    {
        double v = RoundToInt(f, r);
        return double.IsNaN(v) ? 0 : (int)Math.Clamp(v, int.MinValue, int.MaxValue);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint F64ToU32(double f, IntRounding r)
    {
        double v = RoundToInt(f, r);
        return double.IsNaN(v) ? 0 : (uint)Math.Clamp(v, 0.0, uint.MaxValue);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long F64ToS64(double f, IntRounding r)
    {
        double v = RoundToInt(f, r);
        if (double.IsNaN(v))
        {
            return 0;
        }

        // 2^63 is exact in a double; long.MaxValue is not.
        return v >= 9223372036854775808.0 ? long.MaxValue : (v <= long.MinValue ? long.MinValue : (long)v);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong F64ToU64(double f, IntRounding r)
    {
        double v = RoundToInt(f, r);
        if (double.IsNaN(v) || v <= 0)
        {
            return 0;
        }

        return v >= 18446744073709551616.0 ? ulong.MaxValue : (ulong)v;
    }

    // ---- integer -> float ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float S32ToF32(int v, FloatRounding r) => r == FloatRounding.Rn ? v : S64ToF32(v, r);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float U32ToF32(uint v, FloatRounding r) => r == FloatRounding.Rn ? v : U64ToF32(v, r);

    public static float S64ToF32(long v, FloatRounding r) =>
        BitConverter.UInt32BitsToSingle((uint)IntToFloat(v < 0, v < 0 ? unchecked((ulong)-v) : (ulong)v, SoftFloat.F32Mant, SoftFloat.F32Exp, r));

    public static float U64ToF32(ulong v, FloatRounding r) =>
        BitConverter.UInt32BitsToSingle((uint)IntToFloat(false, v, SoftFloat.F32Mant, SoftFloat.F32Exp, r));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double S32ToF64(int v) => v;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double U32ToF64(uint v) => v;

    public static double S64ToF64(long v, FloatRounding r) =>
        BitConverter.UInt64BitsToDouble(IntToFloat(v < 0, v < 0 ? unchecked((ulong)-v) : (ulong)v, SoftFloat.F64Mant, SoftFloat.F64Exp, r));

    public static double U64ToF64(ulong v, FloatRounding r) =>
        BitConverter.UInt64BitsToDouble(IntToFloat(false, v, SoftFloat.F64Mant, SoftFloat.F64Exp, r));

    /// <summary>An integer magnitude rounded into a format's bits; zero is +0.</summary>
    private static ulong IntToFloat(bool neg, ulong mag, int mant, int exp, FloatRounding r) =>
        mag == 0 ? 0 : SoftFloat.RoundPack(neg, mag, 0, false, mant, exp, r);

    // ---- float -> float ----

    /// <summary>cvt.{rn,rz,rm,rp}{.ftz}{.sat}.f32.f64.</summary>
    public static float F64ToF32(double d, FloatRounding r, bool ftz, bool sat)
    {
        float f;
        if (double.IsNaN(d))
        {
            f = Fp32.CanonicalNaN;
        }
        else if (double.IsInfinity(d) || d == 0)
        {
            f = (float)d;
        }
        else
        {
            SoftFloat.Decompose(d, out bool neg, out ulong sig, out int e);
            f = BitConverter.UInt32BitsToSingle((uint)SoftFloat.RoundPack(neg, sig, e, false, SoftFloat.F32Mant, SoftFloat.F32Exp, r));
        }

        if (ftz)
        {
            f = Fp32.Ftz(f);
        }

        return sat ? Fp32.Saturate(f) : f;
    }

    /// <summary>cvt{.ftz}{.sat}.f64.f32: exact; .ftz flushes a subnormal input; .sat makes a NaN +0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double F32ToF64(float f, bool ftz, bool sat)
    {
        double d = ftz ? Fp32.Ftz(f) : f;
        return sat ? Fp64.Saturate(d) : double.IsNaN(d) ? Fp64.CanonicalNaN : d;
    }

    /// <summary>cvt.{rni,rzi,rmi,rpi}.f32.f32: round to an integral float; NaN stays (canonical) NaN, -0 and signs are kept.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RoundToInt(float f, IntRounding r) => float.IsNaN(f) ? Fp32.CanonicalNaN : (float)RoundToInt((double)f, r);

    /// <summary>cvt.{rni,rzi,rmi,rpi}.f64.f64.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double RoundToInt(double d, IntRounding r) => r switch
    {
        IntRounding.Rni => Math.Round(d, MidpointRounding.ToEven),
        IntRounding.Rzi => Math.Truncate(d),
        IntRounding.Rmi => Math.Floor(d),
        _ => Math.Ceiling(d),
    };

    // ---- the general form ----

    /// <summary>
    /// cvt.{rnd}{.ftz}{.sat}.to.from on raw register bits. <paramref name="bits"/> holds the source as its register holds it
    /// (only the low bits of the source's size are read). The result is the destination value, sign-extended to 64 bits for
    /// a signed integer destination and zero-extended otherwise (float bits, unsigned integers); a caller writing a narrower
    /// register keeps the low bits. <paramref name="fr"/> applies to integer-to-float and float narrowing (default .rn),
    /// <paramref name="ir"/> to float-to-integer (required) and float-to-same-float rounding; .ftz acts on f32 operands.
    /// </summary>
    public static ulong Cvt(ulong bits, ScalarType from, ScalarType to, FloatRounding? fr, IntRounding? ir, bool sat, bool ftz)
    {
        if (IsFloat(from))
        {
            double v = ReadFloat(bits, from, ftz);
            if (!IsFloat(to))
            {
                if (ir is not IntRounding irr)
                {
                    throw new ArgumentException("cvt from a float to an integer needs .rni, .rzi, .rmi or .rpi", nameof(ir));
                }

                return FloatToInt(v, irr, to);
            }

            if (ir is IntRounding same)
            {
                v = double.IsNaN(v) ? v : RoundToInt(v, same);
            }

            return WriteFloat(v, to, fr ?? FloatRounding.Rn, sat, ftz);
        }

        (bool neg, ulong mag, long signedValue, ulong unsignedValue) = ReadInt(bits, from);
        if (IsFloat(to))
        {
            FloatRounding r = fr ?? FloatRounding.Rn;
            ulong fb = to switch
            {
                ScalarType.F64 => IntToFloat(neg, mag, SoftFloat.F64Mant, SoftFloat.F64Exp, r),
                ScalarType.F32 => IntToFloat(neg, mag, SoftFloat.F32Mant, SoftFloat.F32Exp, r),
                ScalarType.F16 => IntToFloat(neg, mag, SoftFloat.F16Mant, SoftFloat.F16Exp, r),
                ScalarType.BF16 => IntToFloat(neg, mag, SoftFloat.BF16Mant, SoftFloat.BF16Exp, r),
                _ => throw Unsupported(to),
            };
            return sat ? SaturateBits(fb, to) : fb;
        }

        int width = Width(to);
        bool dstSigned = IsSigned(to);
        if (sat)
        {
            bool srcSigned = IsSigned(from);
            if (dstSigned)
            {
                long min = width == 64 ? long.MinValue : -(1L << (width - 1));
                long max = width == 64 ? long.MaxValue : (1L << (width - 1)) - 1;
                if (srcSigned)
                {
                    signedValue = Math.Clamp(signedValue, min, max);
                }
                else
                {
                    signedValue = unsignedValue > (ulong)max ? max : (long)unsignedValue;
                }

                return Extend((ulong)signedValue, width, true);
            }

            ulong umax = width == 64 ? ulong.MaxValue : (1UL << width) - 1;
            ulong u = srcSigned ? (signedValue < 0 ? 0 : Math.Min((ulong)signedValue, umax)) : Math.Min(unsignedValue, umax);
            return u;
        }

        return Extend(unsignedValue, width, dstSigned);
    }

    private static ulong FloatToInt(double v, IntRounding r, ScalarType to)
    {
        int width = Width(to);
        if (IsSigned(to))
        {
            long s = F64ToS64(v, r);
            long min = width == 64 ? long.MinValue : -(1L << (width - 1));
            long max = width == 64 ? long.MaxValue : (1L << (width - 1)) - 1;
            return Extend((ulong)Math.Clamp(s, min, max), width, true);
        }

        ulong u = F64ToU64(v, r);
        ulong umax = width == 64 ? ulong.MaxValue : (1UL << width) - 1;
        return Math.Min(u, umax);
    }

    private static double ReadFloat(ulong bits, ScalarType t, bool ftz) => t switch
    {
        ScalarType.F64 => BitConverter.UInt64BitsToDouble(bits),
        ScalarType.F32 or ScalarType.TF32 => ftz ? Fp32.Ftz(BitConverter.UInt32BitsToSingle((uint)bits)) : BitConverter.UInt32BitsToSingle((uint)bits),
        ScalarType.F16 => Half16.ToDouble((ushort)bits),
        ScalarType.BF16 => Half16.BToSingle((ushort)bits),
        _ => throw Unsupported(t),
    };

    private static ulong WriteFloat(double v, ScalarType to, FloatRounding r, bool sat, bool ftz)
    {
        switch (to)
        {
            case ScalarType.F64:
                // .sat before the NaN check: a NaN saturates to +0, as every .sat float destination has it.
                return BitConverter.DoubleToUInt64Bits(sat ? Fp64.Saturate(v) : double.IsNaN(v) ? Fp64.CanonicalNaN : v);
            case ScalarType.F32:
                return BitConverter.SingleToUInt32Bits(F64ToF32(v, r, ftz, sat));
            case ScalarType.F16:
                return SaturateBits(Half16.FromDouble(v, r), to, sat);
            case ScalarType.BF16:
                return SaturateBits(Half16.BFromDouble(v, r), to, sat);
            default:
                throw Unsupported(to);
        }
    }

    private static ulong SaturateBits(ulong fb, ScalarType t, bool sat = true)
    {
        if (!sat)
        {
            return fb;
        }

        return t switch
        {
            ScalarType.F64 => BitConverter.DoubleToUInt64Bits(Fp64.Saturate(BitConverter.UInt64BitsToDouble(fb))),
            ScalarType.F32 => BitConverter.SingleToUInt32Bits(Fp32.Saturate(BitConverter.UInt32BitsToSingle((uint)fb))),
            ScalarType.F16 => Sat16(fb, Half16.ToSingle((ushort)fb), 0x3C00),
            ScalarType.BF16 => Sat16(fb, Half16.BToSingle((ushort)fb), 0x3F80),
            _ => throw Unsupported(t),
        };
    }

    private static ulong Sat16(ulong fb, float v, ulong one) => v > 0 ? (v < 1 ? fb : one) : 0;

    private static (bool Neg, ulong Mag, long Signed, ulong Unsigned) ReadInt(ulong bits, ScalarType t)
    {
        int width = Width(t);
        ulong u = width == 64 ? bits : bits & ((1UL << width) - 1);
        if (IsSigned(t))
        {
            long s = width == 64 ? (long)bits : ((long)(bits << (64 - width))) >> (64 - width);
            return (s < 0, s < 0 ? unchecked((ulong)-s) : (ulong)s, s, unchecked((ulong)s));
        }

        return (false, u, unchecked((long)u), u);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Extend(ulong v, int width, bool signed)
    {
        if (width == 64)
        {
            return v;
        }

        return signed ? (ulong)(((long)(v << (64 - width))) >> (64 - width)) : v & ((1UL << width) - 1);
    }

    private static bool IsFloat(ScalarType t) => t is ScalarType.F16 or ScalarType.BF16 or ScalarType.TF32 or ScalarType.F32 or ScalarType.F64;

    private static bool IsSigned(ScalarType t) => t is ScalarType.S8 or ScalarType.S16 or ScalarType.S32 or ScalarType.S64;

    private static int Width(ScalarType t) => t switch
    {
        ScalarType.B8 or ScalarType.U8 or ScalarType.S8 => 8,
        ScalarType.B16 or ScalarType.U16 or ScalarType.S16 => 16,
        ScalarType.B32 or ScalarType.U32 or ScalarType.S32 => 32,
        ScalarType.B64 or ScalarType.U64 or ScalarType.S64 => 64,
        _ => throw Unsupported(t),
    };

    private static ArgumentException Unsupported(ScalarType t) => new($"cvt does not convert .{t.ToString().ToLowerInvariant()}");
}
