using System.Reflection.Emit;
using GpuPool.Ptx.Semantics;
using GpuPool.Ptx.Syntax;

namespace GpuPool.Ptx.Engine;

/// <summary>
/// Half-precision arithmetic (.f16, .bf16 and their pairs .f16x2, .bf16x2): each operation in <see cref="Half16"/>,
/// rounded once to the half format as PTX says (tested there exhaustively against exact arithmetic).
/// </summary>
internal sealed partial class KernelCompiler
{
    private static bool IsHalf(string type) => type is "f16" or "bf16" or "f16x2" or "bf16x2";

    /// <summary>add, sub, mul, fma, min, max, neg and abs on a half type.</summary>
    private void EmitHalfArithmetic(PtxInstruction i)
    {
        var type = TypeOf(i);
        var brain = type.StartsWith('b');
        var pair = type.EndsWith("x2", StringComparison.Ordinal);
        var (ftz, sat) = (i.Has("ftz"), i.Has("sat"));
        if (brain && (ftz || sat))
        {
            throw Refuse($"{i.Opcode} on .{type} with .ftz or .sat");
        }

        if (i.Has("relu") || i.Has("xorsign") || i.Has("oob"))
        {
            throw Refuse($"{i.Opcode}.{string.Join('.', i.Modifiers)}");
        }

        var sources = i.Opcode switch
        {
            "neg" or "abs" => 1,
            "fma" => 3,
            "add" or "sub" or "mul" or "min" or "max" => 2,
            _ => throw Refuse($"{i.Opcode} on .{type}"),
        };
        RequireOperands(i, sources + 1);
        for (var k = 1; k <= sources; k++)
        {
            Load(i.Operands[k], type);
        }

        var name = (brain ? "B" : "") + i.Opcode switch
        {
            "add" => "Add",
            "sub" => "Sub",
            "mul" => "Mul",
            "fma" => "Fma",
            "min" => "Min",
            "max" => "Max",
            "neg" => "Neg",
            _ => "Abs",
        } + (pair ? "2" : "");
        var half = pair ? typeof(uint) : typeof(ushort);
        var parameters = Enumerable.Repeat(half, sources).ToList();
        switch (i.Opcode)
        {
            case "neg" or "abs":
                // The sign bit alone, the same for both formats.
                name = name.TrimStart('B');
                break;
            case "min" or "max":
                if (!brain)
                {
                    _il.Emit(ftz ? OpCodes.Ldc_I4_1 : OpCodes.Ldc_I4_0);
                    parameters.Add(typeof(bool));
                }

                _il.Emit(i.Has("NaN") ? OpCodes.Ldc_I4_1 : OpCodes.Ldc_I4_0);
                parameters.Add(typeof(bool));
                break;
            default:
                _il.Emit(OpCodes.Ldc_I4, (int)Rounding(i));
                parameters.Add(typeof(FloatRounding));
                if (!brain)
                {
                    _il.Emit(ftz ? OpCodes.Ldc_I4_1 : OpCodes.Ldc_I4_0);
                    _il.Emit(sat ? OpCodes.Ldc_I4_1 : OpCodes.Ldc_I4_0);
                    parameters.AddRange([typeof(bool), typeof(bool)]);
                }

                break;
        }

        Call(typeof(Half16), name, [.. parameters]);
        Store(i.Operands[0], type);
    }

    /// <summary>setp on a half type; on a pair, each half gives its own predicate (<c>setp.lt.f16x2 p|q, a, b</c>).</summary>
    private void EmitHalfSetp(PtxInstruction i)
    {
        var type = TypeOf(i);
        var brain = type.StartsWith('b');
        var op = CompareOf(i) ?? throw Refuse("a comparison without its operator");
        if (i.Operands.Count != 3 || i.Has("and") || i.Has("or") || i.Has("xor"))
        {
            throw Refuse($"setp on .{type} with a predicate operand");
        }

        var (p, q) = i.Operands[0] is PtxPredicatePair pair ? (pair.First, (PtxOperand?)pair.Second) : (i.Operands[0], null);
        var halves = type.EndsWith("x2", StringComparison.Ordinal) ? 2 : 1;
        if (halves == 2 && q is null || halves == 1 && q is not null)
        {
            throw Refuse($"setp on .{type} with {(q is null ? "one" : "two")} destinations");
        }

        for (var h = 0; h < halves; h++)
        {
            _il.Emit(OpCodes.Ldc_I4, (int)op);
            foreach (var operand in i.Operands.Skip(1))
            {
                Load(operand, type);
                if (h == 1)
                {
                    _il.Emit(OpCodes.Ldc_I4, 16);
                    _il.Emit(OpCodes.Shr_Un);
                }

                _il.Emit(OpCodes.Conv_U2);
            }

            Call(typeof(Half16), brain ? "BCompare" : "Compare", typeof(CompareOp), typeof(ushort), typeof(ushort));
            Store(h == 0 ? p : q!, "pred");
        }
    }

    /// <summary>
    /// <c>set.cmp.dtype.stype d, a, b</c>: the comparison as a value, all ones (an integer) or 1.0 (a float) when it
    /// holds, else 0; on a half pair, each half compared and set on its own (1.0 in the half format).
    /// </summary>
    private void EmitSet(PtxInstruction i)
    {
        var types = i.Modifiers.Where(m => Types.Contains(m)).ToArray();
        if (types.Length != 2 || i.Operands.Count != 3 || i.Has("and") || i.Has("or") || i.Has("xor"))
        {
            throw Refuse("set with a predicate operand or without its two types");
        }

        var (to, from) = (types[0], types[1]);
        if (IsHalf(from))
        {
            var op = CompareOf(i) ?? throw Refuse("a comparison without its operator");
            var brain = from.StartsWith('b');
            var halves = from.EndsWith("x2", StringComparison.Ordinal) ? 2 : 1;
            if (to != from && !(halves == 1 && to is "u32" or "s32" or "b32" or "f32"))
            {
                throw Refuse($"set.{to}.{from}");
            }

            var result = _il.DeclareLocal(typeof(int));
            _il.Emit(OpCodes.Ldc_I4_0);
            _il.Emit(OpCodes.Stloc, result);
            for (var h = 0; h < halves; h++)
            {
                var skip = _il.DefineLabel();
                _il.Emit(OpCodes.Ldc_I4, (int)op);
                foreach (var operand in i.Operands.Skip(1))
                {
                    Load(operand, from);
                    _il.Emit(OpCodes.Ldc_I4, 16 * h);
                    _il.Emit(OpCodes.Shr_Un);
                    _il.Emit(OpCodes.Conv_U2);
                }

                Call(typeof(Half16), brain ? "BCompare" : "Compare", typeof(CompareOp), typeof(ushort), typeof(ushort));
                _il.Emit(OpCodes.Brfalse, skip);
                var one = to switch
                {
                    "f32" => BitConverter.SingleToInt32Bits(1f),
                    "u32" or "s32" or "b32" => -1,
                    _ => (brain ? 0x3F80 : 0x3C00) << (16 * h),
                };
                _il.Emit(OpCodes.Ldloc, result);
                _il.Emit(OpCodes.Ldc_I4, one);
                _il.Emit(OpCodes.Or);
                _il.Emit(OpCodes.Stloc, result);
                _il.MarkLabel(skip);
            }

            _il.Emit(OpCodes.Ldloc, result);
            Store(i.Operands[0], to == "f32" ? "b32" : to);
            return;
        }

        // Scalar types: the comparison setp makes, as a value.
        var holds = _il.DefineLabel();
        var done = _il.DefineLabel();
        EmitCompare(i, from, i.Operands[1], i.Operands[2]);
        _il.Emit(OpCodes.Brtrue, holds);
        _il.Emit(OpCodes.Ldc_I4_0);
        _il.Emit(OpCodes.Br, done);
        _il.MarkLabel(holds);
        _il.Emit(OpCodes.Ldc_I4, to switch
        {
            "f32" => BitConverter.SingleToInt32Bits(1f),
            "u32" or "s32" or "b32" => -1,
            _ => throw Refuse($"set.{to}"),
        });
        _il.MarkLabel(done);
        Store(i.Operands[0], "b32");
    }

    /// <summary>
    /// The pair conversions: two f32 into an f16x2, bf16x2, e4m3x2 or e5m2x2 (<c>cvt.rn.f16x2.f32 d, a, b</c>, a into
    /// the upper half), and an e4m3x2 or e5m2x2 into an f16x2. False when <paramref name="i"/> is another cvt.
    /// </summary>
    private bool TryEmitPairCvt(PtxInstruction i)
    {
        var pairs = i.Modifiers.Where(m => m is "f16x2" or "bf16x2" or "e4m3x2" or "e5m2x2").ToArray();
        if (pairs.Length == 0)
        {
            return false;
        }

        var (relu, satfinite) = (i.Has("relu"), i.Has("satfinite"));
        if (i.Operands.Count == 3 && pairs.Length == 1 && i.Has("f32"))
        {
            Load(i.Operands[1], "f32");
            Load(i.Operands[2], "f32");
            if (pairs[0] is "e4m3x2" or "e5m2x2")
            {
                _il.Emit(pairs[0] == "e4m3x2" ? OpCodes.Ldc_I4_1 : OpCodes.Ldc_I4_0);
                _il.Emit(relu ? OpCodes.Ldc_I4_1 : OpCodes.Ldc_I4_0);
                _il.Emit(satfinite ? OpCodes.Ldc_I4_1 : OpCodes.Ldc_I4_0);
                Call(typeof(Fp8), nameof(Fp8.PairFromF32), typeof(float), typeof(float), typeof(bool), typeof(bool), typeof(bool));
                Store(i.Operands[0], "b16");
                return true;
            }

            _il.Emit(pairs[0] == "bf16x2" ? OpCodes.Ldc_I4_1 : OpCodes.Ldc_I4_0);
            _il.Emit(OpCodes.Ldc_I4, (int)Rounding(i));
            _il.Emit(relu ? OpCodes.Ldc_I4_1 : OpCodes.Ldc_I4_0);
            _il.Emit(satfinite ? OpCodes.Ldc_I4_1 : OpCodes.Ldc_I4_0);
            Call(typeof(Fp8), nameof(Fp8.HalfPairFromF32), typeof(float), typeof(float), typeof(bool), typeof(FloatRounding), typeof(bool), typeof(bool));
            Store(i.Operands[0], "b32");
            return true;
        }

        if (i.Operands.Count == 2 && pairs is ["f16x2", "e4m3x2" or "e5m2x2"])
        {
            Load(i.Operands[1], "b16");
            _il.Emit(pairs[1] == "e4m3x2" ? OpCodes.Ldc_I4_1 : OpCodes.Ldc_I4_0);
            _il.Emit(relu ? OpCodes.Ldc_I4_1 : OpCodes.Ldc_I4_0);
            Call(typeof(Fp8), nameof(Fp8.PairToF16), typeof(ushort), typeof(bool), typeof(bool));
            Store(i.Operands[0], "b32");
            return true;
        }

        throw Refuse($"the conversion cvt.{string.Join('.', i.Modifiers)} with {i.Operands.Count} operands");
    }
}
