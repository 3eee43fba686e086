using System.Runtime.CompilerServices;

namespace GpuPool.Ptx.Semantics;

/// <summary>
/// The .f32 instructions. Any NaN an arithmetic instruction produces is the canonical NaN 0x7FFFFFFF, as the GPU writes it.
/// .ftz is not a parameter: the compiler applies <see cref="Ftz"/> to the inputs and the result, which is what .ftz means.
/// </summary>
public static class Fp32
{
    /// <summary>The NaN the GPU writes for any f32 NaN result.</summary>
    public static float CanonicalNaN => BitConverter.UInt32BitsToSingle(0x7FFF_FFFF);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Canon(float x) => float.IsNaN(x) ? CanonicalNaN : x;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Add(float a, float b, FloatRounding r) =>
        r == FloatRounding.Rn ? Canon(a + b) : AddDirected(a, b, r);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sub(float a, float b, FloatRounding r) => Add(a, -b, r);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Mul(float a, float b, FloatRounding r) =>
        r == FloatRounding.Rn ? Canon(a * b) : MulDirected(a, b, r);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Fma(float a, float b, float c, FloatRounding r) =>
        r == FloatRounding.Rn ? Canon(MathF.FusedMultiplyAdd(a, b, c)) : FmaDirected(a, b, c, r);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Div(float a, float b, FloatRounding r) =>
        r == FloatRounding.Rn ? Canon(a / b) : DivDirected(a, b, r);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Rcp(float a, FloatRounding r) => Div(1f, a, r);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sqrt(float a, FloatRounding r) =>
        r == FloatRounding.Rn ? Canon(MathF.Sqrt(a)) : SqrtDirected(a, r);

    private static float AddDirected(float a, float b, FloatRounding r)
    {
        if (!float.IsFinite(a) || !float.IsFinite(b))
        {
            return Canon(a + b);
        }

        double x = a, y = b;
        double s = x + y;
        double e = TwoSumError(x, y, s);
        if (s == 0 && e == 0)
        {
            return ZeroSum(a, b, r);
        }

        return FromBits(SoftFloat.RoundDouble(s, Math.Sign(e), SoftFloat.F32Mant, SoftFloat.F32Exp, r));
    }

    private static float MulDirected(float a, float b, FloatRounding r)
    {
        double p = (double)a * b;      // exact: 48 significant bits
        if (!double.IsFinite(p) || p == 0)
        {
            return Canon(a * b);
        }

        return FromBits(SoftFloat.RoundDouble(p, 0, SoftFloat.F32Mant, SoftFloat.F32Exp, r));
    }

    private static float FmaDirected(float a, float b, float c, FloatRounding r)
    {
        if (!float.IsFinite(a) || !float.IsFinite(b) || !float.IsFinite(c))
        {
            return Canon(MathF.FusedMultiplyAdd(a, b, c));
        }

        double p = (double)a * b;      // exact
        double c2 = c;
        double s = p + c2;
        double e = TwoSumError(p, c2, s);
        if (s == 0 && e == 0)
        {
            return (float)ZeroSum(p, c2, r);
        }

        return FromBits(SoftFloat.RoundDouble(s, Math.Sign(e), SoftFloat.F32Mant, SoftFloat.F32Exp, r));
    }

    private static float DivDirected(float a, float b, FloatRounding r)
    {
        if (!float.IsFinite(a) || !float.IsFinite(b) || a == 0 || b == 0)
        {
            return Canon(a / b);
        }

        double x = a, y = b;
        double q = x / y;
        double rem = Math.FusedMultiplyAdd(-q, y, x);   // exact remainder of a double division
        return FromBits(SoftFloat.RoundDouble(q, Math.Sign(rem) * Math.Sign(y), SoftFloat.F32Mant, SoftFloat.F32Exp, r));
    }

    private static float SqrtDirected(float a, FloatRounding r)
    {
        if (!float.IsFinite(a) || a <= 0)
        {
            return Canon(MathF.Sqrt(a));
        }

        double x = a;
        double q = Math.Sqrt(x);
        double rem = Math.FusedMultiplyAdd(-q, q, x);   // exact: a is far from double underflow
        return FromBits(SoftFloat.RoundDouble(q, Math.Sign(rem), SoftFloat.F32Mant, SoftFloat.F32Exp, r));
    }

    /// <summary>The error of s = RN(x + y): x + y = s + error exactly (Knuth's TwoSum).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static double TwoSumError(double x, double y, double s)
    {
        double bv = s - x;
        double av = s - bv;
        return (x - av) + (y - bv);
    }

    /// <summary>IEEE's sign of an exact zero sum: two zeros of one sign keep it; otherwise +0, except -0 when rounding down.</summary>
    private static float ZeroSum(double x, double y, FloatRounding r)
    {
        if (x == 0 && y == 0 && double.IsNegative(x) == double.IsNegative(y))
        {
            return (float)x;
        }

        return r == FloatRounding.Rm ? -0f : 0f;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float FromBits(ulong bits) => BitConverter.UInt32BitsToSingle((uint)bits);

    private static readonly float Two126 = MathF.ScaleB(1f, 126);

    /// <summary>div.approx.f32: a × (1/b); for 2^126 &lt; |b| &lt; 2^128 the ISA gives 0, or NaN when a is infinite.</summary>
    public static float DivApprox(float a, float b)
    {
        float m = MathF.Abs(b);
        if (m > Two126 && m < float.PositiveInfinity)
        {
            return float.IsInfinity(a) || float.IsNaN(a) ? CanonicalNaN : 0f * a * b;
        }

        return Canon((float)((double)a / b));
    }

    /// <summary>div.full.f32: within 2 ulp over the whole range; this returns the correctly rounded quotient.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float DivFull(float a, float b) => Canon(a / b);

    /// <summary>rcp.approx.f32 (ISA: at most 1 ulp): the correctly rounded reciprocal.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RcpApprox(float a) => Canon(1f / a);

    /// <summary>sqrt.approx.f32: the correctly rounded root; negative inputs give NaN, -0 gives -0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SqrtApprox(float a) => Canon(MathF.Sqrt(a));

    /// <summary>rsqrt.approx.f32: 1/sqrt(a) from a double root, rounded once more; ±0 gives ±infinity.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RsqrtApprox(float a) => Canon((float)(1.0 / Math.Sqrt(a)));

    /// <summary>ex2.approx.f32: 2^a, from the double result (well inside the ISA's 2 ulp).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Ex2Approx(float a) => Canon((float)Math.Pow(2.0, a));

    /// <summary>lg2.approx.f32: log2(a); 0 gives -infinity, negative NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Lg2Approx(float a) => Canon((float)Math.Log2(a));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SinApprox(float a) => Canon((float)Math.Sin(a));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float CosApprox(float a) => Canon((float)Math.Cos(a));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float TanhApprox(float a) => Canon((float)Math.Tanh(a));

    /// <summary>min.f32: a NaN operand yields the other; two NaNs the canonical NaN; -0 counts as less than +0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Min(float a, float b)
    {
        if (float.IsNaN(a))
        {
            return float.IsNaN(b) ? CanonicalNaN : b;
        }

        if (float.IsNaN(b))
        {
            return a;
        }

        return a < b || (a == b && float.IsNegative(a)) ? a : b;
    }

    /// <summary>max.f32: a NaN operand yields the other; two NaNs the canonical NaN; +0 counts as greater than -0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Max(float a, float b)
    {
        if (float.IsNaN(a))
        {
            return float.IsNaN(b) ? CanonicalNaN : b;
        }

        if (float.IsNaN(b))
        {
            return a;
        }

        return a > b || (a == b && !float.IsNegative(a)) ? a : b;
    }

    /// <summary>min.NaN.f32: any NaN operand yields the canonical NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MinNaN(float a, float b) => float.IsNaN(a) || float.IsNaN(b) ? CanonicalNaN : Min(a, b);

    /// <summary>max.NaN.f32: any NaN operand yields the canonical NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxNaN(float a, float b) => float.IsNaN(a) || float.IsNaN(b) ? CanonicalNaN : Max(a, b);

    /// <summary>.ftz: a subnormal becomes a zero of the same sign; everything else passes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Ftz(float a) =>
        (BitConverter.SingleToUInt32Bits(a) & 0x7F80_0000) == 0 ? BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(a) & 0x8000_0000) : a;

    /// <summary>.sat: clamp to [0, 1]; NaN and -0 become +0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Saturate(float a) => a > 0f ? (a < 1f ? a : 1f) : 0f;

    /// <summary>neg.f32: flips the sign bit (NaNs included).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Neg(float a) => BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(a) ^ 0x8000_0000);

    /// <summary>abs.f32: clears the sign bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Abs(float a) => BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(a) & 0x7FFF_FFFF);

    /// <summary>copysign.f32 d, a, b: the magnitude of b with the sign of a (the ISA's operand order).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Copysign(float a, float b) =>
        BitConverter.UInt32BitsToSingle((BitConverter.SingleToUInt32Bits(a) & 0x8000_0000) | (BitConverter.SingleToUInt32Bits(b) & 0x7FFF_FFFF));

    /// <summary>setp/set on floats: the ordered forms are false on NaN, the u forms true; Num and Nan test orderedness.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Compare(CompareOp op, float a, float b) => Fp64.Compare(op, a, b);

    public static bool Testp(TestpKind kind, float a) => kind switch
    {
        TestpKind.Finite => float.IsFinite(a),
        TestpKind.Infinite => float.IsInfinity(a),
        TestpKind.Number => !float.IsNaN(a),
        TestpKind.NotANumber => float.IsNaN(a),
        TestpKind.Normal => float.IsNormal(a) || a == 0,
        TestpKind.Subnormal => float.IsSubnormal(a),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "not a testp property"),
    };
}
