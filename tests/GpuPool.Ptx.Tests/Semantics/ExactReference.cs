using System.Numerics;
using GpuPool.Ptx.Semantics;

namespace GpuPool.Ptx.Tests.Semantics;

/// <summary>An exact rational number: the reference the rounding tests hold the semantics to.</summary>
internal readonly record struct Rational(BigInteger Num, BigInteger Den)
{
    public static Rational Of(double d)
    {
        if (!double.IsFinite(d))
        {
            throw new ArgumentException("only finite values are rational", nameof(d));
        }

        long bits = BitConverter.DoubleToInt64Bits(d);
        bool neg = bits < 0;
        int be = (int)((bits >> 52) & 0x7FF);
        long m = bits & 0xF_FFFF_FFFF_FFFFL;
        int e = be == 0 ? -1074 : be - 1075;
        if (be != 0)
        {
            m |= 1L << 52;
        }

        BigInteger n = neg ? -m : m;
        return e >= 0 ? new Rational(n << e, BigInteger.One) : Make(n, BigInteger.One << -e);
    }

    public static Rational Of(BigInteger n) => new(n, BigInteger.One);

    private static Rational Make(BigInteger n, BigInteger d)
    {
        if (d.Sign < 0)
        {
            n = -n;
            d = -d;
        }

        BigInteger g = BigInteger.GreatestCommonDivisor(n, d);
        return g.IsOne || g.IsZero ? new Rational(n, d) : new Rational(n / g, d / g);
    }

    public static Rational operator +(Rational a, Rational b) => Make((a.Num * b.Den) + (b.Num * a.Den), a.Den * b.Den);

    public static Rational operator -(Rational a, Rational b) => Make((a.Num * b.Den) - (b.Num * a.Den), a.Den * b.Den);

    public static Rational operator *(Rational a, Rational b) => Make(a.Num * b.Num, a.Den * b.Den);

    public static Rational operator /(Rational a, Rational b) => Make(a.Num * b.Den, a.Den * b.Num);

    public int Sign => Num.Sign;

    public int CompareTo(Rational o) => ((Num * o.Den) - (o.Num * Den)).Sign;
}

/// <summary>Correct rounding of an exact rational into a binary format, written from the definition.</summary>
internal static class ExactRound
{
    /// <summary>The format's bits for x rounded by r (x nonzero), with mantBits stored mantissa bits and expBits exponent bits.</summary>
    public static ulong Round(Rational x, int mantBits, int expBits, FloatRounding r)
    {
        bool neg = x.Sign < 0;
        BigInteger n = BigInteger.Abs(x.Num), d = x.Den;
        int bias = (1 << (expBits - 1)) - 1;
        int emin = 1 - bias;

        // e = floor(log2(n/d)).
        int e = (int)(n.GetBitLength() - d.GetBitLength());
        if (Pow2Compare(n, d, e) < 0)
        {
            e--;
        }

        int quantumExp = Math.Max(e, emin) - mantBits;
        // k = floor(|x| / 2^quantumExp), rem = the fraction left.
        BigInteger num = quantumExp >= 0 ? n : n << -quantumExp;
        BigInteger den = quantumExp >= 0 ? d << quantumExp : d;
        BigInteger k = BigInteger.DivRem(num, den, out BigInteger rem);
        int half = (rem * 2).CompareTo(den);
        bool inexact = !rem.IsZero;
        bool up = r switch
        {
            FloatRounding.Rn => half > 0 || (half == 0 && !k.IsEven),
            FloatRounding.Rz => false,
            FloatRounding.Rm => neg && inexact,
            _ => !neg && inexact,
        };
        if (up)
        {
            k += 1;
        }

        ulong sign = neg ? 1UL << (mantBits + expBits) : 0;
        if (k >= (BigInteger.One << (mantBits + 1)))
        {
            k >>= 1;
            quantumExp++;
        }

        if (k < (BigInteger.One << mantBits))
        {
            return sign | (ulong)k;   // subnormal or zero (only at the lowest quantum)
        }

        int biased = quantumExp + mantBits + bias;
        ulong inf = ((1UL << expBits) - 1) << mantBits;
        if (biased >= (1 << expBits) - 1)
        {
            bool toInf = r == FloatRounding.Rn || (r == FloatRounding.Rm && neg) || (r == FloatRounding.Rp && !neg);
            return sign | (toInf ? inf : inf - 1);
        }

        return sign | ((ulong)biased << mantBits) | ((ulong)k - (1UL << mantBits));
    }

    /// <summary>The sign of n/d - 2^e.</summary>
    private static int Pow2Compare(BigInteger n, BigInteger d, int e) =>
        e >= 0 ? n.CompareTo(d << e) : (n << -e).CompareTo(d);

    public static float F32(Rational x, FloatRounding r) => BitConverter.UInt32BitsToSingle((uint)Round(x, 23, 8, r));

    public static double F64(Rational x, FloatRounding r) => BitConverter.UInt64BitsToDouble(Round(x, 52, 11, r));
}
