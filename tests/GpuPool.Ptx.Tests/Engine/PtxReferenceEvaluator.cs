using System.Numerics;
using GpuPool.Ptx.Semantics;
using PtxConvert = GpuPool.Ptx.Semantics.Convert;

namespace GpuPool.Ptx.Tests.Engine;

/// <summary>
/// Runs a generated program's instructions one after another on a register file of 64-bit values, with the PTX ISA's
/// semantics written out here, independently of the engine. Correctly rounded (.rn) float results are C#'s own IEEE
/// arithmetic; only the directed roundings (.rz/.rm/.rp) call the engine's <c>Semantics</c>, which are tested on their own
/// against exact rational arithmetic. A float NaN is held as the canonical NaN: PTX leaves a single-precision NaN's
/// payload unspecified, so registers of float class compare equal when both hold a NaN. What depends on those bits (the
/// sign copysign takes from a NaN) is unknown, and so is everything computed from an unknown value: the checker skips it.
/// </summary>
internal sealed class PtxReferenceEvaluator
{
    private readonly ulong[] _values;
    private readonly bool[] _unknown;
    private readonly string? _wrongOp;

    /// <summary>CC.CF, the carry (or borrow) flag of the add.cc/sub.cc chains.</summary>
    private ulong _carry;
    private bool _carryUnknown;

    /// <param name="program">The program whose registers start as its inputs.</param>
    /// <param name="thread">The thread, whose row of the inputs the registers start as.</param>
    /// <param name="wrongOp">Only for testing the test: an opcode whose every result the reference gets wrong (low bit flipped).</param>
    public PtxReferenceEvaluator(RandomPtxProgram program, int thread, string? wrongOp = null)
    {
        var inputs = program.Inputs[thread];
        _values = new ulong[program.Registers.Count];
        _unknown = new bool[program.Registers.Count];
        foreach (var r in program.Registers)
        {
            _values[r.Slot] = r.Class == RegClass.Pred ? ((inputs[r.Slot] & 0xFFFF_FFFF) != 0 ? 1UL : 0UL) : inputs[r.Slot] & Mask(r.Bits);
        }

        _wrongOp = wrongOp;
        _carry = program.InitialCarry?.PerThread[thread] ?? 0;
    }

    /// <summary>Each register's value, by slot: the low bits of its width, a predicate as 0 or 1.</summary>
    public IReadOnlyList<ulong> Values => _values;

    /// <summary>Whether each register's value is one the ISA leaves open (its value in <see cref="Values"/> is then meaningless).</summary>
    public IReadOnlyList<bool> Unknown => _unknown;

    /// <summary>The carry flag CC.CF, 0 or 1.</summary>
    public ulong Carry => _carry;

    /// <summary>Whether two values of a register of <paramref name="c"/> are the same to PTX (any two NaNs are).</summary>
    public static bool Same(RegClass c, ulong a, ulong b) => a == b || c switch
    {
        RegClass.F32 => float.IsNaN(BitConverter.UInt32BitsToSingle((uint)a)) && float.IsNaN(BitConverter.UInt32BitsToSingle((uint)b)),
        RegClass.F64 => double.IsNaN(BitConverter.UInt64BitsToDouble(a)) && double.IsNaN(BitConverter.UInt64BitsToDouble(b)),
        _ => false,
    };

    public void Execute(Instr i)
    {
        var guardUnknown = i.Guard is { } guard && _unknown[guard.Reg.Slot];
        if (guardUnknown || i.Srcs.Any(s => s is RegOperand r && _unknown[r.Reg.Slot]) || (i.Op is "addc" or "subc" or "madc" && _carryUnknown))
        {
            // Computed from an unknown value, or run or not by an unknown guard: unknown.
            _unknown[i.Dst.Slot] = true;
            if (i.Dst2 is not null)
            {
                _unknown[i.Dst2.Slot] = true;
            }

            _carryUnknown |= i.Has("cc");
            return;
        }

        if (i.Guard is { } g && Read(g, "pred") == 0)
        {
            return;
        }

        if (i.Op == "setp")
        {
            ExecuteSetp(i);
            return;
        }

        if (i.Vector)
        {
            ExecuteVectorMov(i);
            return;
        }

        var result = i.Op switch
        {
            "cvt" => Cvt(i),
            "slct" => Slct(i),
            "testp" => Testp(i),
            _ when IsFloat(i.Type) => FloatOp(i),
            _ => IntOp(i),
        };
        if (i.Op == _wrongOp)
        {
            result ^= 1;
        }

        // The sign copysign takes from a NaN is part of the payload PTX leaves open.
        var signOfANaN = i.Op == "copysign" && (i.Type == "f32" ? float.IsNaN(F32(i.Srcs[0], i)) : double.IsNaN(F64(i.Srcs[0])));
        Write(i.Dst, result);
        _unknown[i.Dst.Slot] = signOfANaN;
    }

    // ---- registers and types ---------------------------------------------------------------------------------------

    private static ulong Mask(int bits) => bits >= 64 ? ulong.MaxValue : (1UL << bits) - 1;

    private static bool IsFloat(string type) => type is "f32" or "f64";

    private static bool IsSigned(string type) => type[0] == 's';

    private static int Width(string type) => type == "pred" ? 1 : int.Parse(type.AsSpan(1), provider: null);

    /// <summary>The low <paramref name="type"/>-width bits of a value, sign- or zero-extended to 64 bits as the type is.</summary>
    private static ulong Extend(ulong v, string type)
    {
        var w = Width(type);
        if (w >= 64)
        {
            return v;
        }

        v &= Mask(w);
        return IsSigned(type) && (v >> (w - 1)) != 0 ? v | ~Mask(w) : v;
    }

    /// <summary>An operand read as the type: the type's width of the register (or immediate), extended as the type is.</summary>
    private ulong Read(Operand o, string type) => o switch
    {
        RegOperand { Reg.Class: RegClass.Pred } p => _values[p.Reg.Slot] ^ (p.Negated ? 1UL : 0UL),
        RegOperand r => Extend(_values[r.Reg.Slot], type),
        Imm m => Extend(m.Bits, type),
        _ => throw new ArgumentException(o.ToString()),
    };

    /// <summary>A result of the destination's type, already extended to 64 bits, kept to the register's width.</summary>
    private void Write(Reg r, ulong value)
    {
        _values[r.Slot] = r.Class == RegClass.Pred ? value & 1 : value & Mask(r.Bits);
        _unknown[r.Slot] = false;
    }

    private float F32(Operand o, Instr i) => Ftz(BitConverter.UInt32BitsToSingle((uint)Read(o, "b32")), i);

    private double F64(Operand o) => BitConverter.UInt64BitsToDouble(Read(o, "b64"));

    private static float Ftz(float f, Instr i) => i.Has("ftz") && float.IsSubnormal(f) ? (float.IsNegative(f) ? -0f : 0f) : f;

    /// <summary>A float result as register bits, after .sat (clamped to [0, 1], NaN to +0) and .ftz of the result.</summary>
    private static ulong Bits(float f, Instr i)
    {
        if (i.Has("sat"))
        {
            f = float.IsNaN(f) || f <= 0f ? 0f : Math.Min(f, 1f);
        }

        f = Ftz(f, i);
        return float.IsNaN(f) ? 0x7FFF_FFFFUL : BitConverter.SingleToUInt32Bits(f);
    }

    private static ulong Bits(double d, Instr i)
    {
        if (i.Has("sat"))
        {
            d = double.IsNaN(d) || d <= 0 ? 0 : Math.Min(d, 1);
        }

        return double.IsNaN(d) ? 0x7FFF_FFFF_FFFF_FFFFUL : BitConverter.DoubleToUInt64Bits(d);
    }

    private static FloatRounding RoundingOf(Instr i)
        => i.Has("rz") ? FloatRounding.Rz : i.Has("rm") ? FloatRounding.Rm : i.Has("rp") ? FloatRounding.Rp : FloatRounding.Rn;

    // ---- integers ----------------------------------------------------------------------------------------------------

    private ulong IntOp(Instr i)
    {
        var t = i.Type;
        var w = Width(t);
        var s = i.Srcs;
        ulong A() => Read(s[0], t);
        ulong B() => Read(s[1], t);
        ulong C() => Read(s[2], t);
        switch (i.Op)
        {
            case "mov":
                return A();
            case "selp":
                return Read(s[2], "pred") != 0 ? A() : B();
            case "add" or "addc" or "sub" or "subc" or "mad" or "madc" when i.Has("cc") || i.Op.EndsWith('c'):
                return CarryChain(i, t, w);
            case "add" when i.Has("sat"):
                return (ulong)Math.Clamp((long)A() + (long)B(), int.MinValue, int.MaxValue);
            case "sub" when i.Has("sat"):
                return (ulong)Math.Clamp((long)A() - (long)B(), int.MinValue, int.MaxValue);
            case "add":
                return Extend(A() + B(), t);
            case "sub":
                return Extend(A() - B(), t);
            case "mul" or "mad" when i.Has("wide"):
                {
                    var product = A() * B(); // both extended to 64 bits, so the 2w-bit product is exact
                    var wide = t[0] + (w * 2).ToString(System.Globalization.CultureInfo.InvariantCulture);
                    return Extend(i.Op == "mad" ? product + Read(s[2], wide) : product, wide);
                }

            case "mul" or "mad":
                {
                    var product = i.Has("hi") ? MulHi(A(), B(), t) : A() * B();
                    if (i.Has("sat"))
                    {
                        // mad.hi.sat.s32: the high half (sign-extended) plus c, exact in 64 bits, clamped to the s32 range.
                        return (ulong)Math.Clamp((long)product + (long)C(), int.MinValue, int.MaxValue);
                    }

                    return Extend(i.Op == "mad" ? product + C() : product, t);
                }

            case "mul24" or "mad24":
                {
                    // The operands' low 24 bits, sign- or zero-extended: a 48-bit product, its low 32 bits or bits 16 to 47.
                    var a24 = (long)Extend(A(), IsSigned(t) ? "s24" : "u24");
                    var b24 = (long)Extend(B(), IsSigned(t) ? "s24" : "u24");
                    var product = (ulong)(a24 * b24);
                    var part = i.Has("hi") ? Extend(product >> 16, t) : Extend(product, t);
                    if (i.Op == "mul24")
                    {
                        return part;
                    }

                    return i.Has("sat")
                        ? (ulong)Math.Clamp((long)part + (long)C(), int.MinValue, int.MaxValue)
                        : Extend(part + C(), t);
                }

            case "sad":
                {
                    var (a, b) = IsSigned(t) ? ((Int128)(long)A(), (Int128)(long)B()) : ((Int128)A(), (Int128)B());
                    return Extend((ulong)(a > b ? a - b : b - a) + C(), t);
                }

            case "div":
                return Div(A(), B(), t);
            case "rem":
                return Rem(A(), B(), t);
            case "min" or "max":
                {
                    var (a, b) = (A(), B());
                    var less = IsSigned(t) ? (long)a < (long)b : a < b;
                    return (i.Op == "min") == less ? a : b;
                }

            case "and":
                return A() & B();
            case "or":
                return A() | B();
            case "xor":
                return A() ^ B();
            case "not":
                return t == "pred" ? A() ^ 1 : Extend(~A(), t);
            case "cnot":
                return A() == 0 ? 1UL : 0UL;
            case "shl":
                {
                    var n = Read(s[1], "u32");
                    return n >= (ulong)w ? 0 : Extend(A() << (int)n, t);
                }

            case "shr":
                {
                    var n = (int)Math.Min(Read(s[1], "u32"), (ulong)w);
                    var a = A();
                    return IsSigned(t) ? (n >= 64 ? (ulong)((long)a >> 63) : (ulong)((long)a >> n)) : (n >= 64 ? 0 : Extend(a >> n, t));
                }

            case "neg":
                return Extend(0 - A(), t);
            case "abs":
                return Extend((long)A() < 0 ? 0 - A() : A(), t);
            case "popc":
                return (ulong)BitOperations.PopCount(A());
            case "clz":
                return (ulong)(BitOperations.LeadingZeroCount(A()) - (64 - w));
            case "brev":
                {
                    var a = A();
                    var r = 0UL;
                    for (var k = 0; k < w; k++)
                    {
                        r |= ((a >> k) & 1) << (w - 1 - k);
                    }

                    return r;
                }

            case "bfind":
                {
                    var a = A();
                    if (IsSigned(t) && (long)a < 0)
                    {
                        a = ~a & Mask(w);
                    }

                    if (a == 0)
                    {
                        return 0xFFFF_FFFF;
                    }

                    var msb = 63 - BitOperations.LeadingZeroCount(a);
                    return (ulong)(i.Has("shiftamt") ? w - 1 - msb : msb);
                }

            case "bfe":
                {
                    var a = A();
                    var pos = (int)(Read(s[1], "u32") & 0xFF);
                    var len = (int)(Read(s[2], "u32") & 0xFF);
                    var msb = w - 1;
                    var sbit = !IsSigned(t) || len == 0 ? 0UL : (a >> Math.Min(pos + len - 1, msb)) & 1;
                    var d = 0UL;
                    for (var k = 0; k <= msb; k++)
                    {
                        var bit = k < len && pos + k <= msb ? (a >> (pos + k)) & 1 : sbit;
                        d |= bit << k;
                    }

                    return Extend(d, t);
                }

            case "bfi":
                {
                    var (a, f) = (A(), B());
                    var pos = (int)(Read(s[2], "u32") & 0xFF);
                    var len = (int)(Read(s[3], "u32") & 0xFF);
                    for (var k = 0; k < len && pos + k < w; k++)
                    {
                        f = (f & ~(1UL << (pos + k))) | (((a >> k) & 1) << (pos + k));
                    }

                    return f;
                }

            case "prmt":
                return Prmt((uint)A(), (uint)B(), (uint)C(), i.Mods.Length > 1 ? i.Mods[1] : "");
            default:
                throw new NotSupportedException($"the reference has no meaning for `{i}`");
        }
    }

    /// <summary>add.cc/addc, sub.cc/subc, mad.cc/madc: the flag read by the c forms, written by the .cc ones.</summary>
    private ulong CarryChain(Instr i, string t, int w)
    {
        var (a, b) = (Read(i.Srcs[0], t) & Mask(w), Read(i.Srcs[1], t) & Mask(w));
        var carryIn = i.Op.EndsWith('c') ? _carry : 0;
        UInt128 result;
        ulong carryOut;
        if (i.Op.StartsWith("sub", StringComparison.Ordinal))
        {
            result = (UInt128)a - b - carryIn;
            carryOut = (UInt128)a < (UInt128)b + carryIn ? 1UL : 0UL;
        }
        else
        {
            if (i.Op.StartsWith("mad", StringComparison.Ordinal))
            {
                var (sa, sb) = (Read(i.Srcs[0], t), Read(i.Srcs[1], t));
                (a, b) = ((i.Has("hi") ? MulHi(sa, sb, t) : sa * sb) & Mask(w), Read(i.Srcs[2], t) & Mask(w));
            }

            result = (UInt128)a + b + carryIn;
            carryOut = (ulong)(result >> w) & 1;
        }

        if (i.Has("cc"))
        {
            _carry = carryOut;
            _carryUnknown = false;
        }

        return Extend((ulong)result, t);
    }

    private static ulong MulHi(ulong a, ulong b, string t)
    {
        var w = Width(t);
        if (w < 64)
        {
            // Both operands are extended to 64 bits, where the 2w-bit product fits.
            return Extend((ulong)((long)a * (long)b) >> w, t);
        }

        return IsSigned(t) ? (ulong)(long)(((Int128)(long)a * (long)b) >> 64) : (ulong)(((UInt128)a * b) >> 64);
    }

    // Division by zero as nvcc's division sequence computes it on NVIDIA GPUs: the quotient has every bit set (-1 signed),
    // the remainder is the dividend; the most negative value divided by -1 wraps to itself, remainder 0.
    private static ulong Div(ulong a, ulong b, string t)
    {
        if (Extend(b, t) == 0)
        {
            return Extend(ulong.MaxValue, t);
        }

        if (!IsSigned(t))
        {
            return a / b;
        }

        var (sa, sb) = ((long)a, (long)b);
        return sb == -1 ? Extend(0 - a, t) : Extend((ulong)(sa / sb), t);
    }

    private static ulong Rem(ulong a, ulong b, string t)
    {
        if (b == 0)
        {
            return a;
        }

        if (!IsSigned(t))
        {
            return a % b;
        }

        var (sa, sb) = ((long)a, (long)b);
        return sb == -1 ? 0 : Extend((ulong)(sa % sb), t);
    }

    private static ulong Prmt(uint a, uint b, uint c, string mode)
    {
        var bytes = ((ulong)b << 32) | a;
        byte Byte(int k) => (byte)(bytes >> (8 * (k & 7)));
        var r = 0u;
        if (mode == "")
        {
            for (var k = 0; k < 4; k++)
            {
                var sel = (int)((c >> (4 * k)) & 0xF);
                var v = Byte(sel & 7);
                if ((sel & 8) != 0)
                {
                    v = (byte)((v & 0x80) != 0 ? 0xFF : 0);
                }

                r |= (uint)v << (8 * k);
            }

            return r;
        }

        // The ISA's table: for c[1:0], the source byte of d.b0 .. d.b3.
        var s = (int)(c & 3);
        int[] order = mode switch
        {
            "f4e" => [s, s + 1, s + 2, s + 3],
            "b4e" => [s, (s - 1) & 7, (s - 2) & 7, (s - 3) & 7],
            "rc8" => [s, s, s, s],
            "ecl" => [s, Math.Max(s, 1), Math.Max(s, 2), 3],
            "ecr" => [0, Math.Min(s, 1), Math.Min(s, 2), s],
            _ => (s & 1) == 0 ? [0, 1, 0, 1] : [2, 3, 2, 3],
        };
        for (var k = 0; k < 4; k++)
        {
            r |= (uint)Byte(order[k]) << (8 * k);
        }

        return r;
    }

    /// <summary>mov of a vector: two halves packed, the first in the low bits, or a register unpacked into its halves.</summary>
    private void ExecuteVectorMov(Instr i)
    {
        var half = Width(i.Type) / 2;
        var halfType = "b" + half.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (i.Dst2 is null)
        {
            var packed = Read(i.Srcs[0], halfType) | (Read(i.Srcs[1], halfType) << half);
            Write(i.Dst, i.Op == _wrongOp ? packed ^ 1 : packed);
            return;
        }

        var whole = Read(i.Srcs[0], i.Type);
        Write(i.Dst, whole & Mask(half));
        Write(i.Dst2, whole >> half);
    }

    // ---- selections and comparisons -----------------------------------------------------------------------------------

    /// <summary>
    /// slct.dtype.ctype d, a, b, c: a's bits where c &gt;= 0, else b's. An f32 c compares as a float (NaN is not &gt;= 0, -0
    /// is), after .ftz makes a subnormal c a zero of its sign.
    /// </summary>
    private ulong Slct(Instr i)
    {
        var takeA = i.SrcType == "f32" ? F32(i.Srcs[2], i) >= 0f : (long)Read(i.Srcs[2], "s32") >= 0;
        return Read(takeA ? i.Srcs[0] : i.Srcs[1], i.Type);
    }

    /// <summary>testp.op.type p, a: the class of a read from its exponent and fraction bits; both zeros count as normal.</summary>
    private ulong Testp(Instr i)
    {
        var (bits, exponentBits, fractionBits) = i.Type == "f32" ? (Read(i.Srcs[0], "b32"), 8, 23) : (Read(i.Srcs[0], "b64"), 11, 52);
        var exponent = (bits >> fractionBits) & Mask(exponentBits);
        var fraction = bits & Mask(fractionBits);
        var top = Mask(exponentBits);
        var (subnormal, infinite, nan) = (exponent == 0 && fraction != 0, exponent == top && fraction == 0, exponent == top && fraction != 0);
        var holds = i.Mods[0] switch
        {
            "finite" => !infinite && !nan,
            "infinite" => infinite,
            "number" => !nan,
            "notanumber" => nan,
            "normal" => !subnormal && !infinite && !nan,
            _ => subnormal,
        };
        return holds ? 1UL : 0UL;
    }

    private void ExecuteSetp(Instr i)
    {
        var t = i.Type;
        var cmp = i.Mods[0];
        bool result;
        if (IsFloat(t))
        {
            var (a, b) = t == "f32" ? (F32(i.Srcs[0], i), F32(i.Srcs[1], i)) : (F64(i.Srcs[0]), F64(i.Srcs[1]));
            var unordered = double.IsNaN(a) || double.IsNaN(b);
            result = cmp switch
            {
                "eq" => !unordered && a == b,
                "ne" => !unordered && a != b,
                "lt" => !unordered && a < b,
                "le" => !unordered && a <= b,
                "gt" => !unordered && a > b,
                "ge" => !unordered && a >= b,
                "equ" => unordered || a == b,
                "neu" => unordered || a != b,
                "ltu" => unordered || a < b,
                "leu" => unordered || a <= b,
                "gtu" => unordered || a > b,
                "geu" => unordered || a >= b,
                "num" => !unordered,
                _ => unordered,
            };
        }
        else
        {
            var (a, b) = (Read(i.Srcs[0], t), Read(i.Srcs[1], t));
            var (sa, sb) = ((long)a, (long)b);
            var signed = IsSigned(t);
            result = cmp switch
            {
                "eq" => a == b,
                "ne" => a != b,
                "lt" => signed ? sa < sb : a < b,
                "le" => signed ? sa <= sb : a <= b,
                "gt" => signed ? sa > sb : a > b,
                "ge" => signed ? sa >= sb : a >= b,
                "lo" => a < b,
                "ls" => a <= b,
                "hi" => a > b,
                _ => a >= b,
            };
        }

        var combine = i.Mods.FirstOrDefault(m => m is "and" or "or" or "xor");
        var c = combine is null ? 0UL : Read(i.Srcs[2], "pred");
        ulong Combined(bool v) => combine switch
        {
            "and" => (v ? 1UL : 0UL) & c,
            "or" => (v ? 1UL : 0UL) | c,
            "xor" => (v ? 1UL : 0UL) ^ c,
            _ => v ? 1UL : 0UL,
        };

        var p = Combined(result);
        var q = Combined(!result);
        if (_wrongOp == "setp")
        {
            p ^= 1;
        }

        Write(i.Dst, p);
        if (i.Dst2 is not null)
        {
            Write(i.Dst2, q);
        }
    }

    // ---- floats ------------------------------------------------------------------------------------------------------

    private ulong FloatOp(Instr i)
    {
        var r = RoundingOf(i);
        var s = i.Srcs;
        if (i.Type == "f32")
        {
            float A() => F32(s[0], i);
            float B() => F32(s[1], i);
            float C() => F32(s[2], i);
            float f = i.Op switch
            {
                "mov" => BitConverter.UInt32BitsToSingle((uint)Read(s[0], "b32")),
                "selp" => BitConverter.UInt32BitsToSingle((uint)(Read(s[2], "pred") != 0 ? Read(s[0], "b32") : Read(s[1], "b32"))),
                "add" => r == FloatRounding.Rn ? A() + B() : Fp32.Add(A(), B(), r),
                "sub" => r == FloatRounding.Rn ? A() - B() : Fp32.Sub(A(), B(), r),
                "mul" => r == FloatRounding.Rn ? A() * B() : Fp32.Mul(A(), B(), r),
                "fma" or "mad" => r == FloatRounding.Rn ? MathF.FusedMultiplyAdd(A(), B(), C()) : Fp32.Fma(A(), B(), C(), r),
                "div" => r == FloatRounding.Rn ? A() / B() : Fp32.Div(A(), B(), r),
                "rcp" => r == FloatRounding.Rn ? 1f / A() : Fp32.Rcp(A(), r),
                "sqrt" => r == FloatRounding.Rn ? MathF.Sqrt(A()) : Fp32.Sqrt(A(), r),
                "min" or "max" when i.Has("NaN") && (float.IsNaN(A()) || float.IsNaN(B())) => float.NaN,
                "min" => MinMax(A(), B(), min: true),
                "max" => MinMax(A(), B(), min: false),
                "abs" => BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(A()) & 0x7FFF_FFFF),
                "neg" => BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(A()) ^ 0x8000_0000),
                "copysign" => BitConverter.UInt32BitsToSingle((BitConverter.SingleToUInt32Bits(A()) & 0x8000_0000) | (BitConverter.SingleToUInt32Bits(B()) & 0x7FFF_FFFF)),
                _ => throw new NotSupportedException($"the reference has no meaning for `{i}`"),
            };
            return i.Op is "mov" or "selp" ? BitConverter.SingleToUInt32Bits(f) : Bits(f, i);
        }

        double D(int k) => F64(s[k]);
        double d = i.Op switch
        {
            "mov" => D(0),
            "selp" => Read(s[2], "pred") != 0 ? D(0) : D(1),
            "add" => r == FloatRounding.Rn ? D(0) + D(1) : Fp64.Add(D(0), D(1), r),
            "sub" => r == FloatRounding.Rn ? D(0) - D(1) : Fp64.Sub(D(0), D(1), r),
            "mul" => r == FloatRounding.Rn ? D(0) * D(1) : Fp64.Mul(D(0), D(1), r),
            "fma" or "mad" => r == FloatRounding.Rn ? Math.FusedMultiplyAdd(D(0), D(1), D(2)) : Fp64.Fma(D(0), D(1), D(2), r),
            "div" => r == FloatRounding.Rn ? D(0) / D(1) : Fp64.Div(D(0), D(1), r),
            "rcp" => r == FloatRounding.Rn ? 1.0 / D(0) : Fp64.Rcp(D(0), r),
            "sqrt" => r == FloatRounding.Rn ? Math.Sqrt(D(0)) : Fp64.Sqrt(D(0), r),
            "min" or "max" when i.Has("NaN") && (double.IsNaN(D(0)) || double.IsNaN(D(1))) => double.NaN,
            "min" => MinMax(D(0), D(1), min: true),
            "max" => MinMax(D(0), D(1), min: false),
            "abs" => BitConverter.UInt64BitsToDouble(BitConverter.DoubleToUInt64Bits(D(0)) & 0x7FFF_FFFF_FFFF_FFFF),
            "neg" => BitConverter.UInt64BitsToDouble(BitConverter.DoubleToUInt64Bits(D(0)) ^ 0x8000_0000_0000_0000),
            "copysign" => BitConverter.UInt64BitsToDouble((BitConverter.DoubleToUInt64Bits(D(0)) & 0x8000_0000_0000_0000) | (BitConverter.DoubleToUInt64Bits(D(1)) & 0x7FFF_FFFF_FFFF_FFFF)),
            _ => throw new NotSupportedException($"the reference has no meaning for `{i}`"),
        };
        return i.Op is "mov" or "selp" ? BitConverter.DoubleToUInt64Bits(d) : Bits(d, i);
    }

    /// <summary>min/max: a NaN operand yields the other operand, two NaNs a NaN; -0 is below +0.</summary>
    private static float MinMax(float a, float b, bool min) => (float)MinMax((double)a, b, min);

    private static double MinMax(double a, double b, bool min)
    {
        if (double.IsNaN(a))
        {
            return b;
        }

        if (double.IsNaN(b))
        {
            return a;
        }

        if (a == b)
        {
            return double.IsNegative(a) == min ? a : b;
        }

        return (a < b) == min ? a : b;
    }

    // ---- conversions -------------------------------------------------------------------------------------------------

    private ulong Cvt(Instr i)
    {
        var (to, from) = (i.Type, i.SrcType!);
        var src = i.Srcs[0];
        if (to == "f16" || from == "f16")
        {
            return CvtHalf(i, to, from, src);
        }

        if (!IsFloat(from) && !IsFloat(to))
        {
            var v = Read(src, from);
            if (i.Has("sat"))
            {
                v = Saturate(v, IsSigned(from), to);
            }

            return Extend(v, to);
        }

        if (!IsFloat(from))
        {
            var v = Read(src, from);
            var signed = IsSigned(from);
            var r = RoundingOf(i);
            if (to == "f32")
            {
                var f = r == FloatRounding.Rn
                    ? (signed ? ToF32((long)v) : ToF32(v))
                    : (signed ? PtxConvert.S64ToF32((long)v, r) : PtxConvert.U64ToF32(v, r));
                return Bits(f, i);
            }

            var d = r == FloatRounding.Rn
                ? (signed ? ToF64((long)v) : ToF64(v))
                : (signed ? PtxConvert.S64ToF64((long)v, r) : PtxConvert.U64ToF64(v, r));
            return Bits(d, i);
        }

        var x = from == "f32" ? (double)F32(src, i) : F64(src);
        if (!IsFloat(to))
        {
            // Float to integer: NaN is 0, everything else rounded as asked and clamped to the destination's range.
            if (double.IsNaN(x))
            {
                return 0;
            }

            return FloatToInt(RoundToInteger(x, i), to);
        }

        if (to == from)
        {
            var rounded = RoundToInteger(x, i);
            return to == "f32" ? Bits((float)rounded, i) : Bits(rounded, i);
        }

        if (to == "f64")
        {
            return Bits(x, i);
        }

        var r2 = RoundingOf(i);
        return Bits(r2 == FloatRounding.Rn ? (float)x : PtxConvert.F64ToF32(x, r2, ftz: false, sat: false), i);
    }

    /// <summary>
    /// Conversions to and from f16 (its bits in a 16-bit register): from f16 exact, then as from f32; to f16 from the exact
    /// value (an integer past 2^53 is far beyond f16's range, so its double is as good), a NaN as the canonical 0x7FFF.
    /// </summary>
    private ulong CvtHalf(Instr i, string to, string from, Operand src)
    {
        if (from == "f16")
        {
            var h = (double)BitConverter.UInt16BitsToHalf((ushort)Read(src, "b16"));
            if (to == "f32" || to == "f64")
            {
                return to == "f32" ? Bits((float)h, i) : Bits(h, i);
            }

            if (double.IsNaN(h))
            {
                return 0;
            }

            return FloatToInt(RoundToInteger(h, i), to);
        }

        var x = from switch
        {
            "f32" => (double)F32(src, i),
            "f64" => F64(src),
            _ => IsSigned(from) ? (double)(long)Read(src, from) : (double)Read(src, from),
        };
        var r = RoundingOf(i);
        var half = r == FloatRounding.Rn ? BitConverter.HalfToUInt16Bits((Half)x) : Half16.FromDouble(x, r);
        var value = (double)BitConverter.UInt16BitsToHalf(half);
        if (i.Has("sat"))
        {
            value = double.IsNaN(value) || value <= 0 ? 0 : Math.Min(value, 1);
            half = BitConverter.HalfToUInt16Bits((Half)value);
        }

        return double.IsNaN(value) ? 0x7FFFUL : half;
    }

    /// <summary>An integral value clamped to the integer type's range, as that type's bits extended to 64.</summary>
    private static ulong FloatToInt(double rounded, string to)
    {
        var w = Width(to);
        var (lo, hi) = IsSigned(to) ? (-Math.Pow(2, w - 1), Math.Pow(2, w - 1) - 1) : (0d, Math.Pow(2, w) - 1);
        if (rounded <= lo)
        {
            return Extend(IsSigned(to) ? 1UL << (w - 1) : 0, to);
        }

        if (rounded >= hi)
        {
            return IsSigned(to) ? Mask(w - 1) : Mask(w);
        }

        return Extend(IsSigned(to) ? (ulong)(long)rounded : (ulong)rounded, to);
    }

    private static double RoundToInteger(double x, Instr i)
        => i.Has("rni") ? Math.Round(x, MidpointRounding.ToEven) : i.Has("rzi") ? Math.Truncate(x) : i.Has("rmi") ? Math.Floor(x) : Math.Ceiling(x);

    /// <summary>An integer (extended from its source type) clamped to the range of <paramref name="to"/>.</summary>
    private static ulong Saturate(ulong v, bool signedFrom, string to)
    {
        var w = Width(to);
        var value = signedFrom ? (Int128)(long)v : (Int128)v;
        var (lo, hi) = IsSigned(to) ? (-((Int128)1 << (w - 1)), ((Int128)1 << (w - 1)) - 1) : (Int128.Zero, ((Int128)1 << w) - 1);
        return (ulong)Int128.Clamp(value, lo, hi);
    }

    /// <summary>An unsigned 64-bit integer to the nearest f32: rounded to odd at 53 bits first, so the second rounding is exact.</summary>
    private static float ToF32(ulong v)
    {
        if (v < (1UL << 53))
        {
            return (float)(double)v;
        }

        var shift = 64 - BitOperations.LeadingZeroCount(v) - 53;
        var top = (v >> shift) | ((v & Mask(shift)) != 0 ? 1UL : 0UL);
        return (float)((double)top * Math.Pow(2, shift));
    }

    private static float ToF32(long v) => v < 0 ? -ToF32(0 - (ulong)v) : ToF32((ulong)v);

    /// <summary>An unsigned 64-bit integer to the nearest f64: two exact halves added, so rounded once.</summary>
    private static double ToF64(ulong v) => ((double)(v >> 32) * 4294967296.0) + (double)(v & 0xFFFF_FFFF);

    private static double ToF64(long v) => v < 0 ? -ToF64(0 - (ulong)v) : ToF64((ulong)v);
}
