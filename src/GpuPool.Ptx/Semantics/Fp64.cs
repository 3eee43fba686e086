using System.Runtime.CompilerServices;

namespace GpuPool.Ptx.Semantics;

/// <summary>
/// The .f64 instructions. Round-to-nearest runs on the host's IEEE double arithmetic; the directed roundings are computed
/// exactly on 128-bit integer significands. NaN results keep the payload the host gives (the ISA does not fix f64 NaN bits),
/// except min/max of two NaNs, which give <see cref="CanonicalNaN"/>.
/// </summary>
public static class Fp64
{
    /// <summary>The NaN min/max return when both operands are NaN.</summary>
    public static double CanonicalNaN => BitConverter.UInt64BitsToDouble(0x7FFF_FFFF_FFFF_FFFF);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Add(double a, double b, FloatRounding r) => r == FloatRounding.Rn ? a + b : AddDirected(a, b, r);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Sub(double a, double b, FloatRounding r) => Add(a, -b, r);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Mul(double a, double b, FloatRounding r) => r == FloatRounding.Rn ? a * b : MulDirected(a, b, r);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Fma(double a, double b, double c, FloatRounding r) =>
        r == FloatRounding.Rn ? Math.FusedMultiplyAdd(a, b, c) : FmaDirected(a, b, c, r);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Div(double a, double b, FloatRounding r) => r == FloatRounding.Rn ? a / b : DivDirected(a, b, r);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Rcp(double a, FloatRounding r) => Div(1.0, a, r);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Sqrt(double a, FloatRounding r) => r == FloatRounding.Rn ? Math.Sqrt(a) : SqrtDirected(a, r);

    private static double AddDirected(double a, double b, FloatRounding r)
    {
        if (!double.IsFinite(a) || !double.IsFinite(b))
        {
            return a + b;
        }

        if (a == 0 || b == 0)
        {
            return a == 0 && b == 0 ? ZeroSum(a, b, r) : a + b;   // x + 0 is exact
        }

        SoftFloat.Decompose(a, out bool na, out ulong sa, out int ea);
        SoftFloat.Decompose(b, out bool nb, out ulong sb, out int eb);
        ulong? bits = SoftFloat.AddExact(na, sa, ea, nb, sb, eb, SoftFloat.F64Mant, SoftFloat.F64Exp, r);
        return bits is ulong v ? BitConverter.UInt64BitsToDouble(v) : ZeroSum(a, b, r);
    }

    private static double MulDirected(double a, double b, FloatRounding r)
    {
        if (!double.IsFinite(a) || !double.IsFinite(b) || a == 0 || b == 0)
        {
            return a * b;
        }

        SoftFloat.Decompose(a, out bool na, out ulong sa, out int ea);
        SoftFloat.Decompose(b, out bool nb, out ulong sb, out int eb);
        UInt128 p = (UInt128)sa * sb;
        return BitConverter.UInt64BitsToDouble(SoftFloat.RoundPack128(na != nb, p, ea + eb, false, SoftFloat.F64Mant, SoftFloat.F64Exp, r));
    }

    private static double FmaDirected(double a, double b, double c, FloatRounding r)
    {
        if (!double.IsFinite(a) || !double.IsFinite(b) || !double.IsFinite(c))
        {
            return Math.FusedMultiplyAdd(a, b, c);
        }

        if (a == 0 || b == 0)
        {
            double p0 = a * b;   // a signed zero
            return c == 0 ? ZeroSum(p0, c, r) : c;
        }

        SoftFloat.Decompose(a, out bool na, out ulong sa, out int ea);
        SoftFloat.Decompose(b, out bool nb, out ulong sb, out int eb);
        UInt128 p = (UInt128)sa * sb;
        bool np = na != nb;
        if (c == 0)
        {
            return BitConverter.UInt64BitsToDouble(SoftFloat.RoundPack128(np, p, ea + eb, false, SoftFloat.F64Mant, SoftFloat.F64Exp, r));
        }

        SoftFloat.Decompose(c, out bool nc, out ulong sc, out int ec);
        ulong? bits = SoftFloat.AddExact(np, p, ea + eb, nc, sc, ec, SoftFloat.F64Mant, SoftFloat.F64Exp, r);
        return bits is ulong v ? BitConverter.UInt64BitsToDouble(v) : (r == FloatRounding.Rm ? -0.0 : 0.0);
    }

    private static double DivDirected(double a, double b, FloatRounding r)
    {
        if (!double.IsFinite(a) || !double.IsFinite(b) || a == 0 || b == 0)
        {
            return a / b;
        }

        SoftFloat.Decompose(a, out bool na, out ulong sa, out int ea);
        SoftFloat.Decompose(b, out bool nb, out ulong sb, out int eb);
        int la = System.Numerics.BitOperations.LeadingZeroCount(sa) - 11;
        int lb = System.Numerics.BitOperations.LeadingZeroCount(sb) - 11;
        sa <<= la;
        ea -= la;
        sb <<= lb;
        eb -= lb;

        // Both significands in [2^52, 2^53): the quotient of sa·2^63 by sb lies in (2^62, 2^64).
        UInt128 n = (UInt128)sa << 63;
        UInt128 q = n / sb;
        bool sticky = q * sb != n;
        return BitConverter.UInt64BitsToDouble(SoftFloat.RoundPack(na != nb, (ulong)q, ea - eb - 63, sticky, SoftFloat.F64Mant, SoftFloat.F64Exp, r));
    }

    private static double SqrtDirected(double a, FloatRounding r)
    {
        if (!double.IsFinite(a) || a <= 0)
        {
            return Math.Sqrt(a);
        }

        // A root is never subnormal, so scaling a by 2^600 scales the root by 2^300 without changing its rounding,
        // and keeps the residual a - q² exact.
        bool scaled = a < 1e-270;
        double x = scaled ? Math.ScaleB(a, 600) : a;
        double q = Math.Sqrt(x);
        double rem = Math.FusedMultiplyAdd(-q, q, x);
        if (rem < 0 && r != FloatRounding.Rp && r != FloatRounding.Rn)
        {
            q = Math.BitDecrement(q);
        }
        else if (rem > 0 && r == FloatRounding.Rp)
        {
            q = Math.BitIncrement(q);
        }

        return scaled ? Math.ScaleB(q, -300) : q;
    }

    private static double ZeroSum(double x, double y, FloatRounding r)
    {
        if (x == 0 && y == 0 && double.IsNegative(x) == double.IsNegative(y))
        {
            return x;
        }

        return r == FloatRounding.Rm ? -0.0 : 0.0;
    }

    /// <summary>rcp.approx.ftz.f64: a reciprocal with subnormal input and output flushed; this one is correctly rounded.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double RcpApproxFtz(double a) => Ftz(1.0 / Ftz(a));

    /// <summary>rsqrt.approx.f64: 1/sqrt(a) from the rounded root, rounded once more.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double RsqrtApprox(double a) => 1.0 / Math.Sqrt(a);

    /// <summary>A subnormal becomes a zero of its sign (the .ftz of the f64 approximations).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Ftz(double a) => double.IsSubnormal(a) ? (double.IsNegative(a) ? -0.0 : 0.0) : a;

    /// <summary>min.f64: a NaN operand yields the other; two NaNs the canonical NaN; -0 counts as less than +0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Min(double a, double b)
    {
        if (double.IsNaN(a))
        {
            return double.IsNaN(b) ? CanonicalNaN : b;
        }

        if (double.IsNaN(b))
        {
            return a;
        }

        return a < b || (a == b && double.IsNegative(a)) ? a : b;
    }

    /// <summary>max.f64: a NaN operand yields the other; two NaNs the canonical NaN; +0 counts as greater than -0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Max(double a, double b)
    {
        if (double.IsNaN(a))
        {
            return double.IsNaN(b) ? CanonicalNaN : b;
        }

        if (double.IsNaN(b))
        {
            return a;
        }

        return a > b || (a == b && !double.IsNegative(a)) ? a : b;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double MinNaN(double a, double b) => double.IsNaN(a) || double.IsNaN(b) ? CanonicalNaN : Min(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double MaxNaN(double a, double b) => double.IsNaN(a) || double.IsNaN(b) ? CanonicalNaN : Max(a, b);

    /// <summary>.sat (on f64 only cvt has it): clamp to [0, 1]; NaN and -0 become +0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Saturate(double a) => a > 0 ? (a < 1 ? a : 1) : 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Neg(double a) => BitConverter.UInt64BitsToDouble(BitConverter.DoubleToUInt64Bits(a) ^ 0x8000_0000_0000_0000);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Abs(double a) => BitConverter.UInt64BitsToDouble(BitConverter.DoubleToUInt64Bits(a) & 0x7FFF_FFFF_FFFF_FFFF);

    /// <summary>copysign.f64 d, a, b: the magnitude of b with the sign of a.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Copysign(double a, double b) => BitConverter.UInt64BitsToDouble(
        (BitConverter.DoubleToUInt64Bits(a) & 0x8000_0000_0000_0000) | (BitConverter.DoubleToUInt64Bits(b) & 0x7FFF_FFFF_FFFF_FFFF));

    /// <summary>setp/set on floats (f64, and f32/f16 widened exactly): ordered forms false on NaN, the u forms true.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Compare(CompareOp op, double a, double b)
    {
        bool unordered = double.IsNaN(a) || double.IsNaN(b);
        return op switch
        {
            CompareOp.Eq => a == b,
            CompareOp.Ne => !unordered && a != b,
            CompareOp.Lt => a < b,
            CompareOp.Le => a <= b,
            CompareOp.Gt => a > b,
            CompareOp.Ge => a >= b,
            CompareOp.Equ => unordered || a == b,
            CompareOp.Neu => a != b,
            CompareOp.Ltu => unordered || a < b,
            CompareOp.Leu => unordered || a <= b,
            CompareOp.Gtu => unordered || a > b,
            CompareOp.Geu => unordered || a >= b,
            CompareOp.Num => !unordered,
            CompareOp.Nan => unordered,
            _ => ThrowNotFloat(op),
        };
    }

    private static bool ThrowNotFloat(CompareOp op) =>
        throw new ArgumentOutOfRangeException(nameof(op), op, "lo/ls/hi/hs compare unsigned integers, not floats");

    public static bool Testp(TestpKind kind, double a) => kind switch
    {
        TestpKind.Finite => double.IsFinite(a),
        TestpKind.Infinite => double.IsInfinity(a),
        TestpKind.Number => !double.IsNaN(a),
        TestpKind.NotANumber => double.IsNaN(a),
        TestpKind.Normal => double.IsNormal(a) || a == 0,
        TestpKind.Subnormal => double.IsSubnormal(a),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "not a testp property"),
    };
}
