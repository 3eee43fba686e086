using System.Numerics;
using System.Runtime.CompilerServices;

namespace GpuPool.Ptx.Semantics;

/// <summary>
/// Exact rounding of a value held as a binary significand and exponent into any IEEE-style format
/// (f64, f32, f16, bf16, tf32): the slow path behind every directed rounding and narrowing conversion.
/// A format is named by its stored mantissa bits and exponent bits; results are the format's raw bits.
/// </summary>
internal static class SoftFloat
{
    internal const int F64Mant = 52, F64Exp = 11;
    internal const int F32Mant = 23, F32Exp = 8;
    internal const int F16Mant = 10, F16Exp = 5;
    internal const int BF16Mant = 7, BF16Exp = 8;
    internal const int TF32Mant = 10, TF32Exp = 8;

    /// <summary>
    /// Rounds (-1)^neg × sig × 2^exp, plus an infinitesimal when <paramref name="sticky"/> (a nonzero tail below sig's
    /// last bit), to the format; sig must be nonzero. Handles subnormal results and overflow per the rounding mode.
    /// </summary>
    internal static ulong RoundPack(bool neg, ulong sig, int exp, bool sticky, int mantBits, int expBits, FloatRounding r)
    {
        int lz = BitOperations.LeadingZeroCount(sig);
        sig <<= lz;
        exp -= lz;
        int e = exp + 63;                       // unbiased exponent of the leading bit
        int bias = (1 << (expBits - 1)) - 1;
        int emin = 1 - bias;
        int shift = 63 - mantBits;
        bool subnormal = e < emin;
        if (subnormal)
        {
            shift += emin - e;
        }

        ulong kept;
        bool half, rest;
        if (shift >= 65)
        {
            kept = 0;
            half = false;
            rest = true;
        }
        else if (shift == 64)
        {
            kept = 0;
            half = (sig >> 63) != 0;
            rest = (sig << 1) != 0 || sticky;
        }
        else
        {
            kept = sig >> shift;
            ulong dropped = sig << (64 - shift);
            half = (dropped >> 63) != 0;
            rest = (dropped << 1) != 0 || sticky;
        }

        bool inexact = half || rest;
        bool up = r switch
        {
            FloatRounding.Rn => half && (rest || (kept & 1) != 0),
            FloatRounding.Rm => neg && inexact,
            FloatRounding.Rp => !neg && inexact,
            _ => false,
        };
        if (up)
        {
            kept++;
        }

        ulong signBit = neg ? 1UL << (mantBits + expBits) : 0;
        if (subnormal)
        {
            // A carry out of the subnormal significand lands in the exponent field as the smallest normal: still right.
            return signBit | kept;
        }

        if ((kept >> (mantBits + 1)) != 0)
        {
            kept >>= 1;
            e++;
        }

        if (e > bias)
        {
            return signBit | Overflow(neg, mantBits, expBits, r);
        }

        return signBit | ((ulong)(e + bias) << mantBits) | (kept & ((1UL << mantBits) - 1));
    }

    /// <summary>The magnitude bits an overflowing result takes: infinity, or the largest finite where the mode rounds away from it.</summary>
    private static ulong Overflow(bool neg, int mantBits, int expBits, FloatRounding r)
    {
        ulong inf = ((1UL << expBits) - 1) << mantBits;
        bool toInf = r switch
        {
            FloatRounding.Rn => true,
            FloatRounding.Rm => neg,
            FloatRounding.Rp => !neg,
            _ => false,
        };
        return toInf ? inf : inf - 1;
    }

    /// <summary>
    /// Rounds x = q + δ to the format, where q is a finite nonzero double and δ an error smaller than half an ulp of q whose
    /// sign is <paramref name="residualSign"/>. Only for formats narrower than f64.
    /// </summary>
    internal static ulong RoundDouble(double q, int residualSign, int mantBits, int expBits, FloatRounding r)
    {
        ulong bits = BitConverter.DoubleToUInt64Bits(q);
        bool neg = (bits >> 63) != 0;
        int be = (int)((bits >> 52) & 0x7FF);
        ulong sig = bits & 0xF_FFFF_FFFF_FFFFUL;
        int exp;
        if (be == 0)
        {
            exp = -1074;
        }
        else
        {
            sig |= 1UL << 52;
            exp = be - 1075;
        }

        // Ten spare bits below q's last bit stand for the residual: just above q, or just below it.
        sig <<= 10;
        exp -= 10;
        int towardMagnitude = neg ? -residualSign : residualSign;
        if (towardMagnitude > 0)
        {
            sig |= 1;
        }
        else if (towardMagnitude < 0)
        {
            sig -= 1;
        }

        return RoundPack(neg, sig, exp, false, mantBits, expBits, r);
    }

    /// <summary>Splits a finite nonzero double into sign, integer significand and exponent (value = sig × 2^exp).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Decompose(double d, out bool neg, out ulong sig, out int exp)
    {
        ulong bits = BitConverter.DoubleToUInt64Bits(d);
        neg = (bits >> 63) != 0;
        int be = (int)((bits >> 52) & 0x7FF);
        sig = bits & 0xF_FFFF_FFFF_FFFFUL;
        if (be == 0)
        {
            exp = -1074;
        }
        else
        {
            sig |= 1UL << 52;
            exp = be - 1075;
        }
    }

    /// <summary>Rounds (-1)^neg × v × 2^exp (v nonzero, up to 128 bits) to the format.</summary>
    internal static ulong RoundPack128(bool neg, UInt128 v, int exp, bool sticky, int mantBits, int expBits, FloatRounding r)
    {
        ulong hi = (ulong)(v >> 64);
        if (hi == 0)
        {
            return RoundPack(neg, (ulong)v, exp, sticky, mantBits, expBits, r);
        }

        int k = 64 - BitOperations.LeadingZeroCount(hi);
        bool lost = (v & ((UInt128.One << k) - 1)) != UInt128.Zero;
        return RoundPack(neg, (ulong)(v >> k), exp + k, sticky || lost, mantBits, expBits, r);
    }

    /// <summary>The f64 sum (-1)^na·a·2^ea + (-1)^nb·b·2^eb (a, b nonzero), rounded; null when it is exactly zero.</summary>
    internal static ulong? AddExact(bool na, UInt128 a, int ea, bool nb, UInt128 b, int eb, int mantBits, int expBits, FloatRounding r)
    {
        // Both to a leading bit at 125, so a sum cannot carry out of 128 bits; the smaller is shifted right with a sticky bit.
        int sa = 125 - (127 - (int)UInt128.LeadingZeroCount(a));
        int sb = 125 - (127 - (int)UInt128.LeadingZeroCount(b));
        a <<= sa;
        ea -= sa;
        b <<= sb;
        eb -= sb;
        if (ea < eb || (ea == eb && a < b))
        {
            (a, b) = (b, a);
            (ea, eb) = (eb, ea);
            (na, nb) = (nb, na);
        }

        int d = ea - eb;
        if (d >= 127)
        {
            b = UInt128.One;
        }
        else if (d > 0)
        {
            bool lost = (b & ((UInt128.One << d) - 1)) != UInt128.Zero;
            b = (b >> d) | (lost ? UInt128.One : UInt128.Zero);
        }

        UInt128 s = na == nb ? a + b : a - b;
        if (s == UInt128.Zero)
        {
            return null;
        }

        return RoundPack128(na, s, ea, false, mantBits, expBits, r);
    }
}
