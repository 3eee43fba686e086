using System.Reflection.Emit;
using GpuPool.Ptx.Semantics;
using GpuPool.Ptx.Syntax;
using PtxConvert = GpuPool.Ptx.Semantics.Convert;

namespace GpuPool.Ptx.Engine;

/// <summary>Arithmetic, comparison, conversion, bit and atomic instructions, and barriers.</summary>
internal sealed partial class KernelCompiler
{
    private void EmitBinary(PtxInstruction i)
    {
        RequireOperands(i, 3);
        var type = TypeOf(i);
        var (d, a, b) = (i.Operands[0], i.Operands[1], i.Operands[2]);
        if (i.Has("cc") || i.Opcode is "addc" or "subc")
        {
            EmitCarryChain(i);
            return;
        }

        if (IsFloat(type))
        {
            var ops = FloatOps(type);
            var t = ClrType(type);
            LoadFloat(i, a, type);
            LoadFloat(i, b, type);
            var rounding = Rounding(i);
            switch (i.Opcode)
            {
                case "add" or "sub" or "mul" when rounding == FloatRounding.Rn:
                    _il.Emit(i.Opcode == "add" ? OpCodes.Add : i.Opcode == "sub" ? OpCodes.Sub : OpCodes.Mul);
                    break;
                case "add" or "sub" or "mul":
                    _il.Emit(OpCodes.Ldc_I4, (int)rounding);
                    Call(ops, i.Opcode == "add" ? "Add" : i.Opcode == "sub" ? "Sub" : "Mul", t, t, typeof(FloatRounding));
                    break;
                case "div" when i.Has("approx") && type == "f32":
                    Call(ops, "DivApprox", t, t);
                    break;
                case "div" when i.Has("full") && type == "f32":
                    Call(ops, "DivFull", t, t);
                    break;
                case "div" when rounding == FloatRounding.Rn:
                    _il.Emit(OpCodes.Div);
                    break;
                case "div":
                    _il.Emit(OpCodes.Ldc_I4, (int)rounding);
                    Call(ops, "Div", t, t, typeof(FloatRounding));
                    break;
                case "min" or "max":
                    Call(ops, (i.Opcode == "min" ? "Min" : "Max") + (i.Has("NaN") ? "NaN" : ""), t, t);
                    break;
                case "copysign":
                    Call(ops, "Copysign", t, t);
                    break;
                default:
                    throw Refuse($"{i.Opcode} on .{type}");
            }

            StoreFloat(i, d, type);
            return;
        }

        if (IsHalf(type))
        {
            EmitHalfArithmetic(i);
            return;
        }

        if (type == "pred" && i.Opcode is "and" or "or" or "xor")
        {
            Load(a, "pred");
            Load(b, "pred");
            _il.Emit(i.Opcode == "and" ? OpCodes.And : i.Opcode == "or" ? OpCodes.Or : OpCodes.Xor);
            Store(d, "pred");
            return;
        }

        var clr = ClrType(type);
        if (i.Opcode == "mul" && i.Has("wide"))
        {
            var wide = type switch { "s32" => "s64", "u32" => "u64", "s16" => "s32", "u16" => "u32", _ => throw Refuse("mul.wide of that type") };
            Load(a, type);
            Convert(KindOf(type, i.Line), KindOf(wide, i.Line), IsSigned(type));
            Load(b, type);
            Convert(KindOf(type, i.Line), KindOf(wide, i.Line), IsSigned(type));
            _il.Emit(OpCodes.Mul);
            Store(d, wide);
            return;
        }

        Load(a, type);
        Load(b, type);
        switch (i.Opcode)
        {
            case "add" when i.Has("sat"):
                Call(typeof(IntOps), "AddSat", typeof(int), typeof(int));
                break;
            case "sub" when i.Has("sat"):
                Call(typeof(IntOps), "SubSat", typeof(int), typeof(int));
                break;
            case "add":
                _il.Emit(OpCodes.Add);
                break;
            case "sub":
                _il.Emit(OpCodes.Sub);
                break;
            case "mul" when i.Has("hi") && BitsOf(type) == 16:
                EmitMulHi16(type);
                break;
            case "mul" when i.Has("hi"):
                Call(typeof(IntOps), "MulHi", clr, clr);
                break;
            case "mul":
                _il.Emit(OpCodes.Mul);
                break;
            case "div" or "rem" when BitsOf(type) >= 32:
                var name = (i.Opcode == "div" ? "Div" : "Rem") + (IsSigned(type) ? "S" : "U") + BitsOf(type);
                Call(typeof(IntOps), name, clr, clr);
                break;
            case "div" or "rem" when BitsOf(type) == 16:
                // 16-bit operands are loaded extended to 32 bits, where the division's low half is the 16-bit one, by zero included.
                Call(typeof(IntOps), (i.Opcode == "div" ? "Div" : "Rem") + (IsSigned(type) ? "S32" : "U32"), Extended(type), Extended(type));
                break;
            case "min" or "max" when BitsOf(type) == 16 && !i.Has("relu"):
                Call(typeof(IntOps), i.Opcode == "min" ? "Min" : "Max", Extended(type), Extended(type));
                break;
            case "min" or "max" when BitsOf(type) >= 32:
                Call(typeof(IntOps), (i.Opcode == "min" ? "Min" : "Max") + (i.Has("relu") ? "Relu" : ""), clr, clr);
                break;
            case "and":
                _il.Emit(OpCodes.And);
                break;
            case "or":
                _il.Emit(OpCodes.Or);
                break;
            case "xor":
                _il.Emit(OpCodes.Xor);
                break;
            default:
                throw Refuse($"{i.Opcode} on .{type}");
        }

        Store(d, type);
    }

    private void EmitMad(PtxInstruction i)
    {
        RequireOperands(i, 4);
        var type = TypeOf(i);
        var (d, a, b, c) = (i.Operands[0], i.Operands[1], i.Operands[2], i.Operands[3]);
        if (i.Has("cc") || i.Opcode == "madc")
        {
            EmitCarryChain(i);
            return;
        }

        if (IsFloat(type))
        {
            var t = ClrType(type);
            LoadFloat(i, a, type);
            LoadFloat(i, b, type);
            LoadFloat(i, c, type);
            var rounding = Rounding(i);
            if (i.Opcode == "mad" && !i.Modifiers.Any(m => m is "rn" or "rz" or "rm" or "rp"))
            {
                // The pre-Fermi mad.f32: a product then a sum, each rounded.
                var sum = _il.DeclareLocal(t);
                _il.Emit(OpCodes.Stloc, sum);
                _il.Emit(OpCodes.Mul);
                _il.Emit(OpCodes.Ldloc, sum);
                _il.Emit(OpCodes.Add);
            }
            else if (rounding == FloatRounding.Rn)
            {
                Call(type == "f32" ? typeof(MathF) : typeof(Math), "FusedMultiplyAdd", t, t, t);
            }
            else
            {
                _il.Emit(OpCodes.Ldc_I4, (int)rounding);
                Call(FloatOps(type), "Fma", t, t, t, typeof(FloatRounding));
            }

            StoreFloat(i, d, type);
            return;
        }

        if (IsHalf(type) && i.Opcode == "fma")
        {
            EmitHalfArithmetic(i);
            return;
        }

        if (i.Has("sat") && i.Opcode == "mad" && i.Has("hi") && type == "s32")
        {
            // mad.hi.sat.s32, the only integer mad with .sat: the high half of the product plus c, clamped to the s32 range.
            Load(a, type);
            Load(b, type);
            Load(c, type);
            Call(typeof(IntOps), "MadHiSat", typeof(int), typeof(int), typeof(int));
            Store(d, type);
            return;
        }

        if (IsHalf(type) || i.Has("sat"))
        {
            throw Refuse($"{i.Opcode} on .{type}{(i.Has("sat") ? " with .sat" : "")}");
        }

        if (i.Has("wide"))
        {
            var wide = type switch { "s32" => "s64", "u32" => "u64", "s16" => "s32", "u16" => "u32", _ => throw Refuse("mad.wide of that type") };
            Load(a, type);
            Convert(KindOf(type, i.Line), KindOf(wide, i.Line), IsSigned(type));
            Load(b, type);
            Convert(KindOf(type, i.Line), KindOf(wide, i.Line), IsSigned(type));
            _il.Emit(OpCodes.Mul);
            Load(c, wide);
            _il.Emit(OpCodes.Add);
            Store(d, wide);
            return;
        }

        Load(a, type);
        Load(b, type);
        if (i.Has("hi") && BitsOf(type) == 16)
        {
            EmitMulHi16(type);
        }
        else if (i.Has("hi"))
        {
            var clr = ClrType(type);
            Call(typeof(IntOps), "MulHi", clr, clr);
        }
        else
        {
            _il.Emit(OpCodes.Mul);
        }

        Load(c, type);
        _il.Emit(OpCodes.Add);
        Store(d, type);
    }

    /// <summary>
    /// add.cc/addc, sub.cc/subc, mad.cc/madc (.lo or .hi) on 32- and 64-bit integers: the carry flag CC.CF is a register of
    /// its own, so it is spilled and reloaded at collectives like the others.
    /// </summary>
    private void EmitCarryChain(PtxInstruction i)
    {
        var mad = i.Opcode is "mad" or "madc";
        RequireOperands(i, mad ? 4 : 3);
        var type = TypeOf(i);
        if (i.Opcode is not ("add" or "addc" or "sub" or "subc" or "mad" or "madc") || type is not ("u32" or "s32" or "u64" or "s64")
            || (mad && i.Has("hi") == i.Has("lo")) || i.Has("sat"))
        {
            throw Refuse($"the carry chain {i.Opcode} on .{type}");
        }

        var clr = BitsOf(type) == 64 ? typeof(ulong) : typeof(uint);
        Load(i.Operands[1], type);
        Load(i.Operands[2], type);
        if (mad)
        {
            if (i.Has("hi"))
            {
                Call(typeof(IntOps), "MulHi", ClrType(type), ClrType(type));
            }
            else
            {
                _il.Emit(OpCodes.Mul);
            }

            Load(i.Operands[3], type);
        }

        var carry = CarryFlag();
        if (i.Opcode is "addc" or "subc" or "madc")
        {
            _il.Emit(OpCodes.Ldloc, carry.Local);
        }
        else
        {
            _il.Emit(OpCodes.Ldc_I4_0);
        }

        // Without .cc the instruction reads the flag but leaves it as it is: the carry out goes to a scratch local.
        _il.Emit(OpCodes.Ldloca, i.Has("cc") ? carry.Local : _il.DeclareLocal(typeof(int)));
        Call(typeof(IntOps), i.Opcode is "sub" or "subc" ? "SubCarry" : "AddCarry", clr, clr, typeof(int), typeof(int).MakeByRefType());
        Store(i.Operands[0], type);
    }

    /// <summary>The high half of a 16-bit product: both operands are on the stack extended to 32 bits, where the product fits.</summary>
    private void EmitMulHi16(string type)
    {
        _il.Emit(OpCodes.Mul);
        _il.Emit(OpCodes.Ldc_I4, 16);
        _il.Emit(IsSigned(type) ? OpCodes.Shr : OpCodes.Shr_Un);
    }

    /// <summary>The 32-bit type a 16-bit operand is loaded as (sign- or zero-extended).</summary>
    private static Type Extended(string type) => IsSigned(type) ? typeof(int) : typeof(uint);

    /// <summary>sad: c plus the absolute difference of a and b.</summary>
    private void EmitSad(PtxInstruction i)
    {
        RequireOperands(i, 4);
        var type = TypeOf(i);
        if (type is not ("s16" or "u16" or "s32" or "u32" or "s64" or "u64"))
        {
            throw Refuse($"sad on .{type}");
        }

        var clr = BitsOf(type) == 64 ? ClrType(type) : Extended(type);
        Load(i.Operands[1], type);
        Load(i.Operands[2], type);
        Load(i.Operands[3], type);
        Call(typeof(IntOps), "Sad", clr, clr, clr);
        Store(i.Operands[0], type);
    }

    /// <summary>mul24 and mad24: products of the operands' low 24 bits, their low or high 32 bits (.hi.sat only on mad24.s32).</summary>
    private void EmitMul24(PtxInstruction i)
    {
        var mad = i.Opcode == "mad24";
        RequireOperands(i, mad ? 4 : 3);
        var type = TypeOf(i);
        var sat = i.Has("sat");
        if (type is not ("s32" or "u32") || (sat && !(mad && i.Has("hi") && type == "s32")))
        {
            throw Refuse($"{i.Opcode} on .{type}{(sat ? " with .sat" : "")}");
        }

        var clr = ClrType(type);
        var part = i.Has("hi") ? "Hi" : "Lo";
        Load(i.Operands[1], type);
        Load(i.Operands[2], type);
        if (mad)
        {
            Load(i.Operands[3], type);
            Call(typeof(IntOps), "Mad24" + part + (sat ? "Sat" : ""), clr, clr, clr);
        }
        else
        {
            Call(typeof(IntOps), "Mul24" + part, clr, clr);
        }

        Store(i.Operands[0], type);
    }

    private void EmitUnary(PtxInstruction i)
    {
        RequireOperands(i, 2);
        var type = TypeOf(i);
        var (d, a) = (i.Operands[0], i.Operands[1]);
        switch (i.Opcode)
        {
            case "neg" or "abs" when IsHalf(type):
                EmitHalfArithmetic(i);
                return;
            case "neg" or "abs" when IsFloat(type):
                LoadFloat(i, a, type);
                Call(FloatOps(type), i.Opcode == "neg" ? "Neg" : "Abs", ClrType(type));
                StoreFloat(i, d, type);
                return;
            case "neg" when type is "s16" or "s32" or "s64":
                Load(a, type);
                _il.Emit(OpCodes.Neg);
                break;
            case "abs" when type is "s16" or "s32" or "s64":
                // An s16 operand is loaded sign-extended to 32 bits, where its absolute value's low half is the 16-bit one.
                Load(a, type);
                Call(typeof(IntOps), type == "s64" ? "AbsS64" : "AbsS32", type == "s64" ? typeof(long) : typeof(int));
                break;
            case "not" when type == "pred":
                Load(a, type);
                _il.Emit(OpCodes.Ldc_I4_1);
                _il.Emit(OpCodes.Xor);
                break;
            case "not" when !IsFloat(type):
                Load(a, type);
                _il.Emit(OpCodes.Not);
                break;
            case "cnot" when !IsFloat(type):
                Load(a, type);
                if (KindOf(type, i.Line) == Kind.I64)
                {
                    _il.Emit(OpCodes.Ldc_I8, 0L);
                    _il.Emit(OpCodes.Ceq);
                    _il.Emit(OpCodes.Conv_I8);
                }
                else
                {
                    _il.Emit(OpCodes.Ldc_I4_0);
                    _il.Emit(OpCodes.Ceq);
                }

                break;
            case "popc" or "clz" when type is "b32" or "b64":
                Load(a, type);
                Call(typeof(IntOps), i.Opcode == "popc" ? "Popc" : "Clz", ClrType(type));
                Store(d, "u32");
                return;
            case "brev" when type is "b32" or "b64":
                Load(a, type);
                Call(typeof(IntOps), "Brev", ClrType(type));
                break;
            default:
                throw Refuse($"{i.Opcode} on .{type}");
        }

        Store(d, type);
    }

    private void EmitShift(PtxInstruction i)
    {
        RequireOperands(i, 3);
        var type = TypeOf(i);
        if (BitsOf(type) < 16)
        {
            throw Refuse($"{i.Opcode} on .{type}");
        }

        Load(i.Operands[1], type);
        Load(i.Operands[2], "u32");
        var clr = type switch
        {
            "s16" => typeof(short),
            "u16" or "b16" => typeof(ushort),
            "s32" => typeof(int),
            "u32" or "b32" => typeof(uint),
            "s64" => typeof(long),
            _ => typeof(ulong),
        };
        var name = i.Opcode == "shl" ? "Shl" : IsSigned(type) ? "ShrS" : "ShrU";
        Call(typeof(IntOps), name, i.Opcode == "shl" && IsSigned(type) ? Unsigned(clr) : clr, typeof(uint));
        Store(i.Operands[0], type);
    }

    private static Type Unsigned(Type t) => t == typeof(short) ? typeof(ushort) : t == typeof(int) ? typeof(uint) : t == typeof(long) ? typeof(ulong) : t;

    private void EmitMath(PtxInstruction i)
    {
        RequireOperands(i, 2);
        var type = TypeOf(i);
        if (!IsFloat(type))
        {
            throw Refuse($"{i.Opcode} on .{type}");
        }

        var t = ClrType(type);
        var ops = FloatOps(type);
        LoadFloat(i, i.Operands[1], type);
        var approx = i.Has("approx");
        switch (i.Opcode, type, approx)
        {
            case ("rcp" or "sqrt", _, false):
                _il.Emit(OpCodes.Ldc_I4, (int)Rounding(i));
                Call(ops, i.Opcode == "rcp" ? "Rcp" : "Sqrt", t, typeof(FloatRounding));
                break;
            case ("rcp", "f64", true):
                Call(ops, "RcpApproxFtz", t);
                break;
            case ("rsqrt", "f64", true):
                Call(ops, "RsqrtApprox", t);
                break;
            case (_, "f32", true):
                Call(ops, i.Opcode switch
                {
                    "rcp" => "RcpApprox",
                    "sqrt" => "SqrtApprox",
                    "rsqrt" => "RsqrtApprox",
                    "ex2" => "Ex2Approx",
                    "lg2" => "Lg2Approx",
                    "sin" => "SinApprox",
                    "cos" => "CosApprox",
                    _ => "TanhApprox",
                }, t);
                break;
            default:
                throw Refuse($"{i.Opcode} on .{type}{(approx ? " (.approx)" : "")}");
        }

        StoreFloat(i, i.Operands[0], type);
    }

    private static CompareOp? CompareOf(PtxInstruction i)
    {
        foreach (var m in i.Modifiers)
        {
            if (Enum.TryParse<CompareOp>(m, ignoreCase: true, out var op) && m.Length <= 3 && char.IsLower(m[0]))
            {
                return op;
            }
        }

        return null;
    }

    /// <summary>Pushes the comparison of a and b (1 or 0) as the instruction's comparison and type say.</summary>
    private void EmitCompare(PtxInstruction i, string type, PtxOperand a, PtxOperand b)
    {
        var op = CompareOf(i) ?? throw Refuse("a comparison without its operator");
        _il.Emit(OpCodes.Ldc_I4, (int)op);
        if (IsFloat(type))
        {
            LoadFloat(i, a, type);
            LoadFloat(i, b, type);
            Call(FloatOps(type), "Compare", typeof(CompareOp), ClrType(type), ClrType(type));
            return;
        }

        if (type is "f16" or "bf16" or "f16x2" or "bf16x2")
        {
            throw Refuse($"comparisons of .{type}");
        }

        var signed = IsSigned(type);
        Load(a, type);
        Convert(KindOf(type, i.Line), Kind.I64, signed);
        Load(b, type);
        Convert(KindOf(type, i.Line), Kind.I64, signed);
        Call(typeof(IntOps), "Compare", typeof(CompareOp), signed ? typeof(long) : typeof(ulong), signed ? typeof(long) : typeof(ulong));
    }

    private void EmitSetp(PtxInstruction i)
    {
        var type = TypeOf(i);
        if (IsHalf(type))
        {
            EmitHalfSetp(i);
            return;
        }

        if (i.Operands.Count is not (3 or 4))
        {
            throw Refuse($"setp with {i.Operands.Count} operands");
        }

        var combine = i.Modifiers.FirstOrDefault(m => m is "and" or "or" or "xor");
        if (combine is not null && i.Operands.Count != 4)
        {
            throw Refuse($"setp.{combine} without its predicate operand");
        }

        EmitCompare(i, type, i.Operands[1], i.Operands[2]);
        var result = _il.DeclareLocal(typeof(int));
        _il.Emit(OpCodes.Stloc, result);

        // c is read once, before either destination is written: in setp.and p|q, a, b, p the second result uses the old p.
        LocalBuilder? c = null;
        if (combine is not null)
        {
            c = _il.DeclareLocal(typeof(int));
            Load(i.Operands[3], "pred");
            _il.Emit(OpCodes.Stloc, c);
        }

        var (p, q) = i.Operands[0] is PtxPredicatePair pair ? (pair.First, (PtxOperand?)pair.Second) : (i.Operands[0], null);
        for (var k = 0; k < (q is null ? 1 : 2); k++)
        {
            _il.Emit(OpCodes.Ldloc, result);
            if (k == 1)
            {
                _il.Emit(OpCodes.Ldc_I4_1);
                _il.Emit(OpCodes.Xor);
            }

            if (c is not null)
            {
                _il.Emit(OpCodes.Ldloc, c);
                _il.Emit(combine == "and" ? OpCodes.And : combine == "or" ? OpCodes.Or : OpCodes.Xor);
            }

            Store(k == 0 ? p : q!, "pred");
        }
    }

    /// <summary>testp.op.{f32,f64} p, a: whether a is finite, infinite, a number, a NaN, normal (zeros count) or subnormal.</summary>
    private void EmitTestp(PtxInstruction i)
    {
        RequireOperands(i, 2);
        var type = TypeOf(i);
        if (!IsFloat(type))
        {
            throw Refuse($"testp on .{type}");
        }

        var property = ModeOf(i, "finite", "infinite", "number", "notanumber", "normal", "subnormal");
        _il.Emit(OpCodes.Ldc_I4, (int)Enum.Parse<TestpKind>(property, ignoreCase: true));
        Load(i.Operands[1], type);
        Call(FloatOps(type), "Testp", typeof(TestpKind), ClrType(type));
        Store(i.Operands[0], "pred");
    }

    private void EmitSelp(PtxInstruction i)
    {
        RequireOperands(i, 4);
        var type = TypeOf(i);
        var second = _il.DefineLabel();
        var done = _il.DefineLabel();
        Load(i.Operands[3], "pred");
        _il.Emit(OpCodes.Brfalse, second);
        Load(i.Operands[1], type);
        _il.Emit(OpCodes.Br, done);
        _il.MarkLabel(second);
        Load(i.Operands[2], type);
        _il.MarkLabel(done);
        Store(i.Operands[0], type);
    }

    /// <summary>
    /// slct{.ftz}.dtype.{s32,f32} d, a, b, c: a where c &gt;= 0, else b, copied as they are. An f32 c that is NaN gives b,
    /// -0 gives a, and with .ftz a subnormal c counts as a zero of its sign (so gives a).
    /// </summary>
    private void EmitSlct(PtxInstruction i)
    {
        RequireOperands(i, 4);
        var types = i.Modifiers.Where(m => Types.Contains(m)).ToArray();
        if (types is not [var type, var selector] || selector is not ("s32" or "f32") || (i.Has("ftz") && selector != "f32")
            || type is not ("b16" or "u16" or "s16" or "b32" or "u32" or "s32" or "b64" or "u64" or "s64" or "f32" or "f64"))
        {
            throw Refuse($"slct.{string.Join('.', i.Modifiers)}");
        }

        var second = _il.DefineLabel();
        var done = _il.DefineLabel();
        if (selector == "f32")
        {
            LoadFloat(i, i.Operands[3], selector);
            _il.Emit(OpCodes.Ldc_R4, 0f);
            _il.Emit(OpCodes.Blt_Un, second);
        }
        else
        {
            Load(i.Operands[3], selector);
            _il.Emit(OpCodes.Ldc_I4_0);
            _il.Emit(OpCodes.Blt, second);
        }

        Load(i.Operands[1], type);
        _il.Emit(OpCodes.Br, done);
        _il.MarkLabel(second);
        Load(i.Operands[2], type);
        _il.MarkLabel(done);
        Store(i.Operands[0], type);
    }

    private void EmitCvt(PtxInstruction i)
    {
        if (TryEmitPairCvt(i))
        {
            return;
        }

        RequireOperands(i, 2);
        var types = i.Modifiers.Where(m => Types.Contains(m)).ToArray();
        if (types.Length != 2)
        {
            throw Refuse("cvt without its two types");
        }

        var (to, from) = (types[0], types[1]);
        var (d, a) = (i.Operands[0], i.Operands[1]);
        var sat = i.Has("sat");
        var ftz = i.Has("ftz");
        var irnd = IntRoundingOf(i);
        var isIntFrom = !IsFloat(from) && from is not ("f16" or "bf16" or "tf32");
        var isIntTo = !IsFloat(to) && to is not ("f16" or "bf16" or "tf32");

        // The common conversions inline; every other through the general conversion.
        if (isIntFrom && isIntTo && !sat)
        {
            Load(a, from);
            Convert(KindOf(from, i.Line), KindOf(to, i.Line), IsSigned(from));
            Narrow(to);
            Store(d, to);
            return;
        }

        if (isIntFrom && IsFloat(to) && BitsOf(from) >= 32 && !sat)
        {
            Load(a, from);
            var source = ClrType(from);
            if (to == "f64" && BitsOf(from) == 32)
            {
                Call(typeof(PtxConvert), IsSigned(from) ? "S32ToF64" : "U32ToF64", source);
            }
            else
            {
                _il.Emit(OpCodes.Ldc_I4, (int)Rounding(i));
                Call(typeof(PtxConvert), $"{(IsSigned(from) ? 'S' : 'U')}{BitsOf(from)}To{(to == "f32" ? "F32" : "F64")}", source, typeof(FloatRounding));
            }

            Store(d, to);
            return;
        }

        if (IsFloat(from) && isIntTo && BitsOf(to) >= 32 && irnd is { } r)
        {
            LoadFloat(i, a, from);
            _il.Emit(OpCodes.Ldc_I4, (int)r);
            Call(typeof(PtxConvert), $"{(from == "f32" ? "F32" : "F64")}To{(IsSigned(to) ? 'S' : 'U')}{BitsOf(to)}", ClrType(from), typeof(IntRounding));
            Store(d, to);
            return;
        }

        if (from == "f32" && to == "f64")
        {
            Load(a, from);
            _il.Emit(OpCodes.Ldc_I4, ftz ? 1 : 0);
            _il.Emit(OpCodes.Ldc_I4, sat ? 1 : 0);
            Call(typeof(PtxConvert), "F32ToF64", typeof(float), typeof(bool), typeof(bool));
            Store(d, to);
            return;
        }

        if (from == "f64" && to == "f32")
        {
            Load(a, from);
            _il.Emit(OpCodes.Ldc_I4, (int)Rounding(i));
            _il.Emit(OpCodes.Ldc_I4, ftz ? 1 : 0);
            _il.Emit(OpCodes.Ldc_I4, sat ? 1 : 0);
            Call(typeof(PtxConvert), "F64ToF32", typeof(double), typeof(FloatRounding), typeof(bool), typeof(bool));
            Store(d, to);
            return;
        }

        if (from == to && IsFloat(from))
        {
            LoadFloat(i, a, from);
            if (irnd is { } round)
            {
                _il.Emit(OpCodes.Ldc_I4, (int)round);
                Call(typeof(PtxConvert), "RoundToInt", ClrType(from), typeof(IntRounding));
            }

            StoreFloat(i, d, to);
            return;
        }

        // The general conversion, on the source's bits.
        var fromType = ScalarOf(from);
        var toType = ScalarOf(to);
        Load(a, from);
        Convert(KindOf(from, i.Line), Kind.I64, signed: false);
        if (KindOf(from, i.Line) != Kind.I64 && BitsOf(from) < 64)
        {
            _il.Emit(OpCodes.Ldc_I8, (long)((1UL << BitsOf(from)) - 1));
            _il.Emit(OpCodes.And);
        }

        _il.Emit(OpCodes.Ldc_I4, (int)fromType);
        _il.Emit(OpCodes.Ldc_I4, (int)toType);
        _il.Emit(OpCodes.Ldc_I4, i.Modifiers.Any(m => m is "rn" or "rz" or "rm" or "rp") ? (int)Rounding(i) : -1);
        _il.Emit(OpCodes.Ldc_I4, irnd is { } ir ? (int)ir : -1);
        _il.Emit(OpCodes.Ldc_I4, sat ? 1 : 0);
        _il.Emit(OpCodes.Ldc_I4, ftz ? 1 : 0);
        Call(typeof(EngineConvert), nameof(EngineConvert.Cvt), typeof(ulong), typeof(ScalarType), typeof(ScalarType), typeof(int), typeof(int), typeof(bool), typeof(bool));
        var kind = KindOf(to, i.Line);
        Convert(Kind.I64, kind == Kind.F32 ? Kind.F32 : kind == Kind.F64 ? Kind.F64 : kind, signed: false);
        Store(d, to);
    }

    private ScalarType ScalarOf(string type) => Enum.TryParse<ScalarType>(type, ignoreCase: true, out var t) ? t : throw Refuse($"conversions of .{type}");

    private void EmitBits(PtxInstruction i)
    {
        var type = TypeOf(i);
        var clr = ClrType(type);
        switch (i.Opcode)
        {
            case "bfe":
                RequireOperands(i, 4);
                Load(i.Operands[1], type);
                Load(i.Operands[2], "u32");
                Load(i.Operands[3], "u32");
                Call(typeof(IntOps), "Bfe" + (IsSigned(type) ? "S" : "U") + BitsOf(type), clr, typeof(uint), typeof(uint));
                break;
            case "bfi":
                RequireOperands(i, 5);
                Load(i.Operands[1], type);
                Load(i.Operands[2], type);
                Load(i.Operands[3], "u32");
                Load(i.Operands[4], "u32");
                Call(typeof(IntOps), "Bfi", clr, clr, typeof(uint), typeof(uint));
                break;
            case "prmt":
                RequireOperands(i, 4);
                Load(i.Operands[1], "b32");
                Load(i.Operands[2], "b32");
                Load(i.Operands[3], "b32");
                var mode = i.Modifiers.FirstOrDefault(m => m is "f4e" or "b4e" or "rc8" or "ecl" or "ecr" or "rc16");
                _il.Emit(OpCodes.Ldc_I4, mode is null ? (int)PrmtMode.Default : (int)Enum.Parse<PrmtMode>(mode, ignoreCase: true));
                Call(typeof(IntOps), "Prmt", typeof(uint), typeof(uint), typeof(uint), typeof(PrmtMode));
                break;
            default:
                RequireOperands(i, 2);
                Load(i.Operands[1], type);
                _il.Emit(OpCodes.Ldc_I4, i.Has("shiftamt") ? 1 : 0);
                Call(typeof(IntOps), "Bfind", clr, typeof(bool));
                Store(i.Operands[0], "u32");
                return;
        }

        Store(i.Operands[0], type);
    }

    private void EmitAtomic(PtxInstruction i)
    {
        var type = TypeOf(i);
        var op = i.Modifiers.FirstOrDefault(m => m is "add" or "min" or "max" or "inc" or "dec" or "cas" or "exch" or "and" or "or" or "xor")
            ?? throw Refuse($"{i.Opcode} without its operation");
        var red = i.Opcode == "red";
        var first = red ? 0 : 1;
        RequireOperands(i, first + (op == "cas" ? 3 : 2));
        if (type is not ("b32" or "u32" or "s32" or "b64" or "u64" or "s64" or "f32" or "f64"))
        {
            throw Refuse($"{i.Opcode}.{op} on .{type}");
        }

        EmitPointer(i.Operands[first], SpaceOf(i), PtxTypes.SizeOf(type));
        Load(i.Operands[first + 1], type);
        if (op == "cas")
        {
            Load(i.Operands[first + 2], type);
        }

        var name = op + "_" + type;
        var method = typeof(Atomics).GetMethod(name) ?? throw Refuse($"{i.Opcode}.{op}.{type}");
        _il.Emit(OpCodes.Call, method);
        if (red)
        {
            _il.Emit(OpCodes.Pop);
        }
        else
        {
            Store(i.Operands[0], type);
        }
    }

    /// <summary>dp4a and dp2a: byte (and half-word) dot products accumulated into 32 bits.</summary>
    private void EmitDotProduct(PtxInstruction i)
    {
        RequireOperands(i, 4);
        var types = i.Modifiers.Where(m => m is "u32" or "s32").ToArray();
        if (types.Length != 2)
        {
            throw Refuse($"{i.Opcode} without its two types");
        }

        Load(i.Operands[1], "b32");
        Load(i.Operands[2], "b32");
        Load(i.Operands[3], "b32");
        _il.Emit(types[0] == "s32" ? OpCodes.Ldc_I4_1 : OpCodes.Ldc_I4_0);
        _il.Emit(types[1] == "s32" ? OpCodes.Ldc_I4_1 : OpCodes.Ldc_I4_0);
        if (i.Opcode == "dp2a")
        {
            _il.Emit(i.Has("hi") ? OpCodes.Ldc_I4_1 : i.Has("lo") ? OpCodes.Ldc_I4_0 : throw Refuse("dp2a without .lo or .hi"));
            Call(typeof(IntOps), nameof(IntOps.Dp2a), typeof(int), typeof(int), typeof(int), typeof(bool), typeof(bool), typeof(bool));
        }
        else
        {
            Call(typeof(IntOps), nameof(IntOps.Dp4a), typeof(int), typeof(int), typeof(int), typeof(bool), typeof(bool));
        }

        Store(i.Operands[0], "b32");
    }

    private void EmitBarrier(PtxInstruction i)
    {
        if (i.Has("warp"))
        {
            RequireOperands(i, 1);
            EmitCollective(new CollectiveSite(SiteKind.WarpSync, "sync", "b32", [], [SiteSource(i.Operands[0])], Where()));
            return;
        }

        if (i.Has("red"))
        {
            var mode = ModeOf(i, "popc", "and", "or");
            EmitCollective(new CollectiveSite(SiteKind.BarrierReduce, mode, mode == "popc" ? "u32" : "pred",
                [SiteDest(i.Operands[0])], [.. i.Operands.Skip(1).Select(SiteSource)], Where()));
            return;
        }

        if (i.Operands.Count is not (1 or 2))
        {
            throw Refuse($"{i.Opcode} with {i.Operands.Count} operands");
        }

        if (i.Has("arrive"))
        {
            if (i.Operands.Count != 2)
            {
                throw Refuse("bar.arrive without its thread count");
            }

            EmitCollective(new CollectiveSite(SiteKind.Arrive, "arrive", "b32", [], [.. i.Operands.Select(SiteSource)], Where()));
            return;
        }

        EmitCollective(new CollectiveSite(SiteKind.Barrier, "sync", "b32", [], [.. i.Operands.Select(SiteSource)], Where()));
    }
}

/// <summary>The general conversion with its optional roundings as -1 for none.</summary>
internal static class EngineConvert
{
    public static ulong Cvt(ulong bits, ScalarType from, ScalarType to, int floatRounding, int intRounding, bool sat, bool ftz)
        => PtxConvert.Cvt(bits, from, to, floatRounding < 0 ? null : (FloatRounding)floatRounding, intRounding < 0 ? null : (IntRounding)intRounding, sat, ftz);
}
