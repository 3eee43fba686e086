using System.Globalization;

namespace GpuPool.Ptx.Tests.Engine;

/// <summary>
/// Seeded random straight-line kernels over a few registers of every class, run by <see cref="Threads"/> threads with
/// inputs of their own drawn to hit the edges (zeros of both signs, extremes, NaN, infinities, subnormals, shift counts
/// past the width, division by zero). One program in four is drawn only from the forms the engine's vector code takes
/// (32-bit integer and f32 registers, the engine's <c>SimdCompiler</c>), so it runs eight threads at a time there and its
/// threads part ways where a guard differs between them.
/// </summary>
/// <remarks>
/// Float results are only ever read by instructions that read them as floats (never bit-cast to an integer), since PTX
/// leaves a single-precision NaN's payload unspecified. The approximate instructions are checked against their error
/// bounds by their own test, since an approximation cannot be compared bit for bit through a chain.
/// </remarks>
internal sealed class RandomPtxGenerator(Random random)
{
    /// <summary>Threads a program runs: two groups of eight for the vector code.</summary>
    public const int Threads = 16;

    private static readonly string[] IntTypes16 = ["u16", "s16"];
    private static readonly string[] IntTypes32 = ["u32", "s32"];
    private static readonly string[] IntTypes64 = ["u64", "s64"];
    private static readonly string[] FloatRoundings = ["rn", "rz", "rm", "rp"];
    private static readonly string[] IntRoundings = ["rni", "rzi", "rmi", "rpi"];
    private static readonly string[] FloatCompares = ["eq", "ne", "lt", "le", "gt", "ge", "equ", "neu", "ltu", "leu", "gtu", "geu", "num", "nan"];
    private static readonly string[] SignedCompares = ["eq", "ne", "lt", "le", "gt", "ge"];
    private static readonly string[] UnsignedCompares = ["eq", "ne", "lt", "le", "gt", "ge", "lo", "ls", "hi", "hs"];
    private static readonly string[] PrmtModes = ["", "f4e", "b4e", "rc8", "ecl", "ecr", "rc16"];
    private static readonly string[] CvtIntTypes = ["u8", "s8", "u16", "s16", "u32", "s32", "u64", "s64"];
    private static readonly string[] TestpProperties = ["finite", "infinite", "number", "notanumber", "normal", "subnormal"];

    private readonly List<Reg> _registers = [];

    private Reg[] Of(RegClass c) => [.. _registers.Where(r => r.Class == c)];

    public static RandomPtxProgram Generate(int seed, int minInstructions = 20, int maxInstructions = 60)
    {
        var random = new Random(seed);
        var forVectorCode = random.Next(4) == 0;
        return new RandomPtxGenerator(random).Build(random.Next(minInstructions, maxInstructions + 1), forVectorCode);
    }

    private RandomPtxProgram Build(int count, bool forVectorCode)
    {
        Declare(RegClass.Pred, ("pred", "%p", 4));
        if (!forVectorCode)
        {
            Declare(RegClass.B16, ("b16", "%h", 2), ("u16", "%hu", 1), ("s16", "%hs", 1));
        }

        Declare(RegClass.B32, ("b32", "%r", 2), ("u32", "%ru", 2), ("s32", "%ri", 2));
        if (!forVectorCode)
        {
            Declare(RegClass.B64, ("b64", "%rd", 2), ("u64", "%rdu", 2), ("s64", "%rdi", 2));
        }

        Declare(RegClass.F32, ("f32", "%f", 6));
        if (!forVectorCode)
        {
            Declare(RegClass.F64, ("f64", "%fd", 5));
        }

        // A register is now and then the same in every thread, so guards on it (and what is computed from it) do not part them;
        // in a program for the vector code most predicates are, so that its threads go on together for longer.
        var columns = _registers.Select(r => Chance(forVectorCode && r.Class == RegClass.Pred ? 75 : 30)
            ? Enumerable.Repeat(InputFor(r), Threads).ToArray()
            : Enumerable.Range(0, Threads).Select(_ => InputFor(r)).ToArray()).ToArray();
        // In a program for the vector code some registers are computed in the kernel rather than loaded: integers that
        // step by a constant from thread to thread (the vector code keeps those as one scalar, and what add, sub, mul,
        // mad and shl make of them stays one), floats and predicates the same in every thread (a scalar each). Their
        // values start near the edges, so a 32-bit one may wrap inside a group of eight.
        var computed = new Dictionary<int, (ulong Start, ulong Stride)>();
        if (forVectorCode)
        {
            foreach (var r in _registers)
            {
                var same = columns[r.Slot].Distinct().Count() == 1;
                if (r.Class == RegClass.B32 && Chance(35))
                {
                    var start = Chance(50) ? InputFor(r) : Pick(new ulong[] { 0xFFFF_FFF8, 0xFFFF_FFFC, 0x7FFF_FFFA, 0x8000_0000, 0 });
                    var stride = Pick(new ulong[] { 0, 1, 4, 16, 0xFFFF_FFFF, 0xFFFF_FFFD, 0x4000_0000, 0x8000_0000, (ulong)random.Next() });
                    computed[r.Slot] = (start, stride);
                    columns[r.Slot] = [.. Enumerable.Range(0, Threads).Select(t => (start + (stride * (ulong)t)) & 0xFFFF_FFFF)];
                }
                else if (r.Class is RegClass.F32 or RegClass.Pred && same && Chance(50))
                {
                    computed[r.Slot] = (columns[r.Slot][0], 0);
                }
            }
        }

        var inputs = Enumerable.Range(0, Threads).Select(t => columns.Select(c => c[t]).ToArray()).ToArray();
        var instructions = new List<Instr>();
        while (instructions.Count < count)
        {
            var i = forVectorCode ? NextForVectorCode() : Next();
            if (random.Next(6) == 0 && !i.StartsCarryChain)
            {
                i = i with { Guard = new RegOperand(Pick(Of(RegClass.Pred)), random.Next(2) == 0) };
            }

            instructions.Add(i);
        }

        return new RandomPtxProgram(_registers, instructions, inputs) { ForVectorCode = forVectorCode, Computed = computed };
    }

    private void Declare(RegClass c, params (string Type, string Prefix, int Count)[] groups)
    {
        foreach (var (type, prefix, n) in groups)
        {
            for (var k = 0; k < n; k++)
            {
                _registers.Add(new Reg(_registers.Count, c, prefix + k, type));
            }
        }
    }

    private T Pick<T>(IReadOnlyList<T> items) => items[random.Next(items.Count)];

    private bool Chance(int percent) => random.Next(100) < percent;

    private static bool IsFloatType(string type) => type is "f32" or "f64";

    private static RegClass IntClass(string type) => type[1..] switch { "8" or "16" => RegClass.B16, "32" => RegClass.B32, _ => RegClass.B64 };

    private static RegClass ClassOf(string type) => type switch { "f32" => RegClass.F32, "f64" => RegClass.F64, "pred" => RegClass.Pred, _ => IntClass(type) };

    private Reg Dest(string type) => Pick(Of(ClassOf(type)));

    /// <summary>A source of the type: mostly a register, sometimes an immediate.</summary>
    private Operand Src(string type, bool immediates = true)
    {
        var c = ClassOf(type);
        if (immediates && c != RegClass.Pred && Chance(15))
        {
            return c switch
            {
                RegClass.F32 => new Imm(BitConverter.SingleToUInt32Bits(Pick(NiceFloats)), "f32"),
                RegClass.F64 => new Imm(BitConverter.DoubleToUInt64Bits(Pick(NiceFloats)), "f64"),
                _ when type[0] == 's' && Chance(40) => new Imm((ulong)(long)-random.Next(1, 200), type),
                RegClass.B16 => new Imm((ulong)random.Next(0, 0x1_0000) & (Chance(50) ? 0xFFFFUL : 0x1FUL), type),
                RegClass.B32 => new Imm((ulong)random.NextInt64(0, 1L << 32) & (Chance(50) ? 0xFFFF_FFFFUL : 0x3FUL), type),
                _ => new Imm((ulong)random.NextInt64(0, long.MaxValue) & (Chance(50) ? 0x7FFF_FFFF_FFFF_FFFFUL : 0x7FUL), type),
            };
        }

        return new RegOperand(Pick(Of(c)));
    }

    /// <summary>A u32 operand (shift count, bit position or length): small immediates or any 32-bit register.</summary>
    private Operand U32Src() => Chance(30) ? new Imm((ulong)random.Next(0, 80), "u32") : new RegOperand(Pick(Of(RegClass.B32)));

    private static readonly float[] NiceFloats = [0f, 1f, -1f, 0.5f, 2f, -3.25f, 1e-3f, 65504f, 1e30f];

    private Instr Next() => random.Next(100) switch
    {
        < 18 => IntArithmetic(),
        < 20 => Int24AndSad(),
        < 22 => CarryChain(),
        < 32 => Bits(),
        < 42 => Setp(),
        < 47 => Selp(),
        < 64 => Cvt(),
        < 90 => FloatArithmetic(),
        < 94 => PredicateLogic(),
        _ => Mov(),
    };

    /// <summary>
    /// An instruction of a form the vector code takes (SimdCompiler's table): 32-bit integer arithmetic without .sat or
    /// carries, shifts by constants under 32, the six ordered comparisons into one predicate, f32 arithmetic rounded to
    /// nearest without .ftz or .sat, selp, predicate logic, cvt.rn.f32.s32 and mov.
    /// </summary>
    private Instr NextForVectorCode()
    {
        var type = Pick(IntTypes32);
        switch (random.Next(100))
        {
            case < 8:
                return Binary(Chance(50) ? "add" : "sub", [type], type);
            case < 14:
                return Chance(50)
                    ? Binary("mul", ["lo", type], type)
                    : new Instr("mad", ["lo", type], type, Dest(type), [Src(type), Src(type), Src(type)]);
            case < 18:
                return Binary(Chance(50) ? "min" : "max", [type], type);
            case < 24:
                return Chance(75) ? Binary(Pick(new[] { "and", "or", "xor" }), ["b32"], "b32") : new Instr("not", ["b32"], "b32", Dest("b32"), [Src("b32", immediates: false)]);
            case < 28:
                return new Instr(Chance(50) ? "neg" : "abs", ["s32"], "s32", Dest("s32"), [Src("s32", immediates: false)]);
            case < 34:
                {
                    var shl = Chance(40);
                    var t = shl ? "b32" : Pick(new[] { "b32", "u32", "s32" });
                    return new Instr(shl ? "shl" : "shr", [t], t, Dest(t), [Src(t), new Imm((ulong)random.Next(0, 32), "u32")]);
                }

            case < 48:
                {
                    // The six ordered comparisons (SignedCompares) are all the vector code has: not lo/ls/hi/hs, nor the unordered ones.
                    var (t, cmp) = random.Next(4) switch
                    {
                        0 => ("b32", Pick(new[] { "eq", "ne" })),
                        1 => ("u32", Pick(SignedCompares)),
                        2 => ("s32", Pick(SignedCompares)),
                        _ => ("f32", Pick(SignedCompares)),
                    };
                    return new Instr("setp", [cmp, t], t, Pick(Of(RegClass.Pred)), [Src(t), Src(t)]);
                }

            case < 56:
                {
                    var t = Pick(new[] { "b32", "u32", "s32", "f32" });
                    return new Instr("selp", [t], t, Dest(t), [Src(t), Src(t), new RegOperand(Pick(Of(RegClass.Pred)))]);
                }

            case < 60:
                return new Instr("cvt", ["rn", "f32", "s32"], "f32", Dest("f32"), [new RegOperand(Dest("s32"))]) { SrcType = "s32" };
            case < 90:
                {
                    var (op, arity) = random.Next(10) switch
                    {
                        < 3 => (Pick(new[] { "add", "sub", "mul" }), 2),
                        3 or 4 => (Chance(75) ? "fma" : "mad", 3),
                        5 => ("div", 2),
                        6 => (Pick(new[] { "min", "max" }), 2),
                        7 => (Pick(new[] { "abs", "neg" }), 1),
                        _ => ("sqrt", 1),
                    };

                    // add/sub/mul with no rounding are .rn too; fma, mad, div and sqrt must name it.
                    var rounded = op is "fma" or "mad" or "div" or "sqrt" || (op is "add" or "sub" or "mul" && Chance(50));
                    string[] mods = rounded ? ["rn", "f32"] : ["f32"];
                    var srcs = Enumerable.Range(0, arity).Select(_ => Src("f32", immediates: op is not ("abs" or "neg" or "sqrt"))).ToArray();
                    return new Instr(op, mods, "f32", Dest("f32"), srcs);
                }

            case < 95:
                {
                    var d = Pick(Of(RegClass.Pred));
                    return Chance(25)
                        ? new Instr("not", ["pred"], "pred", d, [Src("pred")])
                        : new Instr(Pick(new[] { "and", "or", "xor" }), ["pred"], "pred", d, [Src("pred"), Src("pred")]);
                }

            default:
                {
                    var t = Pick(new[] { "b32", "u32", "s32", "f32", "pred" });
                    return new Instr("mov", [t], t, Dest(t), [Src(t)]);
                }
        }
    }

    private string IntType() => Pick(random.Next(3) switch { 0 => IntTypes16, 1 => IntTypes32, _ => IntTypes64 });

    private Instr Binary(string op, string[] mods, string type) => new(op, mods, type, Dest(type), [Src(type), Src(type)]);

    private Instr IntArithmetic()
    {
        var type = IntType();
        switch (random.Next(14))
        {
            case 0:
                return Binary("add", [type], type);
            case 1:
                return Binary("sub", [type], type);
            case 2:
                return Chance(50) ? Binary("add", ["sat", "s32"], "s32") : Binary("sub", ["sat", "s32"], "s32");
            case 3:
                return Binary("mul", ["lo", type], type);
            case 4:
                return Binary("mul", ["hi", type], type);
            case 5 or 6:
                {
                    var narrow = Pick(random.Next(2) == 0 ? IntTypes16 : IntTypes32);
                    var wide = narrow[0] + (narrow[1..] == "16" ? "32" : "64");
                    return random.Next(2) == 0
                        ? new Instr("mul", ["wide", narrow], narrow, Dest(wide), [Src(narrow), Src(narrow)])
                        : new Instr("mad", ["wide", narrow], narrow, Dest(wide), [Src(narrow), Src(narrow), Src(wide)]);
                }

            case 7:
                {
                    var hi = Chance(50);
                    string[] mods = hi && type == "s32" && Chance(40) ? ["hi", "sat", "s32"] : [hi ? "hi" : "lo", type];
                    return new Instr("mad", mods, type, Dest(type), [Src(type), Src(type), Src(type)]);
                }
            case 8:
                return Binary(Chance(50) ? "div" : "rem", [type], type);
            case 9:
                return Binary(Chance(50) ? "min" : "max", [type], type);
            case 10:
                {
                    var bits = "b" + type[1..];
                    return Binary(Pick(new[] { "and", "or", "xor" }), [bits], bits);
                }

            case 11:
                {
                    var bits = "b" + type[1..];
                    return new Instr(Chance(50) ? "not" : "cnot", [bits], bits, Dest(bits), [Src(bits, immediates: false)]);
                }

            case 12:
                {
                    var shl = Chance(40);
                    var t = shl ? "b" + type[1..] : Pick(new[] { type, "b" + type[1..] });
                    return new Instr(shl ? "shl" : "shr", [t], t, Dest(t), [Src(t), U32Src()]);
                }

            default:
                {
                    var t = "s" + type[1..];
                    return Chance(50)
                        ? new Instr("neg", [t], t, Dest(t), [Src(t, immediates: false)])
                        : new Instr("abs", [t], t, Dest(t), [Src(t, immediates: false)]);
                }
        }
    }

    private Instr Int24AndSad()
    {
        var type = Pick(IntTypes32);
        switch (random.Next(3))
        {
            case 0:
                return Binary("mul24", [Chance(50) ? "lo" : "hi", type], type);
            case 1:
                {
                    var hi = Chance(50);
                    string[] mods = hi && type == "s32" && Chance(40) ? ["hi", "sat", type] : [hi ? "hi" : "lo", type];
                    return new Instr("mad24", mods, type, Dest(type), [Src(type), Src(type), Src(type)]);
                }

            default:
                {
                    var t = IntType();
                    return new Instr("sad", [t], t, Dest(t), [Src(t), Src(t), Src(t)]);
                }
        }
    }

    // The carry flag's family: a chain of adds (and mads) or of subtracts, never the two mixed, since PTX calls the flag a
    // carry for one and a borrow for the other. Nothing reads it before an unguarded instruction sets it.
    private string? _carryFamily;

    private Instr CarryChain()
    {
        var type = Pick(new[] { "u32", "s32", "u64", "s64" });
        var family = _carryFamily ?? (Chance(50) ? "add" : "sub");
        var carryIn = _carryFamily is not null && Chance(60);
        var carryOut = !carryIn || Chance(60);
        if (Chance(30) && _carryFamily is not null)
        {
            family = family == "add" ? "sub" : "add";
            carryIn = false;
            carryOut = true;
        }

        var mad = family == "add" && Chance(35);
        var op = (mad ? "mad" : family) + (carryIn ? "c" : "");
        var mods = new List<string>();
        if (mad)
        {
            mods.Add(Chance(50) ? "lo" : "hi");
        }

        if (carryOut)
        {
            mods.Add("cc");
            _carryFamily = family;
        }

        mods.Add(type);
        Operand[] srcs = mad ? [Src(type), Src(type), Src(type)] : [Src(type), Src(type)];

        // The instruction that starts a chain must run: a guard could leave the flag unset.
        return new Instr(op, [.. mods], type, Dest(type), srcs) { Guard = null, StartsCarryChain = carryOut && !carryIn };
    }

    private Instr Bits()
    {
        var wide = Chance(50);
        var bits = wide ? "b64" : "b32";
        switch (random.Next(6))
        {
            case 0:
                return new Instr(Pick(new[] { "popc", "clz" }), [bits], bits, Dest("b32"), [Src(bits, immediates: false)]);
            case 1:
                return new Instr("brev", [bits], bits, Dest(bits), [Src(bits, immediates: false)]);
            case 2:
                {
                    var t = Pick(wide ? IntTypes64 : IntTypes32);
                    return new Instr("bfind", Chance(30) ? ["shiftamt", t] : [t], t, Dest("b32"), [Src(t, immediates: false)]);
                }

            case 3:
                {
                    var t = Pick(wide ? IntTypes64 : IntTypes32);
                    return new Instr("bfe", [t], t, Dest(t), [Src(t), U32Src(), U32Src()]);
                }

            case 4:
                return new Instr("bfi", [bits], bits, Dest(bits), [Src(bits), Src(bits), U32Src(), U32Src()]);
            default:
                {
                    var mode = Pick(PrmtModes);
                    var selector = Chance(50) ? new Imm((ulong)random.NextInt64(0, 1L << 32), "b32") : Src("b32", immediates: false);
                    return new Instr("prmt", mode == "" ? ["b32"] : ["b32", mode], "b32", Dest("b32"), [Src("b32", immediates: false), Src("b32", immediates: false), selector]);
                }
        }
    }

    private Instr Setp()
    {
        if (Chance(15))
        {
            var t = Pick(new[] { "f32", "f64" });
            return new Instr("testp", [Pick(TestpProperties), t], t, Pick(Of(RegClass.Pred)), [new RegOperand(Dest(t))]);
        }

        string type;
        string cmp;
        switch (random.Next(4))
        {
            case 0:
                type = Pick(new[] { "f32", "f64" });
                cmp = Pick(FloatCompares);
                break;
            case 1:
                type = "b" + IntType()[1..];
                cmp = Pick(new[] { "eq", "ne" });
                break;
            default:
                type = IntType();
                cmp = Pick(type[0] == 's' ? SignedCompares : UnsignedCompares);
                break;
        }

        var mods = new List<string> { cmp };
        var srcs = new List<Operand> { Src(type), Src(type) };
        if (Chance(40))
        {
            mods.Add(Pick(new[] { "and", "or", "xor" }));
            srcs.Add(new RegOperand(Pick(Of(RegClass.Pred)), Chance(40)));
        }

        if (type == "f32" && Chance(20))
        {
            mods.Add("ftz");
        }

        mods.Add(type);
        var preds = Of(RegClass.Pred);
        var p = Pick(preds);
        var q = Chance(30) ? Pick(preds.Where(r => r != p).ToArray()) : null;
        if (q is not null && srcs.Count == 3 && Chance(30))
        {
            // The combining predicate one of the destinations: both results must use its value from before.
            srcs[2] = new RegOperand(Chance(50) ? p : q, ((RegOperand)srcs[2]).Negated);
        }

        return new Instr("setp", [.. mods], type, p, [.. srcs]) { Dst2 = q };
    }

    private Instr Selp()
    {
        var type = Pick(new[] { "b16", "u16", "s16", "b32", "u32", "s32", "b64", "u64", "s64", "f32", "f64" });
        if (Chance(40))
        {
            // slct: a or b by the sign of an s32 or f32 selector (.ftz only with f32).
            var selector = Chance(50) ? "s32" : "f32";
            string[] mods = selector == "f32" && Chance(30) ? ["ftz", type, selector] : [type, selector];
            return new Instr("slct", mods, type, Dest(type), [Src(type), Src(type), Src(selector)]) { SrcType = selector };
        }

        return new Instr("selp", [type], type, Dest(type), [Src(type), Src(type), new RegOperand(Pick(Of(RegClass.Pred)))]);
    }

    private Instr Mov()
    {
        if (Chance(40))
        {
            // Packing two halves into a register, or unpacking one: mov.b32 %r, {%h, %h}; mov.b64 {%r, %r}, %rd.
            var wide = Chance(50);
            var (whole, half) = wide ? (RegClass.B64, RegClass.B32) : (RegClass.B32, RegClass.B16);
            var bits = wide ? "b64" : "b32";
            if (Chance(50))
            {
                return new Instr("mov", [bits], bits, Pick(Of(whole)), [new RegOperand(Pick(Of(half))), new RegOperand(Pick(Of(half)))]) { Vector = true };
            }

            var halves = Of(half);
            var lo = Pick(halves);
            return new Instr("mov", [bits], bits, lo, [new RegOperand(Pick(Of(whole)))]) { Vector = true, Dst2 = Pick(halves.Where(r => r != lo).ToArray()) };
        }

        var type = Pick(new[] { "b16", "u32", "s64", "f32", "f64", "pred" });
        return new Instr("mov", [type], type, Dest(type), [Src(type)]);
    }

    private Instr PredicateLogic()
    {
        var d = Pick(Of(RegClass.Pred));
        return Chance(25)
            ? new Instr("not", ["pred"], "pred", d, [Src("pred")])
            : new Instr(Pick(new[] { "and", "or", "xor" }), ["pred"], "pred", d, [Src("pred"), Src("pred")]);
    }

    /// <summary>A register for an f16 operand: ptxas takes one declared .b16 (or .f16), not .u16 or .s16.</summary>
    private Reg HalfReg() => Pick(Of(RegClass.B16).Where(r => r.DeclaredType == "b16").ToArray());

    /// <summary>Whether every value of integer type <paramref name="from"/> is one of <paramref name="to"/> (ptxas then refuses cvt.sat).</summary>
    private static bool Holds(string to, string from)
    {
        var (wt, wf) = (int.Parse(to[1..], CultureInfo.InvariantCulture), int.Parse(from[1..], CultureInfo.InvariantCulture));
        return (to[0], from[0]) switch
        {
            ('s', 's') or ('u', 'u') => wt >= wf,
            ('s', 'u') => wt > wf,
            _ => false,
        };
    }

    /// <summary>A register for an integer cvt operand: an 8-bit type lives in a 16- or 32-bit register.</summary>
    private Reg CvtIntReg(string type) => type[1..] == "8" ? Pick(Of(Chance(50) ? RegClass.B16 : RegClass.B32)) : Dest(type);

    private Instr Cvt()
    {
        switch (random.Next(5))
        {
            case 4:
                {
                    // Half precision in a 16-bit register: to it from floats and integers, from it to floats and integers.
                    var other = Pick(new[] { "f32", "f64", "f32", "f64", Pick(CvtIntTypes) });
                    var toHalf = Chance(50);
                    var (to, from) = toHalf ? ("f16", other) : (other, "f16");
                    var mods = new List<string>();
                    if (toHalf || to == "f16")
                    {
                        mods.Add(Pick(FloatRoundings));
                    }
                    else if (!IsFloatType(to))
                    {
                        mods.Add(Pick(IntRoundings));
                    }

                    if (Chance(15))
                    {
                        mods.Add("sat");
                    }

                    mods.AddRange([to, from]);
                    var dst = to == "f16" ? HalfReg() : IsFloatType(to) ? Dest(to) : CvtIntReg(to);
                    var src = from == "f16" ? HalfReg() : IsFloatType(from) ? Dest(from) : CvtIntReg(from);
                    return new Instr("cvt", [.. mods], to, dst, [new RegOperand(src)]) { SrcType = from };
                }

            case 0:
                {
                    var (to, from) = (Pick(CvtIntTypes), Pick(CvtIntTypes));
                    var sat = Chance(40) && !Holds(to, from);
                    return new Instr("cvt", sat ? ["sat", to, from] : [to, from], to, CvtIntReg(to), [new RegOperand(CvtIntReg(from))]) { SrcType = from };
                }

            case 1:
                {
                    var (to, from) = (Pick(new[] { "f32", "f64" }), Pick(CvtIntTypes));
                    var mods = new List<string> { Pick(FloatRoundings) };
                    if (to == "f32" && Chance(15))
                    {
                        mods.Add("ftz");
                    }

                    if (Chance(15))
                    {
                        mods.Add("sat");
                    }

                    mods.AddRange([to, from]);
                    return new Instr("cvt", [.. mods], to, Dest(to), [new RegOperand(CvtIntReg(from))]) { SrcType = from };
                }

            case 2:
                {
                    var (to, from) = (Pick(CvtIntTypes), Pick(new[] { "f32", "f64" }));
                    var mods = new List<string> { Pick(IntRoundings) };
                    if (from == "f32" && Chance(25))
                    {
                        mods.Add("ftz");
                    }

                    if (Chance(20))
                    {
                        mods.Add("sat");
                    }

                    mods.AddRange([to, from]);
                    return new Instr("cvt", [.. mods], to, CvtIntReg(to), [new RegOperand(Dest(from))]) { SrcType = from };
                }

            default:
                {
                    var (to, from) = random.Next(4) switch { 0 => ("f64", "f32"), 1 => ("f32", "f64"), 2 => ("f32", "f32"), _ => ("f64", "f64") };
                    var mods = new List<string>();
                    if (to != from && to == "f32")
                    {
                        mods.Add(Pick(FloatRoundings));
                    }
                    else if (to == from)
                    {
                        mods.Add(Pick(IntRoundings));
                    }

                    if ((to == "f32" || from == "f32") && Chance(25))
                    {
                        mods.Add("ftz");
                    }

                    if (Chance(20))
                    {
                        mods.Add("sat");
                    }

                    mods.AddRange([to, from]);
                    return new Instr("cvt", [.. mods], to, Dest(to), [new RegOperand(Dest(from))]) { SrcType = from };
                }
        }
    }

    private Instr FloatArithmetic()
    {
        var type = Chance(55) ? "f32" : "f64";
        var f32 = type == "f32";
        var mods = new List<string>();
        string op;
        var arity = 2;
        switch (random.Next(13))
        {
            case 12:
                op = "copysign";
                break;
            case 0 or 1 or 2:
                op = Pick(new[] { "add", "sub", "mul" });
                mods.Add(Pick(FloatRoundings));
                break;
            case 3 or 4:
                op = Chance(75) ? "fma" : "mad";
                mods.Add(Pick(FloatRoundings));
                arity = 3;
                break;
            case 5:
                op = "div";
                mods.Add(Pick(FloatRoundings));
                break;
            case 6 or 7:
                op = Pick(new[] { "min", "max" });
                break;
            case 8:
                op = Pick(new[] { "abs", "neg" });
                arity = 1;
                break;
            case 9 or 10:
                op = "sqrt";
                mods.Add(Pick(FloatRoundings));
                arity = 1;
                break;
            default:
                op = "rcp";
                mods.Add(Pick(FloatRoundings));
                arity = 1;
                break;
        }

        if (f32 && op != "copysign" && Chance(25))
        {
            mods.Add("ftz");
        }

        if (f32 && op is "min" or "max" && Chance(30))
        {
            mods.Add("NaN");
        }

        if (f32 && op is "add" or "sub" or "mul" or "fma" or "mad" && Chance(20))
        {
            mods.Add("sat");
        }

        mods.Add(type);
        var srcs = Enumerable.Range(0, arity).Select(_ => Src(type, immediates: op is not ("abs" or "neg" or "sqrt" or "rcp"))).ToArray();
        return new Instr(op, [.. mods], type, Dest(type), srcs);
    }

    // ---- inputs ----------------------------------------------------------------------------------------------------

    private ulong InputFor(Reg r) => r.Class switch
    {
        RegClass.Pred => (ulong)random.Next(2),
        RegClass.B16 => IntInput() & 0xFFFF,
        RegClass.B32 => IntInput() & 0xFFFF_FFFF,
        RegClass.B64 => IntInput(),
        RegClass.F32 => BitConverter.SingleToUInt32Bits(FloatInput()),
        _ => BitConverter.DoubleToUInt64Bits(DoubleInput()),
    };

    private ulong IntInput()
    {
        switch (random.Next(8))
        {
            case 0:
                return Pick(new ulong[] { 0, 1, 2, 3, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65 });
            case 1:
                return Pick(new ulong[] { ulong.MaxValue, 0x8000, 0x7FFF, 0xFFFF, 0x8000_0000, 0x7FFF_FFFF, 0xFFFF_FFFF, 0x8000_0000_0000_0000, 0x7FFF_FFFF_FFFF_FFFF });
            case 2:
                return (ulong)(long)random.Next(-100, 100);
            case 3:
                return 1UL << random.Next(64);
            default:
                return (ulong)random.NextInt64() ^ ((ulong)random.Next(2) << 63);
        }
    }

    private float FloatInput() => random.Next(10) switch
    {
        0 => Pick(new[] { 0f, -0f, float.NaN, float.PositiveInfinity, float.NegativeInfinity, float.Epsilon, -float.Epsilon, float.MaxValue, float.MinValue }),
        1 => BitConverter.UInt32BitsToSingle((uint)random.Next(1, 0x80_0000) | (random.Next(2) == 0 ? 0 : 0x8000_0000)),
        2 => random.Next(-40, 41) / 4f,
        3 => (random.Next(-1000, 1000) + 0.5f) * (random.Next(2) == 0 ? 1f : 1e6f),
        4 => BitConverter.UInt32BitsToSingle((uint)random.NextInt64(0, 1L << 32)),
        _ => (float)((random.NextDouble() - 0.5) * Math.Pow(2, random.Next(-30, 70))),
    };

    private double DoubleInput() => random.Next(10) switch
    {
        0 => Pick(new[] { 0d, -0d, double.NaN, double.PositiveInfinity, double.NegativeInfinity, double.Epsilon, double.MaxValue, 1e-310 }),
        1 => FloatInput(),
        2 => random.Next(-40, 41) / 4d,
        3 => BitConverter.Int64BitsToDouble(random.NextInt64()),
        4 => (double)random.NextInt64() * (random.Next(2) == 0 ? 1 : -1),
        _ => (random.NextDouble() - 0.5) * Math.Pow(2, random.Next(-60, 130)),
    };
}
