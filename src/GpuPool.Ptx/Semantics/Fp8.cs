namespace GpuPool.Ptx.Semantics;

/// <summary>
/// The 8-bit floating-point formats of sm_89 and later: e4m3 (4 exponent bits, bias 7, 3 mantissa bits, no infinity, its
/// largest finite 448, NaN 0x7F) and e5m2 (5 exponent bits, bias 15, 2 mantissa bits, IEEE-like with infinities, its
/// largest finite 57344), and the pair conversions cvt makes from f32 (with .relu and .satfinite) and to f16.
/// </summary>
public static class Fp8
{
    /// <summary>An f32 (as a double, exactly) rounded to nearest even into e4m3; .satfinite clamps to ±448, .relu clamps negatives to 0.</summary>
    public static byte ToE4M3(double x, bool relu, bool satfinite) => Encode(x, relu, satfinite, exponentBits: 4, mantissaBits: 3);

    /// <summary>An f32 rounded to nearest even into e5m2; .satfinite clamps to ±57344 (an infinity included), .relu clamps negatives to 0.</summary>
    public static byte ToE5M2(double x, bool relu, bool satfinite) => Encode(x, relu, satfinite, exponentBits: 5, mantissaBits: 2);

    /// <summary>An e4m3 value exactly (every one is an f16 too).</summary>
    public static double FromE4M3(byte b) => Decode(b, exponentBits: 4, mantissaBits: 3);

    public static double FromE5M2(byte b) => Decode(b, exponentBits: 5, mantissaBits: 2);

    private static byte Encode(double x, bool relu, bool satfinite, int exponentBits, int mantissaBits)
    {
        var e4m3 = exponentBits == 4;
        var bias = (1 << (exponentBits - 1)) - 1;
        var sign = double.IsNegative(x) ? 0x80 : 0;
        if (double.IsNaN(x))
        {
            return 0x7F;
        }

        if (relu && (x < 0 || (x == 0 && sign != 0)))
        {
            return 0;
        }

        // The largest finite: e4m3 uses its top exponent for numbers (all but the NaN pattern); e5m2 keeps it for
        // infinities and NaNs, as IEEE does.
        var maxExponent = e4m3 ? (1 << exponentBits) - 1 - bias : (1 << exponentBits) - 2 - bias;
        var maxMantissa = e4m3 ? (1 << mantissaBits) - 2 : (1 << mantissaBits) - 1;
        var maxFinite = Math.ScaleB(1 + (maxMantissa / (double)(1 << mantissaBits)), maxExponent);
        var overflow = satfinite || e4m3 ? (byte)(sign | (e4m3 ? 0x7E : 0x7B)) : (byte)(sign | 0x7C);
        var magnitude = Math.Abs(x);
        if (double.IsInfinity(magnitude))
        {
            return satfinite ? overflow : e4m3 ? (byte)0x7F : (byte)(sign | 0x7C);
        }

        // To the format's grid: a quantum of 2^(e - mantissaBits) for exponent e, the subnormals' below the smallest normal.
        var minExponent = 1 - bias;
        var exponent = magnitude == 0 ? minExponent : Math.Max(minExponent, Math.ILogB(magnitude));
        var quantum = Math.ScaleB(1.0, exponent - mantissaBits);
        var rounded = Math.Round(magnitude / quantum, MidpointRounding.ToEven) * quantum;
        if (rounded > maxFinite)
        {
            // Past the largest finite after rounding: e4m3 without .satfinite gives its NaN, e5m2 its infinity.
            return satfinite ? overflow : e4m3 ? (byte)0x7F : (byte)(sign | 0x7C);
        }

        if (rounded == 0)
        {
            return (byte)sign;
        }

        var e = Math.ILogB(rounded);
        if (e < minExponent)
        {
            return (byte)(sign | (int)(rounded / Math.ScaleB(1.0, minExponent - mantissaBits)));
        }

        var mantissa = (int)(rounded / Math.ScaleB(1.0, e - mantissaBits)) - (1 << mantissaBits);
        return (byte)(sign | ((e + bias) << mantissaBits) | mantissa);
    }

    private static double Decode(byte b, int exponentBits, int mantissaBits)
    {
        var bias = (1 << (exponentBits - 1)) - 1;
        var sign = (b & 0x80) != 0 ? -1.0 : 1.0;
        var exponent = (b >> mantissaBits) & ((1 << exponentBits) - 1);
        var mantissa = b & ((1 << mantissaBits) - 1);
        if (exponentBits == 4 && (b & 0x7F) == 0x7F)
        {
            return double.NaN;
        }

        if (exponentBits == 5 && exponent == 31)
        {
            return mantissa == 0 ? sign * double.PositiveInfinity : double.NaN;
        }

        return exponent == 0
            ? sign * Math.ScaleB(mantissa, 1 - bias - mantissaBits)
            : sign * Math.ScaleB(mantissa + (1 << mantissaBits), exponent - bias - mantissaBits);
    }

    /// <summary>cvt.rn{.relu}{.satfinite}.e4m3x2.f32 d, a, b (e5m2x2 alike): a into the upper byte, b into the lower.</summary>
    public static ushort PairFromF32(float a, float b, bool e4m3, bool relu, bool satfinite)
    {
        byte One(float v) => e4m3 ? ToE4M3(v, relu, satfinite) : ToE5M2(v, relu, satfinite);
        return (ushort)((One(a) << 8) | One(b));
    }

    /// <summary>cvt.rn{.relu}.f16x2.e4m3x2 d, a (e5m2x2 alike): each byte of a, exactly, into the f16 of the same half of d.</summary>
    public static uint PairToF16(ushort a, bool e4m3, bool relu)
    {
        ushort One(byte v)
        {
            var value = e4m3 ? FromE4M3(v) : FromE5M2(v);
            return relu && value < 0 ? (ushort)0 : Half16.FromDouble(value, FloatRounding.Rn);
        }

        return One((byte)a) | ((uint)One((byte)(a >> 8)) << 16);
    }

    /// <summary>cvt.rn{.relu}{.satfinite}.f16x2.f32 d, a, b (bf16x2 alike): a into the upper half, b into the lower.</summary>
    public static uint HalfPairFromF32(float a, float b, bool brain, FloatRounding r, bool relu, bool satfinite)
    {
        ushort One(float v)
        {
            if (relu && !float.IsNaN(v) && (v < 0 || float.IsNegative(v)))
            {
                v = 0;
            }

            var h = brain ? Half16.BFromDouble(v, r) : Half16.FromDouble(v, r);
            var infinity = brain ? 0x7F80 : 0x7C00;
            if (satfinite && (h & 0x7FFF) == infinity)
            {
                h = (ushort)((h & 0x8000) | (infinity - 1));
            }

            return h;
        }

        return One(b) | ((uint)One(a) << 16);
    }
}
